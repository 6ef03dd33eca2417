"""Benchmark of the noise floor (metrics.null) and the paired test, run by hand.

    python benchmarks/bench_null.py [--rows 10000000] [--fairlearn-rows 1000000] [--draws 1000]

Group fairness on 10M rows, 10 groups and 10 classes (one-vs-rest, averaged over classes, as
kdfair does), timed in one process:
  plain : group_fairness on arrays (the --null 0 metric);
  null  : group_fairness + null_draws with --draws draws (the --null 1000 metric);
  file  : both again with the predictions file read first (read_predictions + encode_groups),
    which is what the group-fairness command does for --null 0 and --null 1000;
  fairlearn: demographic_parity_difference + equalized_odds_difference per class (one-vs-rest,
    all 10 classes), with no null at all, on --fairlearn-rows rows and scaled linearly in rows
    when that is below --rows.
Also the paired comparison (1000 swaps + 1000 bootstrap replicates) of two prediction sets.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdfair_cli.io.predictions import read_predictions  # noqa: E402
from kdfair_cli.metrics.group import encode_groups, group_fairness  # noqa: E402
from kdfair_cli.metrics.null import null_draws, null_test  # noqa: E402
from kdfair_cli.metrics.paired import paired_group  # noqa: E402


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - start


def fairlearn_ovr(label, pred, group, c: int) -> tuple[float, float]:
    """fairlearn's DPD and EOD per class (Y = 1[y = c], Yhat = 1[yhat = c]), averaged."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    dpd, eod = [], []
    for k in range(c):
        y, p = (label == k).astype(int), (pred == k).astype(int)
        dpd.append(demographic_parity_difference(y, p, sensitive_features=group))
        eod.append(equalized_odds_difference(y, p, sensitive_features=group))
    return float(np.mean(dpd)), float(np.mean(eod))


def command_path(path: Path, n_draws: int) -> float:
    """What `group-fairness FILE --attribute group --null n_draws` computes, timed."""
    start = time.perf_counter()
    p = read_predictions(path, with_logits=False)
    codes, groups = encode_groups(p.attrs["group"])
    res = group_fairness(p.label, p.pred, codes, groups, p.num_classes)
    assert res.classes.size == 10 and len(groups) == 10
    if n_draws:
        null_test(res.eod, null_draws(res.cells, res.classes, n_draws=n_draws).eod)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--fairlearn-rows", type=int, default=100_000)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    n, c, g = args.rows, 10, 10
    rng = np.random.default_rng(0)
    group = rng.integers(0, g, n)
    label = rng.integers(0, c, n)
    pred = np.where(rng.random(n) < 0.9, label, rng.integers(0, c, n))
    other = np.where(rng.random(n) < 0.9, label, rng.integers(0, c, n))
    names = [str(i) for i in range(g)]

    res, t_plain = timed(group_fairness, label, pred, group, names, c)
    draws, t_draws = timed(null_draws, res.cells, res.classes, n_draws=args.draws)
    t_null = t_plain + t_draws
    test = null_test(res.eod, draws.eod)
    paired, t_paired = timed(paired_group, label, pred, other, group, g, c, res.classes,
                             n_perm=args.draws, n_boot=args.draws)
    m = min(n, args.fairlearn_rows)
    (dpd_fl, eod_fl), t_fl = timed(fairlearn_ovr, label[:m], pred[:m], group[:m], c)
    t_fl_scaled = t_fl * n / m
    sub = group_fairness(label[:m], pred[:m], group[:m], names, c)
    same = np.isclose(sub.dpd, dpd_fl) and np.isclose(sub.eod, eod_fl)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "preds.parquet"
        pq.write_table(pa.table({"sample_id": np.arange(n), "label": label.astype(np.int32),
                                 "pred": pred.astype(np.int32), "attr_group": group.astype(np.int32)}),
                       path)
        command_path(path, 0)  # warm the page cache
        t_file0 = min(command_path(path, 0) for _ in range(3))
        t_file1 = min(command_path(path, args.draws) for _ in range(3))

    print(f"group fairness, {n:,} rows, {g} groups, {c} classes (one-vs-rest average):")
    print(f"  plain (null 0)      : {t_plain:.3f} s   DPD {res.dpd:.5f}  EOD {res.eod:.5f}")
    print(f"  with {args.draws} null draws: {t_null:.3f} s   (draws alone {t_draws:.3f} s)   "
          f"EOD null mean {test.null_mean:.5f}, q95 {test.null_q95:.5f}, p {test.p:.3f}")
    scaled = "" if m == n else f" on {m:,} rows, scaled x{n / m:.0f} to {t_fl_scaled:.1f} s"
    print(f"  fairlearn, no null  : {t_fl:.2f} s{scaled}; same values on its rows: "
          f"{'yes' if same else 'NO'} (DPD {sub.dpd:.8f} vs {dpd_fl:.8f}, EOD {sub.eod:.8f} vs {eod_fl:.8f})")
    print(f"  paired A vs B, {args.draws} swaps + {args.draws} bootstrap: {t_paired:.3f} s "
          f"(ΔEOD {paired['eod'].delta:+.5f}, p {paired['eod'].p:.3f})")
    print(f"  file read + metric        : null 0 {t_file0:.3f} s, null {args.draws} {t_file1:.3f} s")
    print(f"  ratio null / plain, arrays : {t_null / t_plain:.2f}x")
    print(f"  ratio null / plain, file   : {t_file1 / t_file0:.2f}x (target well under 2x)")
    print(f"  ratio fairlearn / null     : {t_fl_scaled / t_null:.0f}x on arrays, "
          f"{t_fl_scaled / t_file1:.0f}x with the file read (target >= 100x)")
    print(f"  ratio paired / plain       : {t_paired / t_plain:.2f}x")


if __name__ == "__main__":
    main()
