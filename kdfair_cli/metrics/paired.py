"""Is model A fairer than model B beyond chance? Paired tests, intervals and seed combination.

Group fairness (DPD, EOD), one file a side on the same samples: the statistic is
Δ = metric(A) - metric(B). Its null (the two models are exchangeable on every sample) swaps
the two models' predictions on each sample with probability 1/2. A swap only matters where
the predictions differ, and only the number of swapped samples per (group, label, pred A,
pred B) cell changes the count tables, so each draw is one Binomial(count, 1/2) per discordant
cell; the cost does not grow with N. The bootstrap interval resamples samples (rows of both
files together), which is one multinomial draw over the same cells.

Several seeds a side:
- welch_seeds: Welch's t-test over the per-seed values. Needs >= 2 seeds a side; the seeds need
  not match. It asks whether the training runs differ on average and counts seed variation as
  noise, but ignores the test split's sampling noise shared by both sides (so with 2-3 seeds it
  has little power).
- combine_seeds: where seed i of A and seed i of B were scored on the same samples, the
  statistic is the mean over seeds of the per-seed Δ; its null is the mean over seeds of
  independent per-seed permutation draws (seed i's draws made with its own RNG seed), and its
  interval debiased_ci of the mean of per-seed bootstrap draws. It tests the paired
  null on every seed at once (exchangeable predictions per sample), not the spread of training
  runs.

Individual fairness: I(f) is the mean of per-pair ratios over a fixed pair set. mean_interval
bootstraps pairs for one model (pairs share samples, so it is somewhat too narrow, see
docs/metrics.md); paired_individual compares two models on the same pair set by swapping the
two models' outputs per sample (every pair the sample is in at once), with a bootstrap
clustered by sample, so both keep their level when pairs overlap.

Excess disparity (metrics.excess): paired_group also compares the two models' DPD and EOD
minus their own floors, by a paired bootstrap that recomputes both floors per replicate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from kdfair_cli.metrics.class_bias import welch_per_class
from kdfair_cli.metrics.excess import floor_from_cells
from kdfair_cli.metrics.group import (CellCounts, occupied, percentile_ci, summaries,
                                      tables_from_cells)

GROUP_METRICS = ("dpd", "eod")


@dataclass
class PairedComparison:
    """A minus B with its two-sided permutation p-value and bootstrap interval (fractions)."""

    a: float  # the metric of A (mean over seeds when combined)
    b: float
    delta: float  # a - b
    p: float  # two-sided: (1 + #(|null| >= |delta|)) / (1 + #valid null draws)
    ci: tuple[float, float]  # bias-shifted bootstrap interval (debiased_ci)
    null: np.ndarray  # [n_perm] delta under the null (kept so seeds can be combined)
    boot: np.ndarray  # [n_boot] bootstrap replicates of delta
    confidence: float


@dataclass
class WelchTest:
    """Welch's t-test of per-seed values of A against those of B."""

    delta: float  # mean(A) - mean(B)
    t: float
    p: float
    n_a: int
    n_b: int


@dataclass
class Interval:
    """A mean with its bootstrap percentile interval."""

    estimate: float
    ci: tuple[float, float]
    boot: np.ndarray
    confidence: float


def two_sided_p(observed: float, null: np.ndarray, *, rtol: float = 1e-9) -> float:
    """(1 + #(|null| >= |observed|)) / (1 + n) over the non-NaN draws; NaN if none or observed NaN."""
    null = np.asarray(null, dtype=np.float64)
    null = null[~np.isnan(null)]
    if np.isnan(observed) or null.size == 0:
        return float("nan")
    bar = abs(observed) - rtol * max(abs(observed), 1e-12)
    return float((1 + np.count_nonzero(np.abs(null) >= bar)) / (1 + null.size))


def debiased_ci(estimate: float, boot: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the replicates shifted by the bootstrap's bias (mean - estimate).

    Resampling inflates a max - min, and more for the noisier model, so the replicates of a
    difference of DPDs or EODs are shifted away from the estimate and a plain percentile
    interval can exclude the estimate itself. Subtracting the bootstrap estimate of that bias
    keeps the replicates' spread and centres them on the estimate; for a mean (individual
    fairness) the shift is ~0 and this is the percentile interval.
    """
    lo, hi = percentile_ci(boot, confidence)
    if np.all(np.isnan(boot)):
        return lo, hi
    bias = float(np.nanmean(boot)) - estimate
    return lo - bias, hi - bias


def centred(boot: np.ndarray) -> np.ndarray:
    """Bootstrap replicates shifted to mean 0: the null distribution of a bootstrap test (a
    difference whose sampling spread the replicates estimate, its centre moved to H0's 0)."""
    if np.all(np.isnan(boot)):
        return boot
    return boot - np.nanmean(boot)


def _comparison(a: float, b: float, null: np.ndarray, boot: np.ndarray,
                confidence: float) -> PairedComparison:
    delta = a - b
    return PairedComparison(float(a), float(b), float(delta), two_sided_p(delta, null),
                            debiased_ci(delta, boot, confidence), null, boot, confidence)


def _paired_cells(label, pred_a, pred_b, group, n_groups: int, c: int):
    """Occupied (group, label, pred A, pred B) cells: (counts, g, y, pa, pb)."""
    cells, counts = occupied(((group.astype(np.int64) * c + label) * c + pred_a) * c + pred_b,
                             n_groups * c ** 3)
    rest, pb = np.divmod(cells, c)
    rest, pa = np.divmod(rest, c)
    g, y = np.divmod(rest, c)
    return counts, g, y, pa, pb


def paired_group(label: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, group: np.ndarray,
                 n_groups: int, num_classes: int, classes: np.ndarray, *, n_perm: int = 1000,
                 n_boot: int = 1000, seed: int = 0, eod_agg: str = "worst",
                 confidence: float = 0.95, max_batch_cells: int = 20_000_000,
                 excess: bool = True, stratify: str = "label") -> dict[str, PairedComparison]:
    """ΔDPD and ΔEOD (A minus B) of two prediction sets on the same samples (rows aligned).

    Returns {"dpd": ..., "eod": ...} and, with `excess`, {"excess_dpd": ..., "excess_eod": ...}:
    the difference of the two models' excess (metric minus its floor, metrics.excess; the DPD
    floor stratified as `stratify`). Its test is the paired bootstrap: every replicate
    recomputes both metrics and both floors from the same resampled rows, the p-value is
    two-sided against the replicates centred on 0 (`null` holds them), the interval is
    debiased_ci. `classes` as in GroupFairness.classes. Seeded.
    """
    if n_perm < 1 or n_boot < 1:
        raise ValueError(f"n_perm and n_boot must be >= 1, got {n_perm} and {n_boot}")
    if not label.shape == pred_a.shape == pred_b.shape == group.shape:
        raise ValueError(f"label, pred_a, pred_b and group differ in length: {label.size}, "
                         f"{pred_a.size}, {pred_b.size}, {group.size}")
    rng = np.random.default_rng(seed)
    counts, g, y, pa, pb = _paired_cells(label, pred_a, pred_b, group, n_groups, num_classes)
    # Each joint cell twice: first as it is, then with the two predictions exchanged, so that
    # weights (kept, swapped) give A's tables with `a_view` and B's with `b_view`.
    a_view = CellCounts(n_groups, num_classes, np.tile(g, 2), np.tile(y, 2),
                        np.concatenate([pa, pb]), np.tile(counts, 2))
    b_view = CellCounts(n_groups, num_classes, a_view.group, a_view.label,
                        np.concatenate([pb, pa]), a_view.count)

    def deltas(kept: np.ndarray, swapped: np.ndarray, floors: bool = False) -> dict[str, np.ndarray]:
        w = np.concatenate([kept, swapped], axis=1)
        ma = summaries(*tables_from_cells(a_view, w), classes, eod_agg)
        mb = summaries(*tables_from_cells(b_view, w), classes, eod_agg)
        out = {m: np.stack([ma[m], mb[m]]) for m in GROUP_METRICS}
        if floors:
            fa, fb = (floor_from_cells(view, classes, w, eod_agg=eod_agg, stratify=stratify)
                      for view in (a_view, b_view))
            out.update({f"excess_{m}": np.stack([ma[m] - fa[m], mb[m] - fb[m]]) for m in GROUP_METRICS})
        return out

    none = np.zeros((1, counts.size))
    observed = deltas(counts[None, :].astype(np.float64), none, excess)
    disc = pa != pb
    batch = max(1, max_batch_cells // max(4 * counts.size, 1))
    null: dict[str, list[np.ndarray]] = {m: [] for m in GROUP_METRICS}
    for start in range(0, n_perm, batch):
        b = min(batch, n_perm - start)
        s = np.zeros((b, counts.size))
        s[:, disc] = rng.binomial(counts[disc], 0.5, size=(b, int(disc.sum())))
        for m, v in deltas(counts - s, s).items():
            null[m].append(v[0] - v[1])
    boot: dict[str, list[np.ndarray]] = {m: [] for m in observed}
    n = int(counts.sum())
    for start in range(0, n_boot, batch):
        b = min(batch, n_boot - start)
        w = rng.multinomial(n, counts / n, size=b).astype(np.float64)
        for m, v in deltas(w, np.zeros_like(w), excess).items():
            boot[m].append(v[0] - v[1])
    out = {m: _comparison(float(observed[m][0, 0]), float(observed[m][1, 0]),
                          np.concatenate(null[m]), np.concatenate(boot[m]), confidence)
           for m in GROUP_METRICS}
    for m in [k for k in observed if k not in out]:  # the excess comparisons: bootstrap test
        reps = np.concatenate(boot[m])
        out[m] = _comparison(float(observed[m][0, 0]), float(observed[m][1, 0]),
                             centred(reps), reps, confidence)
    return out


def combine_seeds(per_seed: list[PairedComparison]) -> PairedComparison:
    """One paired comparison from several matched seeds (seed i of A with seed i of B).

    Statistic: the mean of the per-seed deltas. Null: the mean over seeds of the per-seed null
    draws, which is a draw of the mean under the joint null when each seed's draws came from
    its own RNG seed (pass seed + i). Interval: debiased_ci of the mean bootstrap replicates. All
    seeds must have the same numbers of null and bootstrap draws.
    """
    if not per_seed:
        raise ValueError("no per-seed comparisons to combine")
    for what in ("null", "boot"):
        sizes = {getattr(r, what).size for r in per_seed}
        if len(sizes) > 1:
            raise ValueError(f"per-seed comparisons have different numbers of {what} draws: "
                             f"{sorted(sizes)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        null = np.mean(np.stack([r.null for r in per_seed]), axis=0)
        boot = np.mean(np.stack([r.boot for r in per_seed]), axis=0)
    return _comparison(float(np.mean([r.a for r in per_seed])), float(np.mean([r.b for r in per_seed])),
                       null, boot, per_seed[0].confidence)


def welch_seeds(values_a: np.ndarray, values_b: np.ndarray) -> WelchTest:
    """Welch's t-test (unequal variances) of per-seed values of A against those of B.

    Needs >= 2 values a side. Both sides constant: t = 0, p = 1 when equal, else t = +-inf,
    p = 0 (the limit of the test, as compare-classes does).
    """
    xa = np.asarray(values_a, dtype=np.float64).reshape(-1, 1)
    xb = np.asarray(values_b, dtype=np.float64).reshape(-1, 1)
    if xa.shape[0] < 2 or xb.shape[0] < 2:
        raise ValueError(f"Welch's test needs >= 2 seeds a side, got {xa.shape[0]} and {xb.shape[0]}")
    t, p, _ = welch_per_class(xa, xb)
    return WelchTest(float(xa.mean() - xb.mean()), float(t[0]), float(p[0]), xa.shape[0], xb.shape[0])


def _resampled_means(values: np.ndarray, n_boot: int, rng: np.random.Generator,
                     max_batch_cells: int = 20_000_000) -> np.ndarray:
    """n_boot means of `values` resampled with replacement, in batches."""
    n = values.size
    batch = max(1, min(n_boot, max_batch_cells // max(n, 1)))
    out = [values[rng.integers(0, n, size=(min(batch, n_boot - s), n))].mean(axis=1)
           for s in range(0, n_boot, batch)]
    return np.concatenate(out)


def mean_interval(values: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                  confidence: float = 0.95) -> Interval:
    """Mean of per-pair values (e.g. individual.pair_ratios) with a bootstrap-over-pairs interval."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        nan = float("nan")
        return Interval(nan, (nan, nan), np.full(n_boot, np.nan), confidence)
    boot = _resampled_means(values, n_boot, np.random.default_rng(seed))
    return Interval(float(values.mean()), percentile_ci(boot, confidence), boot, confidence)


def paired_individual(values_a: np.ndarray, values_b: np.ndarray, *, mixed: np.ndarray | None = None,
                      pair_samples: tuple[np.ndarray, np.ndarray] | None = None, n_perm: int = 1000,
                      n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                      max_batch_cells: int = 20_000_000) -> PairedComparison:
    """Mean per-pair value of A minus that of B on the same pair set (arrays aligned by pair).

    With `pair_samples` (the sample index, 0..S-1, of each pair's two ends) and `mixed` (per
    pair, the value with end a's output from B and end b's from A, minus the value with a's
    from A and b's from B), the test keeps its level when pairs share samples:
    - null: the two models are exchangeable on each SAMPLE, so each sample independently keeps
      or swaps its two outputs in every pair it belongs to. A pair's contribution to the mean
      difference is then d (neither swapped), -d (both), +-mixed (one end), which is linear
      in the samples' signs s = +-1: delta = (s @ w) / P with w = bincount(a, (d - mixed) / 2)
      + bincount(b, (d + mixed) / 2). One matrix product per batch of draws.
    - interval: bootstrap clustered by sample, linearised: a replicate reweights each sample
      by its multinomial count k and moves the mean by sum_i (k_i - 1) h_i, where h_i sums
      the centred differences of the pairs sample i belongs to, divided by P. Counting every
      pair at both of its ends makes this slightly conservative (docs/metrics.md).
    Without them: each pair's difference flips its sign with probability 1/2 and the interval
    bootstraps pairs, which is valid only when no two pairs share a sample.
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"per-pair values differ in length: {a.size} and {b.size}")
    if (mixed is None) != (pair_samples is None):
        raise ValueError("mixed and pair_samples go together")
    if a.size == 0:
        nan = float("nan")
        empty = np.full(n_perm, np.nan)
        return PairedComparison(nan, nan, nan, nan, (nan, nan), empty, np.full(n_boot, np.nan), confidence)
    rng = np.random.default_rng(seed)
    d = a - b
    if pair_samples is None:
        moving = d[d != 0]
        batch = max(1, min(n_perm, max_batch_cells // max(moving.size, 1)))
        null = np.concatenate([
            (np.where(rng.random((min(batch, n_perm - s), moving.size)) < 0.5, -1.0, 1.0) @ moving) / d.size
            for s in range(0, n_perm, batch)])
        boot = _resampled_means(d, n_boot, rng, max_batch_cells)
        return _comparison(float(a.mean()), float(b.mean()), null, boot, confidence)
    ia, ib = (np.asarray(x, dtype=np.int64) for x in pair_samples)
    m = np.asarray(mixed, dtype=np.float64)
    if not ia.shape == ib.shape == m.shape == d.shape:
        raise ValueError(f"pair_samples and mixed must have one entry per pair ({d.size})")
    n_s = int(max(ia.max(), ib.max())) + 1
    w = np.bincount(ia, (d - m) / 2, n_s) + np.bincount(ib, (d + m) / 2, n_s)
    moving = w[w != 0]
    batch = max(1, min(n_perm, max_batch_cells // max(moving.size, 1)))
    null = np.concatenate([
        (np.where(rng.random((min(batch, n_perm - s), moving.size)) < 0.5, -1.0, 1.0) @ moving) / d.size
        for s in range(0, n_perm, batch)])
    centred_d = d - d.mean()
    present = np.flatnonzero(np.bincount(ia, minlength=n_s) + np.bincount(ib, minlength=n_s))
    h = (np.bincount(ia, centred_d, n_s) + np.bincount(ib, centred_d, n_s))[present] / d.size
    batch = max(1, min(n_boot, max_batch_cells // max(present.size, 1)))
    boot = float(d.mean()) + np.concatenate([
        (rng.multinomial(present.size, np.full(present.size, 1 / present.size),
                         size=min(batch, n_boot - s)) - 1.0) @ h
        for s in range(0, n_boot, batch)])
    return _comparison(float(a.mean()), float(b.mean()), null, boot, confidence)
