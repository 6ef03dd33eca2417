"""The teacher's top-k cache: one pass of a causal-LM teacher over a corpus, for every temperature.

`kdfair predict TEACHER --dataset corpus --data CORPUS --top-k 64 -o CACHE_DIR` tokenises the
corpus's training lines exactly as the student will (kdfair_cli.models.lm_trainee), runs the
teacher once, and keeps per learned token its k largest logits with their ids and, for every
temperature of `temperatures`, the log of the lumped tail (kdfair_cli.io.topk_cache for the
layout). `kdfair distill --teacher-logits CACHE_DIR -T t` then costs one student run per t.
A killed pass leaves no cache.json, so nothing half-written is ever read as a cache; a rerun
starts the pass again.
"""

from __future__ import annotations

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
from kdfair_cli.io.topk_cache import DEFAULT_TEMPERATURES, DEFAULT_TOP_K, MANIFEST, CacheWriter
from kdfair_cli.models.lm_trainee import (
    LMBatches, encode_corpus, learned_rows, load_lm_dir, tokenizer_identity, weights_sha256,
)
from kdfair_cli.train.config import DEFAULT_MAX_LENGTH
from kdfair_cli.train.device import resolve_device
from kdfair_cli.train.lm_kd_loss import topk_from_logits
from kdfair_cli.train.lm_teacher import LOSS_CHUNK

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
    vocab = len(tok)
    if top_k > vocab:
        raise KdfairError(f"--top-k {top_k} is larger than the teacher's vocabulary ({vocab} tokens)")
    replace = _replaceable(out, force)
    enc = encode_corpus(tok, split.extra["prompt"], split.extra["response"], max_length)
    batches = LMBatches(enc, dev)
    hf.to(dev).eval()
    head, base = hf.get_output_embeddings(), hf.base_model
    softcap = getattr(hf.config, "final_logit_softcapping", None)
    meta = {"kdfair_version": __version__,
            "tokenizer": tokenizer_identity(tok),
            "teacher": {"dir": str(Path(teacher).resolve()), "arch": hf.config.model_type,
                        "weights_sha256": weights_sha256(teacher), "dtype": "float32"},
            "corpus": {"path": str(Path(corpus).resolve()), "fingerprint": dataset.info.fingerprint,
                       "split": "train", "lines": len(split)},
            "max_length": int(max_length)}
    writer = CacheWriter(out, top_k=top_k, temperatures=list(temps), vocab=vocab, meta=meta, force=replace)
    t0, tokens = time.perf_counter(), 0
    with torch.no_grad():
        for index, x in batches.sequential(batch_size):
            rows, targets = learned_rows(base(input_ids=x[:, 0], attention_mask=x[:, 1],
                                              use_cache=False).last_hidden_state, x)
            parts = []
            for s in range(0, len(rows), LOSS_CHUNK):
                logits = head(rows[s:s + LOSS_CHUNK]).float()[:, :vocab]
                if softcap:
                    logits = torch.tanh(logits / softcap) * softcap
                parts.append(topk_from_logits(logits, top_k, temps))
            values = torch.cat([p[0] for p in parts]) if parts else torch.zeros((0, top_k))
            indices = torch.cat([p[1] for p in parts]) if parts else torch.zeros((0, top_k), dtype=torch.long)
            tail = torch.cat([p[2] for p in parts]) if parts else torch.zeros((0, len(temps)))
            pos = index.cpu().numpy()
            writer.add(split.sample_id[pos], enc.n_targets[pos], targets.cpu().numpy().astype(np.int32),
                       values.cpu().numpy().astype(np.float32), indices.cpu().numpy().astype(np.int32),
                       tail.cpu().numpy().astype(np.float32))
            tokens += len(targets)
    manifest = writer.close()
    if verbose:
        rate = tokens / max(time.perf_counter() - t0, 1e-9)
        print(f"teacher cache: {len(split)} lines, {tokens} tokens, top-{top_k}, "
              f"T in {', '.join(f'{t:g}' for t in temps)} ({rate:.0f} tokens/s)", file=sys.stderr)
    return manifest
