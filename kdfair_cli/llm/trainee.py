"""A causal LM as the training loop sees it: `--arch causal-lm --pretrained DIR --dataset corpus`.

The loop calls `model(x)` with one tensor. For a causal LM, x is int64 [B, 3, L]: token ids,
attention mask, and the learned mask (1 where the token at that position is a target: the
text, or the response, and the EOS after it). Batches are padded on the right to their longest
sequence. `forward` returns the base model's last hidden states [B, L, H], never the [B, L, V]
logits: the loss (kdfair_cli.llm.kd_loss) applies the output embedding chunk by chunk.

Tokenisation of a corpus line (also used by the teacher cache, kdfair_cli.llm.cache, so a cache
and a student agree token for token): the tokenizer's leading special tokens (BOS) + ids(text)
+ [EOS]; for prompt/response: BOS + ids(prompt) + ids(response) + [EOS], prompt and response
tokenised separately (as kdfair predict scores BBQ options: prompt, then continuation). The
sequence is cut to max_length tokens on the right.

Never the hub: the model and its tokenizer come from a local save_pretrained directory.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdfair_cli.data.batches import IndexedBatches
from kdfair_cli.data.text import files_fingerprint
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input
from kdfair_cli.llm.causal_lm import (TOKENIZER_FILES, _quiet, check_local_dir, check_weight_files, mismatch_error,
                                      model_positions, prefix_ids)
from kdfair_cli.models.text import write_pretrained

#: --arch of a causal LM trained by kdfair (its model.json's arch_family is causal_lm.ARCH_FAMILY).
LM_ARCH = "causal-lm"


def is_lm_arch(arch: str) -> bool:
    return arch == LM_ARCH


@dataclass
class Encoded:
    """A tokenised split, ragged: sequence i is ids[offsets[i]:offsets[i+1]]; its tokens at
    positions >= learn_from[i] are targets (position 0 never is: nothing predicts it)."""

    ids: np.ndarray  # int64 [total]
    offsets: np.ndarray  # int64 [N + 1]
    learn_from: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.learn_from)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_targets(self) -> np.ndarray:
        """Learned tokens per sequence."""
        return np.maximum(self.lengths - self.learn_from, 0)


def encode_corpus(tokenizer: Any, prompts: Any, responses: Any, max_length: int) -> Encoded:
    """Tokenise corpus lines (see the module docstring)."""
    prefix = prefix_ids(tokenizer)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    prompts, responses = [str(p) for p in prompts], [str(r) for r in responses]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    r_ids = tokenizer(responses, add_special_tokens=False)["input_ids"] if responses else []
    seqs, learn = [], []
    for p, r in zip(p_ids, r_ids):
        seq = (prefix + list(p) + list(r) + eos)[:max_length]
        seqs.append(seq)
        learn.append(max(1, len(prefix) + len(p)))
    lengths = np.asarray([len(s) for s in seqs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.fromiter((t for s in seqs for t in s), dtype=np.int64, count=int(offsets[-1]))
    return Encoded(ids, offsets, np.asarray(learn, dtype=np.int64))


def check_learned(enc: Encoded, split: str, max_length: int) -> None:
    """Refuse a split with no learned token; warn about lines whose learned part is cut away."""
    empty = int((enc.n_targets == 0).sum())
    if len(enc) and empty == len(enc):
        raise KdfairError(f"corpus split '{split}' has no learned token within --max-length {max_length}: "
                          "every response starts beyond it; raise --max-length")
    if empty:
        print(f"kdfair: warning: {empty} of {len(enc)} lines of corpus split '{split}' have no learned token "
              f"within --max-length {max_length} (the response starts beyond it); they teach nothing",
              file=sys.stderr)


def encoding_identity(tokenizer: Any, max_length: int) -> dict[str, Any]:
    """How corpus lines become tokens (besides the vocabulary): what a cache and a student must share."""
    return {"prefix_ids": prefix_ids(tokenizer), "eos_token_id": tokenizer.eos_token_id,
            "max_length": int(max_length)}


def check_positions(hf: nn.Module, max_length: int, what: str, path: str | Path) -> None:
    """--max-length must fit the model's learned positions (else an index error deep in torch)."""
    limit = model_positions(hf.config)
    if limit is not None and limit < max_length:
        raise KdfairError(f"{what} {path} has {limit} positions, fewer than --max-length {max_length}")


class LMBatches(IndexedBatches):
    """[B, 3, L] batches (ids, attention mask, learned mask) of an Encoded split, padded right."""

    def __init__(self, enc: Encoded, device: torch.device) -> None:
        self.enc = enc
        self.device = device
        self._ids = torch.from_numpy(enc.ids)

    def __len__(self) -> int:
        return len(self.enc)

    def get(self, index: torch.Tensor) -> torch.Tensor:
        rows = index.cpu().numpy()
        starts, lengths = self.enc.offsets[rows], self.enc.lengths[rows]
        width = max(2, int(lengths.max()) if len(rows) else 2)
        pos = np.arange(width)
        valid = pos[None, :] < lengths[:, None]
        flat = np.where(valid, starts[:, None] + pos[None, :], 0)
        x = torch.zeros((len(rows), 3, width), dtype=torch.long)
        x[:, 0] = torch.where(torch.from_numpy(valid), self._ids[torch.from_numpy(flat)], 0)
        x[:, 1] = torch.from_numpy(valid)
        x[:, 2] = torch.from_numpy(valid & (pos[None, :] >= self.enc.learn_from[rows][:, None]))
        return x.to(self.device)


def learned_rows(hidden: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states that predict a learned token [N, H], those tokens [N]), row-major: sequence
    by sequence, in position order (the row order of a teacher cache)."""
    sel = x[:, 2, 1:].bool()
    return hidden[:, :-1][sel], x[:, 0, 1:][sel]


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What two tokenizers must share for token-level distillation: every token's id."""
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False).encode()
    return {"size": len(vocab), "vocab_sha256": hashlib.sha256(blob).hexdigest(),
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}


def check_same_tokenizer(teacher: Any, student: Any, teacher_name: str, student_name: str) -> None:
    """KdfairError unless both tokenizers map every token to the same id (ids compared, not sizes)."""
    tv, sv = teacher.get_vocab(), student.get_vocab()
    if tv == sv:
        return
    t_ids = {i: t for t, i in tv.items()}
    s_ids = {i: t for t, i in sv.items()}
    differ = sorted(i for i in set(t_ids) | set(s_ids) if t_ids.get(i) != s_ids.get(i))
    first = differ[0]
    raise KdfairError(
        f"the tokenizers of teacher {teacher_name} ({len(tv)} tokens) and student {student_name} "
        f"({len(sv)} tokens) differ: id {first} is {t_ids.get(first)!r} in the teacher and "
        f"{s_ids.get(first)!r} in the student ({len(differ)} id(s) differ); token-level "
        "distillation needs the same tokenizer")


class CausalLMTrainee(nn.Module):
    """A transformers causal LM whose forward gives hidden states; `head` gives logits."""

    def __init__(self, hf_model: nn.Module, tokenizer: Any, max_length: int) -> None:
        super().__init__()
        self.hf = hf_model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.vocab = len(tokenizer)
        if self.hf.base_model is self.hf or self.hf.get_output_embeddings() is None:
            raise KdfairError(f"model type {self.hf.config.model_type} has no separate base model and "
                              "output embedding; it cannot be trained as a causal LM here")
        self.softcap = getattr(self.hf.config, "final_logit_softcapping", None)
        #: the peft wrapper when LoRA adapters were added (kdfair_cli.llm.trainee.apply_lora)
        self.lora: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf.base_model(input_ids=x[:, 0], attention_mask=x[:, 1], use_cache=False).last_hidden_state

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.hf.get_output_embeddings()(hidden)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def encode_split(self, split: Any) -> Encoded:
        if "response" not in split.extra:
            raise KdfairError(f"split '{split.name}' is not a corpus split: --arch causal-lm trains on "
                              "--dataset corpus")
        enc = encode_corpus(self.tokenizer, split.extra["prompt"], split.extra["response"], self.max_length)
        check_learned(enc, split.name, self.max_length)
        return enc

    def make_batches(self, split: Any, device: torch.device) -> LMBatches:
        return LMBatches(self.encode_split(split), device)

    def write_dir(self, out: Path, state_dict: dict | None = None) -> None:
        """save_pretrained (one model.safetensors) and the tokenizer into `out`; LoRA adapters are
        merged into the weights first, so the folder is a plain transformers model."""
        if state_dict is not None:
            self.load_state_dict(state_dict)
        if self.lora is not None:
            self.hf = self.lora.merge_and_unload()
            self.lora = None
        write_pretrained(out, self.hf, self.tokenizer)

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks (the classes transformers never splits across devices)."""
        names = set(getattr(self.hf, "_no_split_modules", None) or [])
        found = [m for m in self.hf.modules() if type(m).__name__ in names]
        if not found:
            raise KdfairError(f"model type {self.hf.config.model_type}: no transformer blocks found to shard "
                              "with --parallel fsdp")
        return found


def load_lm_dir(path: str | Path, what: str) -> tuple[nn.Module, Any]:
    """(AutoModelForCausalLM in float32, its tokenizer) from a local directory; `what` names it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    path = check_local_dir(path)
    register_input(path, "model")
    if not (path / "config.json").is_file():
        raise KdfairError(f"{what} {path} has no config.json: not a transformers model directory")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise KdfairError(f"{what} {path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KdfairError(f"{what} {path}: no loadable tokenizer ({str(exc).splitlines()[0]})") from exc
    check_weight_files(path)
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=torch.float32,
                                                  trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise KdfairError(f"{what} {path}: cannot load a causal language model "
                          f"({str(exc).splitlines()[0]})") from exc
    except RuntimeError as exc:
        if "size mismatch" in str(exc) or "mismatched" in str(exc):
            raise mismatch_error(path, hf_config_or_none(path), exc) from exc
        raise
    if len(tok) > hf.get_output_embeddings().weight.shape[0]:
        raise KdfairError(f"{what} {path}: the tokenizer has {len(tok)} tokens, the model's output "
                          f"only {hf.get_output_embeddings().weight.shape[0]}")
    return hf, tok


def hf_config_or_none(path: Path) -> Any:
    """The model's config for an error message, or None when even that does not load."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError):
        return None


def weights_sha256(path: str | Path) -> str:
    """sha256 over the directory's weight files (names and bytes): the model's identity."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
    if not files:
        raise KdfairError(f"{path} has no weight files (*.safetensors or *.bin)")
    return files_fingerprint(*files)


def apply_lora(trainee: CausalLMTrainee, rank: int, alpha: float) -> dict[str, Any]:
    """Add LoRA adapters of `rank` through peft (in place; every other weight frozen) and return
    what model.json records. The targets are peft's defaults for the model type (for Llama:
    q_proj and v_proj); alpha 0 means 2 x rank; no adapter dropout."""
    try:
        import peft
    except ImportError:
        raise KdfairError("--lora-rank needs peft, which is not installed: pip install 'kdfair[lora]'") from None
    config = peft.LoraConfig(r=int(rank), lora_alpha=float(alpha or 2 * rank), lora_dropout=0.0, bias="none")
    try:
        wrapped = peft.get_peft_model(trainee.hf, config)
    except ValueError as exc:
        raise KdfairError(f"--lora-rank: peft cannot add adapters to model type "
                          f"{trainee.hf.config.model_type} ({str(exc).splitlines()[0]})") from exc
    object.__setattr__(trainee, "lora", wrapped)  # not a submodule: the adapters live inside trainee.hf
    trainable = sum(p.numel() for p in trainee.parameters() if p.requires_grad)
    return {"rank": int(rank), "alpha": float(config.lora_alpha), "dropout": 0.0,
            "target_modules": sorted(wrapped.peft_config["default"].target_modules),
            "trainable_parameters": int(trainable), "saved": "merged into the weights"}


def build_trainee(pretrained: str | None, tokenizer: str | None, max_length: int, *, lora_rank: int = 0,
                  lora_alpha: float = 0.0, grad_checkpointing: bool = False) -> tuple[CausalLMTrainee, dict]:
    """The student (or NDS / teacher) to train from --pretrained, and what model.json records.

    grad_checkpointing: transformers' activation checkpointing of the decoder blocks
    (non-reentrant, so frozen inputs under LoRA still get gradients and dropout replays)."""
    if not pretrained:
        raise KdfairError("--arch causal-lm needs --pretrained DIR: a local transformers causal-LM "
                          "directory holding the initial weights and the tokenizer")
    if tokenizer:
        raise KdfairError("--tokenizer does not apply to --arch causal-lm: the tokenizer is the one "
                          "saved in the --pretrained directory")
    hf, tok = load_lm_dir(pretrained, "--pretrained")
    check_positions(hf, max_length, "--pretrained", pretrained)
    trainee = CausalLMTrainee(hf, tok, max_length)
    meta = {"model_type": hf.config.model_type, "pretrained": str(Path(pretrained).resolve()),
            "pretrained_weights_sha256": weights_sha256(pretrained), "max_length": int(max_length),
            "vocab": trainee.vocab, "tokenizer": tokenizer_identity(tok),
            "encoding": encoding_identity(tok, max_length)}
    if grad_checkpointing:  # transformers >= 5.x renamed it; older releases have only the first name
        enable = getattr(hf, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora_rank:
        meta["lora"] = apply_lora(trainee, lora_rank, lora_alpha)
    return trainee, meta

