"""Benchmark of the excess-adjusted model comparison against the plain one, run by hand.

    python benchmarks/bench_excess.py [--rows 10000000] [--draws 1000] [--repeats 2]

Two prediction sets of the same --rows samples (10 groups, 10 classes, 90% and 95% accuracy),
timed in one process (best of --repeats):
  plain   : paired_group(excess=False): ΔDPD and ΔEOD with --draws swaps and --draws bootstrap
            replicates, what `group-fairness A --versus B` computed before the excess existed;
  adjusted: the same plus both models' floors and the paired bootstrap of Δexcess, which
            recomputes both floors in every replicate (paired_group(excess=True) and one
            floor_from_cells per model, as api.group_fairness does).
Prints both times and their ratio (target: under 3x).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdfair_cli.metrics.excess import floor_from_cells  # noqa: E402
from kdfair_cli.metrics.group import group_fairness  # noqa: E402
from kdfair_cli.metrics.paired import paired_group  # noqa: E402


def best(repeats: int, func, *args, **kwargs):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = func(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return out, min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    n, c, g = args.rows, 10, 10
    rng = np.random.default_rng(0)
    group, label = rng.integers(0, g, n), rng.integers(0, c, n)
    pred_a = np.where(rng.random(n) < 0.90, label, (label + rng.integers(1, c, n)) % c)
    pred_b = np.where(rng.random(n) < 0.95, label, (label + rng.integers(1, c, n)) % c)
    classes = np.arange(c)
    names = [str(i) for i in range(g)]

    def plain():
        return paired_group(label, pred_a, pred_b, group, g, c, classes, n_perm=args.draws,
                            n_boot=args.draws, excess=False)

    def adjusted():
        floors = [floor_from_cells(group_fairness(label, p, group, names, c).cells, classes)
                  for p in (pred_a, pred_b)]
        return paired_group(label, pred_a, pred_b, group, g, c, classes, n_perm=args.draws,
                            n_boot=args.draws, excess=True), floors

    res_plain, t_plain = best(args.repeats, plain)
    (res_adj, floors), t_adj = best(args.repeats, adjusted)
    print(f"--versus, {n:,} rows, {g} groups, {c} classes, {args.draws} swaps + {args.draws} bootstrap "
          f"replicates (best of {args.repeats}):")
    print(f"  plain (ΔDPD, ΔEOD)          : {t_plain:.3f} s   ΔEOD {res_plain['eod'].delta:+.5f} "
          f"(p {res_plain['eod'].p:.3f})")
    print(f"  adjusted (+ floors, Δexcess): {t_adj:.3f} s   Δexcess EOD {res_adj['excess_eod'].delta:+.5f} "
          f"(p {res_adj['excess_eod'].p:.3f}); floors EOD A {floors[0]['eod'][0]:.5f}, "
          f"B {floors[1]['eod'][0]:.5f}")
    print(f"  ratio adjusted / plain      : {t_adj / t_plain:.2f}x (target < 3x)")


if __name__ == "__main__":
    main()
