"""`kdfair generate`: text generation by a local causal LM, for a BBQ audit or a teacher corpus.

Prompts: a BBQ item is written with GENERATION_TEMPLATE (options lettered A-C) and, when the
tokenizer has a chat template (or `chat=True`), wrapped as one user turn with the generation
prompt added; a corpus line's `prompt` is used as is (also wrapped when chatting). Prompts are
tokenised here, by the model's own tokenizer, for both engines, so the two engines see the same
token ids.

Engines:
- `hf`: transformers `generate`, prompts in batches of similar length, left-padded, on CPU or
  GPU. Each batch of sample k draws from `torch.manual_seed(seed_for(seed, k, b))`, so the same
  seed, batch size and device give the same text.
- `vllm`: vLLM's offline `LLM.generate` with one `SamplingParams(n=K, seed=...)` per prompt,
  tensor and data parallel sizes passed through. vLLM is imported only here, when asked for.

Temperature 0 is greedy decoding (then the K samples are identical).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kdfair_cli import __version__
from kdfair_cli.errors import KdfairError
from kdfair_cli.llm.answers import read_generation
from kdfair_cli.llm.sequence import KIND, SIDECAR_SUFFIX

GENERATION_TEMPLATE = ("{context}\n{question}\n(A) {ans0}\n(B) {ans1}\n(C) {ans2}\n"
                       "Answer with the letter of the correct option.")
ENGINES = ("hf", "vllm")
VLLM_HINT = "--engine vllm needs vLLM, which is not installed: pip install 'kdfair[vllm]' (a CUDA machine)"


@dataclass(frozen=True)
class Sampling:
    """How text is drawn: the settings a generated file records."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    samples: int = 1
    seed: int = 0

    def check(self) -> None:
        if self.samples < 1:
            raise KdfairError(f"--samples must be >= 1, got {self.samples}")
        if self.max_new_tokens < 1:
            raise KdfairError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise KdfairError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise KdfairError(f"--top-p must be in (0, 1], got {self.top_p}")


@dataclass
class Generated:
    """One sample of one prompt: the new text and its token count; `finished` = ended by EOS."""

    text: str
    n_tokens: int
    finished: bool


class Engine(Protocol):
    def generate(self, prompt_ids: list[list[int]], sampling: Sampling) -> list[list[Generated]]:
        """[K samples][prompts] generations, in prompt order."""


def seed_for(seed: int, sample: int, batch: int) -> int:
    """The torch seed of one batch of one sample: independent of every other batch."""
    digest = hashlib.sha256(f"{seed}/{sample}/{batch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def check_model_dir(model_dir: str | Path) -> Path:
    """The local folder, or the one-line hub refusal; without importing torch (bad input is fast)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise KdfairError(f"model directory {path} does not exist; kdfair never downloads from the Hugging "
                          "Face hub: download the model yourself (e.g. `hf download NAME --local-dir DIR`) "
                          "and pass the folder")
    return path


def has_chat_template(model_dir: str | Path) -> bool:
    """Whether the folder's tokenizer has a chat template (read from its files, no model load)."""
    path = Path(model_dir)
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(isinstance(config, dict) and config.get("chat_template"))


def chat_prompts(tokenizer: Any, texts: list[str], chat: bool | None) -> tuple[list[list[int]], bool]:
    """Token ids of each prompt (and whether the chat template was applied).

    chat None: use the template when the tokenizer has one; True: it must have one; False: plain
    text after the tokenizer's leading special tokens (BOS).
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat and not has_template:
        raise KdfairError("--chat: the model's tokenizer has no chat template (tokenizer_config.json "
                          "'chat_template'); use --no-chat")
    use = has_template if chat is None else chat
    if use:
        rendered = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                                  add_generation_prompt=True) for t in texts]
        # the template writes its own special tokens (BOS): the tokenizer must not add them again
        ids = [list(x) for x in tokenizer(rendered, add_special_tokens=False)["input_ids"]] if texts else []
    else:
        ids = [list(x) for x in tokenizer(texts, add_special_tokens=True)["input_ids"]] if texts else []
    return ids, use


class HFEngine:
    """transformers `generate`, batched and left-padded."""

    def __init__(self, lm: Any, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise KdfairError(f"--batch-size must be >= 1, got {batch_size}")
        self.lm, self.batch_size = lm, batch_size

    def generate(self, prompt_ids: list[list[int]], sampling: Sampling) -> list[list[Generated]]:
        import torch

        tok, model, device = self.lm.tokenizer, self.lm.model, self.lm.device
        eos = stop_ids(tok, model)
        vocab = model.get_input_embeddings().num_embeddings
        # padded positions are masked, so any id the embedding has will do (a tokenizer's added
        # pad token can lie past a small model's vocabulary)
        pad = next((t for t in (tok.pad_token_id, *eos, 0) if t is not None and 0 <= t < vocab))
        order = np.argsort([-len(p) for p in prompt_ids], kind="stable")
        out: list[list[Generated]] = []
        for k in range(sampling.samples):
            sample: list[Generated | None] = [None] * len(prompt_ids)
            for b, start in enumerate(range(0, len(order), self.batch_size)):
                idx = order[start:start + self.batch_size]
                rows = [prompt_ids[i] for i in idx]
                width = max(len(r) for r in rows)
                ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for j, r in enumerate(rows):
                    ids[j, width - len(r):] = torch.tensor(r)
                    mask[j, width - len(r):] = 1
                kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": pad,
                                          "eos_token_id": eos or None}
                if sampling.temperature > 0:
                    kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                                  top_k=0)
                else:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                torch.manual_seed(seed_for(sampling.seed, k, b))
                with torch.no_grad():
                    res = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
                new = res[:, width:].cpu().tolist()
                for j, i in enumerate(idx):
                    sample[i] = _cut(new[j], eos, pad, tok)
            out.append(sample)  # type: ignore[arg-type]
        return out


def stop_ids(tok: Any, model: Any) -> list[int]:
    """Every id that ends an answer: the tokenizer's EOS and the model's generation_config ones
    (a chat model ends its turn with its own token, e.g. Qwen's <|im_end|>)."""
    ids: list[int] = []
    for source in (tok.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                   model.config.eos_token_id):
        for i in (source if isinstance(source, (list, tuple)) else [source]):
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    return ids


def _cut(tokens: list[int], eos: list[int], pad: int, tok: Any) -> Generated:
    """New tokens up to the first stop id (padding after it dropped)."""
    ends = [j for j, t in enumerate(tokens) if t in eos]
    if ends:
        tokens = tokens[:ends[0]]
    return Generated(tok.decode(tokens, skip_special_tokens=True), len(tokens), bool(ends))


class VLLMEngine:
    """vLLM offline inference over the same token ids; `module` is the vllm module (a fake in tests)."""

    def __init__(self, model_dir: str | Path, *, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 seed: int = 0, module: Any = None, dtype: str = "auto") -> None:
        if tensor_parallel_size < 1 or data_parallel_size < 1:
            raise KdfairError("--tensor-parallel-size and --data-parallel-size must be >= 1")
        vllm = module if module is not None else import_vllm()
        self.vllm = vllm
        kwargs: dict[str, Any] = {"model": str(model_dir), "tokenizer": str(model_dir), "seed": seed,
                                  "tensor_parallel_size": tensor_parallel_size, "dtype": dtype,
                                  "trust_remote_code": False}
        if data_parallel_size > 1:
            kwargs["data_parallel_size"] = data_parallel_size
        self.llm_kwargs = kwargs
        self.llm = vllm.LLM(**kwargs)

    def requests(self, prompt_ids: list[list[int]], sampling: Sampling) -> tuple[list[dict], list[Any]]:
        """(prompts as token ids, one SamplingParams each: n = K, a seed per prompt)."""
        params = [self.vllm.SamplingParams(n=sampling.samples, temperature=sampling.temperature,
                                           top_p=sampling.top_p, max_tokens=sampling.max_new_tokens,
                                           seed=seed_for(sampling.seed, 0, i), skip_special_tokens=True)
                  for i in range(len(prompt_ids))]
        return [{"prompt_token_ids": list(p)} for p in prompt_ids], params

    def generate(self, prompt_ids: list[list[int]], sampling: Sampling) -> list[list[Generated]]:
        prompts, params = self.requests(prompt_ids, sampling)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        if len(outputs) != len(prompt_ids):
            raise KdfairError(f"vLLM returned {len(outputs)} results for {len(prompt_ids)} prompts")
        result: list[list[Generated]] = [[] for _ in range(sampling.samples)]
        for req in outputs:
            if len(req.outputs) != sampling.samples:
                raise KdfairError(f"vLLM returned {len(req.outputs)} samples of a prompt, asked for {sampling.samples}")
            for k, o in enumerate(req.outputs):
                result[k].append(Generated(o.text, len(o.token_ids), o.finish_reason == "stop"))
        return result


def import_vllm() -> Any:
    """The vllm module, or the one-line error saying how to get it."""
    try:
        import vllm
    except ImportError:
        raise KdfairError(VLLM_HINT) from None
    return vllm


def make_engine(engine: str, model_dir: str | Path, lm: Any, *, batch_size: int, seed: int,
                tensor_parallel_size: int = 1, data_parallel_size: int = 1) -> Engine:
    if engine == "hf":
        if tensor_parallel_size != 1 or data_parallel_size != 1:
            raise KdfairError("--tensor-parallel-size / --data-parallel-size need --engine vllm")
        return HFEngine(lm, batch_size)
    if engine == "vllm":
        return VLLMEngine(model_dir, tensor_parallel_size=tensor_parallel_size,
                          data_parallel_size=data_parallel_size, seed=seed)
    raise KdfairError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def load_for_generation(model_dir: str | Path, device: str, engine: str) -> Any:
    """The model (for hf) or only its tokenizer and provenance (for vllm, which loads its own)."""
    from kdfair_cli.llm.causal_lm import check_local_dir, load_causal_lm
    from kdfair_cli.train.device import resolve_device

    check_local_dir(model_dir)
    if engine not in ENGINES:
        raise KdfairError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "hf":
        return load_causal_lm(model_dir, resolve_device(device))
    import_vllm()  # before loading anything: a missing vLLM is one line
    return tokenizer_only(model_dir)


def open_engine(model_dir: str | Path, *, engine: str = "hf", device: str = "auto", batch_size: int = 16,
                seed: int = 0, tensor_parallel_size: int = 1, data_parallel_size: int = 1) -> tuple[Any, Engine]:
    """(the model, or for vllm its tokenizer and provenance; the engine that generates with it):
    what `kdfair generate` and a sweep's generation cells both start from."""
    lm = load_for_generation(model_dir, device, engine)
    return lm, make_engine(engine, model_dir, lm, batch_size=batch_size, seed=seed,
                           tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size)


@dataclass
class TokenizerOnly:
    """What the vLLM path needs of the model here (vLLM loads the weights itself)."""

    tokenizer: Any
    provenance: dict[str, Any]


def tokenizer_only(model_dir: str | Path) -> TokenizerOnly:
    from transformers import AutoConfig, AutoTokenizer

    from kdfair_cli.io.atomic import register_input
    from kdfair_cli.llm.causal_lm import TOKENIZER_HASHED, check_local_dir, sha256_files

    path = check_local_dir(model_dir)
    register_input(path, "model")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KdfairError(f"{path}: no loadable config and tokenizer ({str(exc).splitlines()[0]})") from None
    weights = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
    provenance = {"dir": str(path.resolve()), "arch": config.model_type, "model_type": config.model_type,
                  "config_sha256": sha256_files([path / "config.json"]),
                  "tokenizer_sha256": sha256_files([path / f for f in TOKENIZER_HASHED if (path / f).is_file()]),
                  "weights": {p.name: p.stat().st_size for p in weights}}
    return TokenizerOnly(tok, provenance)


def weights_sha256(model_dir: str | Path) -> str:
    """sha256 over the weight files (name and bytes), in name order."""
    from kdfair_cli.llm.causal_lm import sha256_files

    path = Path(model_dir)
    return sha256_files(sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin")))


def token_counts(tokenizer: Any, texts: list[str]) -> np.ndarray:
    """Tokens of each text by the model's tokenizer (0 for an empty text)."""
    if not texts:
        return np.zeros(0, np.int64)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return np.asarray([len(i) if t else 0 for i, t in zip(ids, texts)], np.int64)


def generate_bbq(model_dir: str | Path, data: str | Path, *, sampling: Sampling, engine: Engine, lm: Any,
                 chat: bool | None, think_tags: tuple[str, str] | None, template: str | None = None,
                 dataset_options: dict | None = None) -> list[dict]:
    """Generate on every BBQ item; one dict per sample: the columns and metadata of its file."""
    from kdfair_cli.data.registry import open_dataset
    from kdfair_cli.llm.scoring import TEMPLATE_FIELDS, _trained_facts, parse_template

    sampling.check()
    template = parse_template(template) if template else GENERATION_TEMPLATE
    ds = open_dataset("bbq", str(data), **(dataset_options or {}))
    info, part = ds.info, ds.split("test")
    n = len(part)
    texts = [template.format(**{f: str(part.attrs[f][i]) for f in TEMPLATE_FIELDS}) for i in range(n)]
    options = [[str(part.attrs[f"ans{k}"][i]) for k in range(3)] for i in range(n)]
    prompt_ids, used_chat = chat_prompts(lm.tokenizer, texts, chat)
    samples = engine.generate(prompt_ids, sampling)
    runs = []
    for k, gens in enumerate(samples):
        parsed = [read_generation(g.text, options[i], think_tags) for i, g in enumerate(gens)]
        reasoning = [p[0] for p in parsed]
        cols = {
            "pred": np.asarray([p[2].pred for p in parsed], np.int32),
            "generated": np.asarray([g.text for g in gens], dtype=object),
            "answer_text": np.asarray([p[1] for p in parsed], dtype=object),
            "generated_tokens": np.asarray([g.n_tokens for g in gens], np.int64),
            "reasoning_tokens": token_counts(lm.tokenizer, reasoning),
            "finished": np.asarray([g.finished for g in gens], bool),
            "extraction": np.asarray([p[2].method for p in parsed], dtype=object),
            "unparsed_reason": np.asarray([p[2].reason for p in parsed], dtype=object),
        }
        meta = {
            "kdfair_version": __version__, "num_classes": 3, "class_names": list(info.class_names),
            "attributes": {a.name: list(a.values) for a in info.attributes},
            "dataset": info.name, "dataset_fingerprint": info.fingerprint, "split": "test",
            "dataset_options": info.options,
            "model": {**lm.provenance, **_trained_facts(model_dir)},
            "generation": {**asdict(sampling), "sample": k, "engine": type(engine).__name__,
                           "chat_template": used_chat, "template": template,
                           "think_tags": list(think_tags) if think_tags else None,
                           "unparsed_pred": -1},
            "lm": {"generation": True},
        }
        runs.append({"sample_id": part.sample_id.astype(np.int64), "label": part.labels.astype(np.int64),
                     "attrs": dict(part.attrs), "cols": cols, "meta": meta})
    return runs


def write_generation_file(path: str | Path, run: dict) -> None:
    """A predictions file (schema kdfair.predictions/1, no logits) with the generation columns."""
    import pyarrow as pa

    from kdfair_cli.io.predictions import SCHEMA
    from kdfair_cli.io.tables import with_meta, write_table

    cols: dict[str, Any] = {"sample_id": pa.array(run["sample_id"]),
                            "label": pa.array(run["label"].astype(np.int32))}
    for name, values in run["cols"].items():
        values = np.asarray(values)
        cols[name] = pa.array(values.astype(str) if values.dtype.kind in "OUS" else values)
    for name, values in run["attrs"].items():
        values = np.asarray(values)
        cols[f"attr_{name}"] = pa.array(values.astype(str) if values.dtype.kind in "OUS" else values)
    write_table(path, with_meta(pa.table(cols), {**run["meta"], "schema": SCHEMA}), "parquet")


def sample_paths(out: str | Path, samples: int) -> list[Path]:
    """OUT for one sample; OUT-k0.parquet .. OUT-k{K-1}.parquet (stem + -k<i>) for several."""
    out = Path(out)
    if samples == 1:
        return [out]
    return [out.with_name(f"{out.stem}-k{k}{out.suffix}") for k in range(samples)]


def read_prompts(path: str | Path) -> tuple[list[str], list[int]]:
    """(prompts, ids) of a prompts JSONL: {"prompt": ..., "id": ...} lines, id optional."""
    from kdfair_cli.io.jsonl import json_lines

    prompts, ids = [], []
    for where, row in json_lines(path):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise KdfairError(f"{where}: expected a JSON object with a string 'prompt'")
        if "response" in row or "text" in row:
            raise KdfairError(f"{where}: a prompts file has 'prompt' (and 'id') only; the teacher "
                              "writes the responses")
        ident = row.get("id", len(ids))
        if not isinstance(ident, int) or isinstance(ident, bool) or ident < 0:
            raise KdfairError(f"{where}: 'id' must be a non-negative integer, found {ident!r}")
        prompts.append(row["prompt"])
        ids.append(ident)
    if not prompts:
        raise KdfairError(f"{path} holds no prompts")
    if len(set(ids)) != len(ids):
        raise KdfairError(f"{path}: ids must be unique")
    return prompts, ids


def generate_corpus(model_dir: str | Path, prompts_path: str | Path, out: str | Path, *, sampling: Sampling,
                    engine: Engine, lm: Any, chat: bool | None) -> dict:
    """Write OUT (JSONL: prompt, response, id; K lines per prompt) and its provenance sidecar.

    The k-th sample of prompt id i gets id i * K + k, so the lines stay unique for the corpus
    reader; `source_id` keeps i.
    """
    from kdfair_cli.io.atomic import write_text_atomic
    from kdfair_cli.io.modeldir import sha256_file

    sampling.check()
    prompts, ids = read_prompts(prompts_path)
    prompt_ids, used_chat = chat_prompts(lm.tokenizer, prompts, chat)
    samples = engine.generate(prompt_ids, sampling)
    k_total = sampling.samples
    lines = []
    for j, (prompt, ident) in enumerate(zip(prompts, ids)):
        for k in range(k_total):
            g = samples[k][j]
            lines.append(json.dumps({"prompt": prompt, "response": g.text if g.text else " ",
                                     "id": ident * k_total + k, "source_id": ident, "sample": k},
                                    ensure_ascii=False))
    text = "".join(line + "\n" for line in lines)
    write_text_atomic(out, text)
    provenance = {
        "kind": KIND, "kdfair_version": __version__,
        "teacher": {**{k: lm.provenance[k] for k in ("dir", "arch", "config_sha256", "tokenizer_sha256")},
                    "weights_sha256": weights_sha256(model_dir)},
        "sampling_temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
        "samples": k_total, "max_new_tokens": sampling.max_new_tokens, "chat_template": used_chat,
        "engine": type(engine).__name__, "prompts": str(prompts_path),
        "prompts_sha256": sha256_file(prompts_path), "corpus_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "n_prompts": len(prompts), "n_lines": len(lines),
    }
    write_text_atomic(f"{out}{SIDECAR_SUFFIX}", json.dumps(provenance, indent=1, sort_keys=True) + "\n")
    return provenance
