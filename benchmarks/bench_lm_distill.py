"""Learned tokens per second of offline (top-k cache) against online causal-LM distillation,
run by hand (not collected by pytest).

    python benchmarks/bench_lm_distill.py [--lines 256] [--temperatures 4] [--top-k 64] [--repeats 3]

A tiny random Llama teacher (wider and deeper than the student) and student share a tokenizer;
both modes train the same student for one epoch on the same corpus in this process, one after
the other, `--repeats` times. Online runs the teacher on every batch; offline reads its top-k
cache, written once. Printed: the median tokens/s of each, their ratio, and the cost of a
temperature grid of `--temperatures` runs with the cache pass included.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdfair_cli.llm.cache import write_teacher_cache  # noqa: E402
from kdfair_cli.train.config import TrainConfig  # noqa: E402
from kdfair_cli.train.runner import train_model  # noqa: E402
from tests.llm_fakes import tiny_lm, write_corpus  # noqa: E402


def run(root: Path, name: str, corpus: Path, student: Path, max_length: int, **teacher: str) -> tuple[float, int]:
    """(seconds in the training loop, learned tokens) of one distillation epoch; loading the
    models, tokenising and saving are left out (model.json's train_seconds)."""
    cfg = TrainConfig(arch="causal-lm", dataset="corpus", data=str(corpus), pretrained=str(student),
                      out=str(root / name), role="ds", temperature=4.0, alpha=0.8, epochs=1, batch_size=16,
                      optimizer="adamw", lr=1e-3, device="cpu", max_length=max_length, **teacher)
    meta = train_model(cfg, force=True, verbose=False)
    return float(meta["train_seconds"]), int(meta["lm"]["train_tokens"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=512)
    ap.add_argument("--top-k", type=int, default=64)
    ap.add_argument("--temperatures", type=int, default=4, help="grid size for the amortised figure")
    ap.add_argument("--teacher-hidden", type=int, default=128)
    ap.add_argument("--teacher-layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: immune to the spin-wait "
                    "slow-downs of OpenMP threads on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = write_corpus(root / "corpus.jsonl", n=args.lines)
        teacher = tiny_lm(root / "teacher", "llama", seed=0, hidden=args.teacher_hidden, layers=args.teacher_layers)
        student = tiny_lm(root / "student", "llama", seed=1, hidden=32, layers=1)
        t0 = time.perf_counter()
        write_teacher_cache(teacher, corpus, root / "cache", top_k=args.top_k, temperatures=[4], max_length=96,
                            device="cpu", verbose=False)
        cache_s = time.perf_counter() - t0
        online, offline = [], []
        for _ in range(args.repeats):
            s, tokens = run(root, "on", corpus, student, 96, teacher=str(teacher))
            online.append(s)
            s, tokens = run(root, "off", corpus, student, 96, teacher_logits=str(root / "cache"))
            offline.append(s)
    on_s, off_s = statistics.median(online), statistics.median(offline)
    print(f"corpus: {args.lines} lines, {tokens} learned tokens per epoch; teacher {args.teacher_hidden} wide x "
          f"{args.teacher_layers} layers, student 32 x 1; top-{args.top_k}; {args.repeats} repeats; "
          f"{args.threads} thread(s)")
    print(f"online  : {tokens / on_s:9.0f} tokens/s  ({on_s:.2f} s/epoch; runs {', '.join(f'{x:.2f}' for x in online)})")
    print(f"offline : {tokens / off_s:9.0f} tokens/s  ({off_s:.2f} s/epoch; runs {', '.join(f'{x:.2f}' for x in offline)})")
    print(f"ratio offline/online tokens/s: {on_s / off_s:.2f} of the medians, {min(online) / min(offline):.2f} of "
          f"the fastest runs (the least disturbed by other processes)")
    n = args.temperatures
    print(f"grid of {n} temperatures, 1 epoch each (training loops only): online {n * on_s:.1f} s, offline {cache_s + n * off_s:.1f} s "
          f"(cache pass {cache_s:.1f} s once) -> {n * on_s / (cache_s + n * off_s):.2f}x")


if __name__ == "__main__":
    main()
