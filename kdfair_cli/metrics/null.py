"""Noise floor of DPD and EOD: their distribution when the model treats the groups alike.

DPD and EOD are a max minus a min over noisy group rates, so they are positive even for a
model whose outputs ignore the group, and more so for small groups and low accuracy. The floor
is their distribution under a null hypothesis, sampled by permuting the attribute:

- stratify="label" (default): Ŷ ⊥ A | Y. The attribute is permuted within each true-label
  stratum, which keeps the test split's design (how many samples of each label each group has)
  and asks only whether the model's outputs treat the groups differently. Use it for EOD and
  for DPD whenever the groups' base rates differ by design, which DPD would otherwise report.
- stratify="none": Ŷ ⊥ A. The attribute is permuted over all rows; also the labels move
  between groups. Use it for DPD when a difference in base rates should count as disparity
  (DPD in its own sense: equal selection rates whatever the labels).

Permuting the attribute within a stratum leaves the stratum's group sizes and its column
counts (predicted class, or (label, predicted class) cells) unchanged, so its table of group by
column is a random contingency table with fixed margins: the first group's row is a
multivariate hypergeometric draw from the column counts, the next group's row a draw from what
is left, and so on. The rows themselves are never touched, so a draw costs
O(groups x columns), not O(N). Each multivariate hypergeometric draw is built from univariate
hypergeometric draws (one per column), vectorised over draws and strata.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from kdfair_cli.metrics.group import CellCounts, class_mean, class_spreads, tables_from_cells

STRATIFY = ("label", "none")


@dataclass
class NullDraws:
    """Values of the metrics under the null, one per draw (fractions; NaN where undefined)."""

    dpd: np.ndarray  # [n] averaged over `classes`
    eod: np.ndarray  # [n]
    dpd_per_class: np.ndarray  # [n, C]
    eod_per_class: np.ndarray  # [n, C]
    stratify: str
    seed: int


@dataclass
class NullTest:
    """An observed value against its null draws. Floats, or arrays for per-class inputs."""

    observed: float | np.ndarray
    null_mean: float | np.ndarray  # the noise floor: expected value with no disparity
    null_q95: float | np.ndarray  # 95th percentile of the null
    p: float | np.ndarray  # one-sided: (1 + #(null >= observed)) / (1 + #valid draws)
    excess: float | np.ndarray  # observed - null_mean
    n_draws: int | np.ndarray  # draws used (NaN draws dropped)


def random_tables(group_sizes: np.ndarray, column_counts: np.ndarray, n_draws: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Random contingency tables with fixed margins, independently per stratum.

    group_sizes [S, G] and column_counts [S, K] (row sums of both equal per stratum) ->
    tables [n_draws, S, G, K] whose group sums are group_sizes and column sums column_counts,
    distributed as under a uniform random permutation of the group labels within each stratum.
    """
    group_sizes = np.asarray(group_sizes, dtype=np.int64)
    remaining = np.broadcast_to(np.asarray(column_counts, dtype=np.int64),
                                (n_draws, *column_counts.shape)).copy()  # [n, S, K]
    s, g = group_sizes.shape
    k = column_counts.shape[1]
    out = np.zeros((n_draws, s, g, k), dtype=np.int64)
    for gi in range(g - 1):
        want = np.broadcast_to(group_sizes[:, gi], (n_draws, s)).copy()  # still to place [n, S]
        pool = remaining.sum(axis=-1)  # [n, S]
        for ki in range(k - 1):
            good = remaining[..., ki]
            pool -= good
            x = rng.hypergeometric(good, pool, want)
            out[:, :, gi, ki] = x
            want -= x
        out[:, :, gi, k - 1] = want
        remaining -= out[:, :, gi]
    out[:, :, g - 1] = remaining
    return out


def null_draws(cells: CellCounts, classes: np.ndarray, *, n_draws: int = 1000, seed: int = 0,
               eod_agg: str = "worst", stratify: str = "label",
               max_batch_cells: int = 20_000_000) -> NullDraws:
    """DPD and EOD under n_draws permutations of the attribute (see the module docstring).

    `cells` and `classes` are GroupFairness.cells and .classes (or group.cell_counts(...) and
    [positive class] for a binary task, all classes otherwise); every draw permutes the
    attribute once for all classes. Seeded: the same inputs, seed and max_batch_cells give the
    same draws.
    """
    if stratify not in STRATIFY:
        raise ValueError(f"unknown stratification {stratify!r}; expected one of {STRATIFY}")
    if n_draws < 1:
        raise ValueError(f"the number of null draws must be >= 1, got {n_draws}")
    rng = np.random.default_rng(seed)
    g = cells.n_groups
    # Columns: the occupied (label, pred) pairs, with their counts per group [G, K].
    span = cells.num_classes + 1  # pred + 1: an unparsed answer (-1) is its own column
    lp = cells.label * span + cells.pred + 1
    columns, col_of = np.unique(lp, return_inverse=True)
    n_cols = columns.size
    counts = np.zeros((g, n_cols), dtype=np.int64)
    np.add.at(counts, (cells.group, col_of), cells.count)
    col_label = columns // span
    # Strata [S]; each stratum's columns get a slot 0..width-1 (padding: count 0).
    stratum = col_label if stratify == "label" else np.zeros(n_cols, dtype=np.int64)
    strata, s_of = np.unique(stratum, return_inverse=True)
    first = np.searchsorted(stratum, strata)  # columns are sorted by label, hence by stratum
    slot = np.arange(n_cols) - first[s_of]
    width = int(slot.max()) + 1 if n_cols else 1
    column_counts = np.zeros((strata.size, width), dtype=np.int64)
    column_counts[s_of, slot] = counts.sum(axis=0)
    group_sizes = np.zeros((strata.size, g), dtype=np.int64)
    np.add.at(group_sizes, s_of, counts.T)
    # The draws' tables as weights of (group, label, pred) cells: column k of group gi.
    flat = CellCounts(g, cells.num_classes, np.repeat(np.arange(g), n_cols),
                      np.tile(col_label, g), np.tile(columns % span - 1, g),
                      counts.ravel())
    per_draw = max(strata.size * g * width, g * n_cols, 1)
    batch = max(1, min(n_draws, max_batch_cells // per_draw))
    dpd_c, eod_c = [], []
    for start in range(0, n_draws, batch):
        b = min(batch, n_draws - start)
        tables = random_tables(group_sizes, column_counts, b, rng)  # [b, S, G, W]
        w = tables[:, s_of, :, slot]  # [K, b, G] (advanced indices go first)
        w = np.moveaxis(w, 0, -1).reshape(b, g * n_cols).astype(np.float64)
        spreads = class_spreads(*tables_from_cells(flat, w), eod_agg)
        dpd_c.append(spreads["dpd"])
        eod_c.append(spreads["eod"])
    dpd_pc, eod_pc = np.concatenate(dpd_c), np.concatenate(eod_c)
    mean = class_mean({"dpd": dpd_pc, "eod": eod_pc}, np.asarray(classes))
    return NullDraws(mean["dpd"], mean["eod"], dpd_pc, eod_pc, stratify, seed)


def null_test(observed: float | np.ndarray, draws: np.ndarray, *, rtol: float = 1e-9) -> NullTest:
    """Compare an observed DPD/EOD with its null draws (axis 0 of `draws`).

    p = (1 + #(draws >= observed)) / (1 + n): the one-sided permutation p-value that counts the
    observed table as one of the draws, so it is never 0 and is exact (valid) for any n. A draw
    counts as >= when within rtol of the observed value, so that the same table computed along
    another path (floating-point order) ties rather than falls below. NaN draws (a rate
    undefined in that draw) are dropped from the mean, quantile, count and n; an observed NaN
    gives NaN.
    """
    draws = np.asarray(draws, dtype=np.float64)
    obs = np.asarray(observed, dtype=np.float64)
    valid = ~np.isnan(draws)
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore"):
        ge = (draws >= obs - rtol * np.maximum(np.abs(obs), 1e-12)) & valid
        p = np.where(np.isnan(obs) | (n == 0), np.nan, (1 + ge.sum(axis=0)) / (1 + n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN by design
        mean = np.nanmean(draws, axis=0)
        q95 = np.nanquantile(draws, 0.95, axis=0)
    excess = obs - mean
    if obs.ndim == 0:
        return NullTest(float(obs), float(mean), float(q95), float(p), float(excess), int(n))
    return NullTest(obs, mean, q95, p, excess, n)
