"""The teacher's top-k cache: one pass of a causal-LM teacher over a corpus, for every temperature.

`kdfair predict TEACHER --dataset corpus --data CORPUS --top-k 64 -o CACHE_DIR` tokenises the
corpus's training lines exactly as the student will (kdfair_cli.llm.trainee), runs the
teacher once, and keeps per learned token its k largest logits with their ids and, for every
temperature of `temperatures`, the log of the lumped tail (kdfair_cli.llm.topk_cache for the
layout). `kdfair distill --teacher-logits CACHE_DIR -T t` then costs one student run per t.
A killed pass leaves no cache.json, so nothing half-written is ever read as a cache; a rerun
starts the pass again.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdfair_cli import __version__
from kdfair_cli.data.registry import open_dataset
from kdfair_cli.errors import KdfairError
from kdfair_cli.llm.topk_cache import DEFAULT_TEMPERATURES, DEFAULT_TOP_K, MANIFEST, CacheWriter
from kdfair_cli.llm.trainee import (
    CausalLMTrainee, Encoded, LMBatches, check_learned, check_positions, encode_corpus, encoding_identity, learned_rows, load_lm_dir,
    tokenizer_identity, weights_sha256,
)
from kdfair_cli.train.config import DEFAULT_MAX_LENGTH
from kdfair_cli.train.device import resolve_device
from kdfair_cli.llm.kd_loss import topk_from_logits
from kdfair_cli.llm.teacher import LOSS_CHUNK

def parse_temperatures(text: str | Sequence[float]) -> tuple[float, ...]:
    """'1,2,4' (or numbers) -> (1.0, 2.0, 4.0): positive, finite, distinct; 1 is always added."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[float] = []
    for item in items:
        try:
            t = float(item)
        except (TypeError, ValueError):
            raise KdfairError(f"--cache-temperatures: {item!r} is not a number") from None
        if not (np.isfinite(t) and t > 0):
            raise KdfairError(f"--cache-temperatures: {item!r} must be a positive temperature")
        out.append(t)
    return tuple(sorted(set(out) | {1.0}))


def _replaceable(out: Path, force: bool) -> bool:
    """Whether `out` may be replaced: an earlier killed pass (shards, no cache.json) always, a
    finished cache with --force only, anything else never (it is not a cache)."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise KdfairError(f"output {out} exists and is not a directory (a cache is a directory)")
    if (out / MANIFEST).exists() and not force:
        raise KdfairError(f"{out} already holds a teacher cache; use --force to overwrite it")
    unknown = [p.name for p in out.iterdir() if not (p.name.startswith("shard-") or p.name == MANIFEST
                                                     or p.name.endswith(".tmp"))]
    if unknown:
        raise KdfairError(f"{out} holds other files ({unknown[0]}, ...): give an empty or new directory")
    return True


def _teacher_pass(model: CausalLMTrainee, batches: LMBatches, writer: CacheWriter, sample_id: np.ndarray,
                  enc: Encoded, top_k: int, temps: Sequence[float], batch_size: int) -> int:
    """Run the teacher over every line and hand the writer its top-k rows; returns the tokens seen."""
    tokens = 0
    with torch.no_grad():
        for index, x in batches.sequential(batch_size):
            rows, targets = learned_rows(model(x), x)
            parts = []
            for s in range(0, len(rows), LOSS_CHUNK):
                logits = model.head(rows[s:s + LOSS_CHUNK]).float()[:, :model.vocab]
                parts.append(topk_from_logits(logits, top_k, temps))
            values = torch.cat([p[0] for p in parts]) if parts else torch.zeros((0, top_k))
            indices = torch.cat([p[1] for p in parts]) if parts else torch.zeros((0, top_k), dtype=torch.long)
            tail = torch.cat([p[2] for p in parts]) if parts else torch.zeros((0, len(temps)))
            pos = index.cpu().numpy()
            writer.add(sample_id[pos], enc.n_targets[pos], targets.cpu().numpy().astype(np.int32),
                       values.cpu().numpy().astype(np.float32), indices.cpu().numpy().astype(np.int32),
                       tail.cpu().numpy().astype(np.float32))
            tokens += len(targets)
    return tokens


def _remove_cache(out: Path, keep_folder: bool) -> None:
    """Undo a failed pass: its shards and temporaries, and the folder if the pass made it."""
    if not out.is_dir():
        return
    if not keep_folder:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.name.startswith("shard-") or p.name == MANIFEST or p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)


def write_teacher_cache(teacher: str | Path, corpus: str | Path, out: str | Path, *,
                        top_k: int = DEFAULT_TOP_K, temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
                        max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = 8, device: str = "auto",
                        force: bool = False, verbose: bool = True) -> dict[str, Any]:
    """Run `teacher` over the corpus's train lines and write the top-k cache; returns cache.json."""
    out = Path(out)
    temps = parse_temperatures(temperatures)
    if top_k < 1:
        raise KdfairError(f"--top-k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise KdfairError(f"--batch-size must be positive, got {batch_size}")
    if max_length < 8:
        raise KdfairError(f"--max-length must be at least 8, got {max_length}")
    dataset = open_dataset("corpus", corpus)
    split = dataset.split("train")
    dev = resolve_device(device)
    hf, tok = load_lm_dir(teacher, "teacher")
    check_positions(hf, max_length, "teacher", teacher)
    vocab = len(tok)
    top_k = min(top_k, vocab)  # k >= V keeps every logit: the exact KL
    replace = _replaceable(out, force)
    enc = encode_corpus(tok, split.extra["prompt"], split.extra["response"], max_length)
    check_learned(enc, "train", max_length)
    batches = LMBatches(enc, dev)
    model = CausalLMTrainee(hf, tok, max_length).to(dev).eval()
    meta = {"kdfair_version": __version__,
            "tokenizer": tokenizer_identity(tok),
            "teacher": {"dir": str(Path(teacher).resolve()), "arch": hf.config.model_type,
                        "weights_sha256": weights_sha256(teacher), "dtype": "float32"},
            "corpus": {"path": str(Path(corpus).resolve()), "fingerprint": dataset.info.fingerprint,
                       "split": "train", "lines": len(split)},
            "encoding": encoding_identity(tok, max_length)}
    existed = out.exists()
    writer = CacheWriter(out, top_k=top_k, temperatures=list(temps), vocab=vocab, meta=meta, force=replace)
    t0 = time.perf_counter()
    try:
        tokens = _teacher_pass(model, batches, writer, split.sample_id, enc, top_k, temps, batch_size)
        manifest = writer.close()
    except BaseException:  # nothing half-written stays behind: no shards, no empty folder
        _remove_cache(out, keep_folder=existed)
        raise
    if verbose:
        rate = tokens / max(time.perf_counter() - t0, 1e-9)
        print(f"teacher cache: {len(split)} lines, {tokens} tokens, top-{top_k}, "
              f"T in {', '.join(f'{t:g}' for t in temps)} ({rate:.0f} tokens/s)", file=sys.stderr)
    return manifest
