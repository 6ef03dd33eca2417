"""Benchmarks of the metric commands, run by hand (not collected by pytest).

    python benchmarks/bench_metrics.py [--fairlearn-rows 1000000]

1. group fairness on 10 million rows, 10 groups, against fairlearn's functions on the same data
   (fairlearn is timed on --fairlearn-rows rows and scaled linearly when that is below 10M);
2. compare-classes with 1000 classes, 50,000 samples and 5 + 5 seeds (files read from disk);
3. exact kNN pairs for 50,000 samples of 512 features.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdfair_cli.io.predictions import read_predictions, write_predictions  # noqa: E402
from kdfair_cli.metrics.class_bias import compare_classes  # noqa: E402
from kdfair_cli.metrics.group import encode_groups, group_fairness  # noqa: E402
from kdfair_cli.metrics.pairs import knn_pairs, pair_distances  # noqa: E402


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_group(n: int, fairlearn_rows: int) -> None:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    rng = np.random.default_rng(0)
    group = rng.integers(0, 10, n)
    label = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.6 + 0.03 * group, label, 1 - label)
    names = [str(g) for g in range(10)]
    res, t_ours = timed(group_fairness, label, pred, group, names, 2, positive_class=1)
    m = min(n, fairlearn_rows)
    sl = slice(0, m)
    start = time.perf_counter()
    dpd_fl = demographic_parity_difference(label[sl], pred[sl], sensitive_features=group[sl])
    eod_fl = equalized_odds_difference(label[sl], pred[sl], sensitive_features=group[sl])
    t_fl = time.perf_counter() - start
    t_fl_scaled = t_fl * n / m
    sub, _ = timed(group_fairness, label[sl], pred[sl], group[sl], names, 2, positive_class=1)
    print(f"group fairness, {n:,} rows, 10 groups, binary:")
    print(f"  kdfair   : {t_ours:.3f} s   DPD {res.dpd:.6f}  EOD {res.eod:.6f}")
    scaled = "" if m == n else f" on {m:,} rows, scaled x{n / m:.0f} to {t_fl_scaled:.1f} s"
    print(f"  fairlearn: {t_fl:.2f} s{scaled}")
    print(f"  same values on the fairlearn rows: DPD {sub.dpd:.10f} vs {dpd_fl:.10f}, "
          f"EOD {sub.eod:.10f} vs {eod_fl:.10f} -> "
          f"{'equal' if np.isclose(sub.dpd, dpd_fl) and np.isclose(sub.eod, eod_fl) else 'DIFFERENT'}")
    print(f"  speed-up : {t_fl_scaled / t_ours:.0f}x (target >= 100x)")
    _, t_enc = timed(encode_groups, group)
    print(f"  (encoding raw attribute values to group codes, when needed: +{t_enc:.2f} s)")


def bench_compare(c: int, n: int, seeds: int) -> None:
    rng = np.random.default_rng(1)
    label = rng.integers(0, c, n)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"a": [], "b": []}
        for side, acc in (("a", 0.75), ("b", 0.7)):
            for s in range(seeds):
                logits = rng.normal(size=(n, c)).astype(np.float32)
                hit = rng.random(n) < acc
                logits[np.arange(n), label] += np.where(hit, 8.0, -8.0).astype(np.float32)
                path = Path(tmp) / f"{side}{s}.parquet"
                write_predictions(path, sample_id=np.arange(n), label=label, logits=logits,
                                  attrs={}, meta={"split": "test"})
                paths[side].append(path)
        start = time.perf_counter()
        runs = {k: [read_predictions(p, with_logits=False, with_features=False).sorted_by_id()
                    for p in v] for k, v in paths.items()}
        t_read = time.perf_counter() - start
        res, t_cmp = timed(compare_classes, runs["a"][0].label, [r.pred for r in runs["a"]],
                           [r.pred for r in runs["b"]], c)
        size = sum(p.stat().st_size for v in paths.values() for p in v) / 1e6
        args = [a for side in ("a", "b") for p in paths[side] for a in (f"-{side}", str(p))]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kdfair_cli", "compare-classes", *args, "--json",
                        "-o", str(Path(tmp) / "classes.parquet")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       cwd=Path(__file__).resolve().parents[1])
        t_cli = time.perf_counter() - start
    print(f"compare-classes, {c} classes, {n:,} samples, {seeds} + {seeds} seeds "
          f"({size:.0f} MB of Parquet with logits):")
    print(f"  read {t_read:.2f} s + tests/disagreement {t_cmp:.2f} s = {t_read + t_cmp:.2f} s "
          f"(target < 2 s); {res.n_significant} significant")
    print(f"  whole command in a fresh process (start-up, imports, tables, JSON, -o): {t_cli:.2f} s")


def bench_pairs(n: int, d: int, k: int) -> None:
    rng = np.random.default_rng(2)
    x = rng.random((n, d), dtype=np.float32)
    (a, b), t_knn = timed(knn_pairs, x, k)
    dist, t_d = timed(pair_distances, x, a, b, "rms")
    print(f"pairs, exact kNN, {n:,} samples x {d} features, k={k}:")
    print(f"  search {t_knn:.1f} s + distances {t_d:.2f} s = {t_knn + t_d:.1f} s (target < 30 s); "
          f"{a.size:,} unique pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--fairlearn-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    bench_group(args.rows, args.fairlearn_rows)
    bench_compare(1000, 50_000, 5)
    bench_pairs(50_000, 512, 5)


if __name__ == "__main__":
    main()
