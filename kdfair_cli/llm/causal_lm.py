"""Causal language models from a local transformers directory, scoring answer options.

An option is scored by the log-likelihood of its text as the continuation of a prompt:
sum over the continuation tokens c_j of log p(c_j | prompt, c_<j). Prompt and continuation are
tokenised separately and concatenated as token lists; the tokenizer's leading special tokens
(Llama's BOS) are kept before the prompt and nothing is appended.

Batches are padded on the left (default: the continuations then end at the same position) or
on the right, with position ids from the attention mask (so learned absolute positions, as in
GPT-2, see the same positions as in an unpadded run). The base model gives the hidden states and
the output embedding is applied only at the continuation positions, so the [B, L, vocab]
logits tensor is never built.

Never the hub: a MODEL that is not an existing directory is refused, every load is
`local_files_only`, no remote code runs, and HF_HUB_OFFLINE defaults to 1.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input
from kdfair_cli.io.modeldir import sha256_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: A tokenizer folder has at least one of these (tokenizer_config.json alone is not one).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
#: Files hashed into the tokenizer fingerprint, when present.
TOKENIZER_HASHED = TOKENIZER_FILES + ("merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                                      "added_tokens.json")
#: model.json's arch_family of a kdfair causal-LM model directory (save_pretrained + model.json).
ARCH_FAMILY = "causal-lm"
HUB_HINT = ("kdfair never downloads from the Hugging Face hub: download the model yourself "
            "(e.g. `hf download NAME --local-dir DIR`) and pass the folder")


def is_causal_lm_dir(path: str | Path) -> bool:
    """A transformers save_pretrained folder (config.json) that is not a kdfair model directory,
    or a kdfair model directory of a causal LM (`kdfair train-teacher/distill --arch causal-lm`)."""
    path = Path(path)
    if not (path.is_dir() and (path / "config.json").is_file()):
        return False
    meta = path / "model.json"
    if not meta.exists():
        return True
    try:
        return json.loads(meta.read_text()).get("arch_family") == ARCH_FAMILY
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def check_local_dir(path: str | Path) -> Path:
    """The folder, or a KdfairError for a hub name or any path that is not a local directory."""
    path = Path(path)
    if not path.is_dir():
        raise KdfairError(f"model directory {path} does not exist; {HUB_HINT}")
    return path


def sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode() + b"\0")
        digest.update(p.read_bytes())
    return digest.hexdigest()


def check_weight_files(path: Path) -> None:
    """Each model*.safetensors of `path` whole: its header parses and its tensors' byte ranges end
    exactly at the file's end. A truncated, empty or garbled file is a KdfairError naming it
    (the loaders' own errors say neither which file nor that it is the user's to fix)."""
    for f in sorted(path.glob("*.safetensors")):
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size:
                raise KdfairError(f"{f}: truncated or empty safetensors file ({size} bytes); copy the model again")
            try:
                header = json.loads(fh.read(n))
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise KdfairError(f"{f}: damaged safetensors header; copy the model again") from None
        ends = [t["data_offsets"][1] for k, t in header.items()
                if k != "__metadata__" and isinstance(t, dict) and isinstance(t.get("data_offsets"), list)]
        if not isinstance(header, dict) or 8 + n + max(ends, default=0) != size:
            raise KdfairError(f"{f}: truncated or damaged safetensors file ({size} bytes, its header "
                              f"describes {8 + n + max(ends, default=0)}); copy the model again")


def mismatch_error(path: Path, config: Any, exc: Exception) -> KdfairError:
    """The loaders' size-mismatch failure as the user's error: config.json disagrees with the weights."""
    return KdfairError(f"{path}/config.json does not fit the weights (a tensor's shape differs; "
                       f"config vocab_size {getattr(config, 'vocab_size', '?')}, hidden size "
                       f"{getattr(config, 'hidden_size', getattr(config, 'n_embd', '?'))}): "
                       f"{str(exc).splitlines()[0][:160]}")


@dataclass
class CausalLM:
    """A loaded model, its tokenizer and the facts a predictions file records about them."""

    model: Any
    tokenizer: Any
    device: torch.device
    provenance: dict[str, Any]
    prefix_ids: list[int]  # special tokens the tokenizer puts before a text (e.g. BOS)
    max_length: int


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def model_positions(config: Any) -> int | None:
    """The positions a model has (max_position_embeddings or n_positions); None if it names none."""
    limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    return min([int(x) for x in limits if isinstance(x, int) and x > 0] or [0]) or None


def prefix_ids(tokenizer: Any) -> list[int]:
    """Leading special tokens of an encoding: with specials minus without, on a probe text."""
    probe = "hello world"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return list(full[:start])
    return []


def load_causal_lm(path: str | Path, device: torch.device, dtype: torch.dtype | None = None) -> CausalLM:
    """Load MODEL (a local directory) and its tokenizer; bf16 on CUDA unless `dtype` is given."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _quiet()
    path = check_local_dir(path)
    register_input(path, "model")
    if not (path / "config.json").is_file():
        raise KdfairError(f"{path} has no config.json: not a transformers model directory")
    tok_files = [path / f for f in TOKENIZER_FILES if (path / f).is_file()]
    if not tok_files:
        raise KdfairError(f"{path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                          "save one with tokenizer.save_pretrained into the model folder")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise KdfairError(f"{path}/config.json: cannot read it ({str(exc).splitlines()[0]})") from exc
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KdfairError(f"{path}: no loadable tokenizer ({str(exc).splitlines()[0]})") from exc
    check_weight_files(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype,
                                                     trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise KdfairError(f"{path}: cannot load a causal language model "
                          f"({str(exc).splitlines()[0]})") from exc
    except RuntimeError as exc:
        if "size mismatch" in str(exc) or "mismatched" in str(exc):
            raise mismatch_error(path, config, exc) from exc
        raise
    model.to(device).eval()
    max_length = model_positions(config) or 4096
    weights = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
    provenance = {
        "dir": str(path.resolve()),
        "arch": config.model_type,
        "model_type": config.model_type,
        "config_sha256": sha256_files([path / "config.json"]),
        "tokenizer_sha256": sha256_files([path / f for f in TOKENIZER_HASHED if (path / f).is_file()]),
        "weights": {p.name: sha256_file(p) for p in weights},  # sha256: resume must see a replaced model
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": str(dtype).replace("torch.", ""),
    }
    return CausalLM(model, tokenizer, device, provenance, prefix_ids(tokenizer), max_length)


def encode_pairs(lm: CausalLM, prompts: list[str], continuations: list[str]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, continuation ids) per pair; the prompt is cut on the left to fit the model.

    lm-evaluation-harness's rule: of prompt + continuation keep the last max_length + 1 tokens
    (the last continuation token is a target only and never fed, so max_length positions run)."""
    tok = lm.tokenizer
    p_ids = tok(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    c_ids = tok(continuations, add_special_tokens=False)["input_ids"] if continuations else []
    out = []
    for i, (p, c) in enumerate(zip(p_ids, c_ids)):
        if not c:
            raise KdfairError(f"option {continuations[i]!r} encodes to no tokens")
        ctx = lm.prefix_ids + list(p)
        if not ctx:  # a model without BOS and an empty prompt: condition on EOS
            ctx = [tok.eos_token_id if tok.eos_token_id is not None else 0]
        room = lm.max_length + 1 - len(c)
        if room < 1:
            raise KdfairError(f"option {continuations[i]!r} is longer than the model's "
                              f"{lm.max_length} positions")
        out.append((ctx[-room:], list(c)))
    return out


def _base_and_head(model: Any) -> tuple[Any, Any, float | None]:
    base = model.base_model
    head = model.get_output_embeddings()
    if base is model or head is None:
        raise KdfairError(f"model type {model.config.model_type} has no separate base model and "
                          "output embedding; it cannot be scored")
    return base, head, getattr(model.config, "final_logit_softcapping", None)


@torch.no_grad()
def score_batch(lm: CausalLM, pairs: list[tuple[list[int], list[int]]],
                padding_side: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """(sum of continuation log-likelihoods float64 [M], continuation token counts [M])."""
    if padding_side not in ("left", "right"):
        raise ValueError(padding_side)
    base, head, softcap = _base_and_head(lm.model)
    lengths = [len(p) + len(c) - 1 for p, c in pairs]  # the last continuation token is never fed
    width, m = max(lengths), len(pairs)
    ids = torch.zeros((m, width), dtype=torch.long)
    mask = torch.zeros((m, width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for i, (p, c) in enumerate(pairs):
        off = width - lengths[i] if padding_side == "left" else 0
        ids[i, off:off + lengths[i]] = torch.tensor(p + c[:-1])
        mask[i, off:off + lengths[i]] = 1
        start = off + len(p) - 1  # the position whose output predicts the first continuation token
        rows += [i] * len(c)
        cols += range(start, start + len(c))
        targets += c
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    hidden = base(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                  use_cache=False).last_hidden_state
    rows_t = torch.tensor(rows, device=lm.device)
    logits = head(hidden[rows_t, torch.tensor(cols, device=lm.device)]).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    logp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(targets, device=lm.device)[:, None])[:, 0]
    sums = torch.zeros(m, dtype=torch.float64, device=lm.device).index_add_(0, rows_t, logp.double())
    return sums.cpu().numpy(), np.asarray([len(c) for _, c in pairs], dtype=np.int64)


def score_pairs(lm: CausalLM, pairs: list[tuple[list[int], list[int]]], batch_size: int,
                padding_side: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """score_batch over `pairs` in batches of similar length (sorted), results in input order."""
    order = np.argsort([-(len(p) + len(c)) for p, c in pairs], kind="stable")
    sums = np.zeros(len(pairs), np.float64)
    counts = np.zeros(len(pairs), np.int64)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        sums[idx], counts[idx] = score_batch(lm, [pairs[i] for i in idx], padding_side)
    return sums, counts
