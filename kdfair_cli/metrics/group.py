"""Group fairness: demographic parity and equalised odds differences over any number of groups.

Everything is computed from three count tables per (group, class) built with np.bincount in one
pass: predictions of class c (selections), labels of class c (positives) and correct predictions
of class c (true positives). One-vs-rest rates for every class follow without another pass, so a
binary task (class = positive class) and the paper's multi-class average (Algorithm 1: per class,
then the mean over classes) share one code path. Rates are array operations over leading axes,
which is what makes the bootstrap a handful of vectorised calls.

Undefined rates (a group with no samples, no positives or no negatives) are NaN, never 0. A
difference (max - min over groups) uses the groups where the rate is defined and is NaN when
fewer than two groups qualify; EOD is NaN when its TPR or FPR difference is. The class average
skips NaN classes (nanmean) and says how many it skipped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

EOD_AGG = ("worst", "mean")


def encode_groups(values: np.ndarray, names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Attribute values -> (codes 0..G-1, group names).

    Integer codes with value names from the file's metadata keep the metadata's numbering, so
    a value with no samples still appears (as an empty group); otherwise groups are the sorted
    distinct values.
    """
    values = np.asarray(values)
    if names is not None and values.dtype.kind in "iu":
        if values.size and (values.min() < 0 or values.max() >= len(names)):
            raise ValueError(f"attribute codes must lie in [0, {len(names)}) to match the "
                             f"metadata's value names, found {values.min()}..{values.max()}")
        return values.astype(np.int64, copy=False), list(names)
    if values.dtype.kind in "iu" and values.size and 0 <= values.min() and values.max() < 1 << 20:
        present = np.flatnonzero(np.bincount(values))  # O(N), no sort, for small int codes
        lookup = np.zeros(present[-1] + 1, dtype=np.int64)
        lookup[present] = np.arange(present.size)
        return lookup[values], [str(v) for v in present]
    uniq, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64).ravel(), [str(u) for u in uniq]


@dataclass(frozen=True)
class CellCounts:
    """How many rows fall in each occupied (group, label, pred) cell: all a group metric, its
    bootstrap and its null need, so the rows are read once (one np.bincount pass)."""

    n_groups: int
    num_classes: int
    group: np.ndarray  # [K] per occupied cell
    label: np.ndarray  # [K]
    pred: np.ndarray  # [K]
    count: np.ndarray  # [K] int64, > 0


def occupied(code: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct codes, their counts) of integer codes in [0, span): one bincount pass when the
    span is small enough for a dense count array, else a sort."""
    if span <= 1 << 26:
        counts = np.bincount(code, minlength=span)
        cells = np.flatnonzero(counts)
        return cells, counts[cells]
    return np.unique(code, return_counts=True)


def cell_counts(label: np.ndarray, pred: np.ndarray, group: np.ndarray, n_groups: int,
                num_classes: int) -> CellCounts:
    """Count the rows per (group, label, pred) cell in one pass."""
    c = num_classes
    if pred.size and pred.min() < 0:  # unparsed answers (-1): a cell that selects no class
        cells, counts = occupied((group.astype(np.int64) * c + label) * (c + 1) + pred + 1,
                                 n_groups * c * (c + 1))
        cg, rest = np.divmod(cells, c * (c + 1))
        cl, cp = np.divmod(rest, c + 1)
        return CellCounts(n_groups, c, cg, cl, cp - 1, counts.astype(np.int64))
    cells, counts = occupied((group.astype(np.int64) * c + label) * c + pred, n_groups * c * c)
    cg, rest = np.divmod(cells, c * c)
    cl, cp = np.divmod(rest, c)
    return CellCounts(n_groups, c, cg, cl, cp, counts.astype(np.int64))


def tables_from_cells(cells: CellCounts, weights: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(size [..., G], selected, positives, true positives [..., G, C]) from cell counts.

    weights [b, K] replaces the counts by b sets of cell weights (bootstrap replicates, null
    draws) and gives a leading axis b.
    """
    g, c = cells.n_groups, cells.num_classes
    w = cells.count[None, :] if weights is None else weights
    b = w.shape[0]
    offs = (np.arange(b) * (g * c))[:, None]
    at = cells.group * c

    def scatter(index: np.ndarray, ww: np.ndarray) -> np.ndarray:
        return np.bincount((offs + index).ravel(), weights=ww.ravel(),
                           minlength=b * g * c).reshape(b, g, c)

    sel = scatter(at + np.maximum(cells.pred, 0), w * (cells.pred >= 0))
    pos = scatter(at + cells.label, w)
    tp = scatter(at + cells.label, w * (cells.label == cells.pred))
    size = pos.sum(axis=-1)
    if weights is None:
        return tuple(a[0].astype(np.int64) for a in (size, sel, pos, tp))  # type: ignore[return-value]
    return size, sel, pos, tp


def count_tables(label: np.ndarray, pred: np.ndarray, group: np.ndarray, n_groups: int,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts per group and class: (size [G], selected [G,C], positives [G,C], true pos [G,C])."""
    return tables_from_cells(cell_counts(label, pred, group, n_groups, num_classes))


def rates(size: np.ndarray, sel: np.ndarray, pos: np.ndarray, tp: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-vs-rest (selection rate, TPR, FPR) per [..., group, class]; NaN where undefined."""
    size = size[..., None].astype(np.float64)
    neg = size - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        sr = np.where(size > 0, sel / size, np.nan)
        tpr = np.where(pos > 0, tp / pos, np.nan)
        fpr = np.where(neg > 0, (sel - tp) / neg, np.nan)
    return sr, tpr, fpr


def spread(x: np.ndarray) -> np.ndarray:
    """max - min over the group axis (-2) of the defined values; NaN if fewer than 2 defined."""
    ok = ~np.isnan(x)
    hi = np.where(ok, x, -np.inf).max(axis=-2)
    lo = np.where(ok, x, np.inf).min(axis=-2)
    return np.where(ok.sum(axis=-2) >= 2, hi - lo, np.nan)


def eod_from(tpr_diff: np.ndarray, fpr_diff: np.ndarray, agg: str) -> np.ndarray:
    """EOD: 'worst' = max(TPR diff, FPR diff) (paper, fairlearn); 'mean' = their mean."""
    if agg == "worst":
        return np.maximum(tpr_diff, fpr_diff)
    if agg == "mean":
        return (tpr_diff + fpr_diff) / 2
    raise ValueError(f"unknown EOD aggregation {agg!r}; expected one of {EOD_AGG}")


def class_spreads(size, sel, pos, tp, agg: str) -> dict[str, np.ndarray]:
    """Per-class DPD, EOD, TPR and FPR differences [..., C] for leading batch axes."""
    sr, tpr, fpr = rates(size, sel, pos, tp)
    dpd_c, tpr_c, fpr_c = spread(sr), spread(tpr), spread(fpr)
    return {"dpd": dpd_c, "eod": eod_from(tpr_c, fpr_c, agg), "tpr_diff": tpr_c, "fpr_diff": fpr_c}


def class_mean(per_class: dict[str, np.ndarray], classes: np.ndarray) -> dict[str, np.ndarray]:
    """The mean over `classes` of each per-class value (NaN classes skipped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are NaN by design
        return {k: np.nanmean(v[..., classes], axis=-1) for k, v in per_class.items()}


def summaries(size, sel, pos, tp, classes: np.ndarray, agg: str) -> dict[str, np.ndarray]:
    """DPD, EOD, TPR and FPR differences averaged over `classes`, for leading batch axes."""
    return class_mean(class_spreads(size, sel, pos, tp, agg), classes)


@dataclass
class GroupFairness:
    """Group fairness of one prediction set for one attribute (fractions, not percent)."""

    groups: list[str]
    classes: np.ndarray  # the classes averaged over: [positive class] or all
    size: np.ndarray  # [G]
    accuracy: np.ndarray  # [G], NaN for an empty group
    selection_rate: np.ndarray  # [G, C] one-vs-rest
    tpr: np.ndarray  # [G, C]
    fpr: np.ndarray  # [G, C]
    dpd_per_class: np.ndarray  # [C]
    tpr_diff_per_class: np.ndarray
    fpr_diff_per_class: np.ndarray
    eod_per_class: np.ndarray
    dpd: float
    eod: float
    tpr_diff: float
    fpr_diff: float
    eod_agg: str
    warnings: list[str] = field(default_factory=list)
    cells: CellCounts | None = None  # the counts it came from: input of null_draws, bootstrap


def _undefined_warnings(groups: list[str], size, rate, what: str, classes) -> list[str]:
    bad = np.isnan(rate[:, classes])
    if not bad.any():
        return []
    cells = np.argwhere(bad)
    g, c = cells[0]
    where = f"group '{groups[g]}'" + ("" if len(classes) == 1 else f", class {classes[c]}")
    reason = {"selection rate": "no samples", "TPR": "no positives", "FPR": "no negatives"}[what]
    return [f"{what} undefined ({reason}) in {len(cells)} (group, class) cell(s), e.g. {where}; "
            "left out of the max/min"]


def group_fairness(label: np.ndarray, pred: np.ndarray, group: np.ndarray, groups: list[str],
                   num_classes: int, *, positive_class: int | None = 1,
                   eod_agg: str = "worst") -> GroupFairness:
    """DPD and EOD of `pred` across the groups of one attribute.

    Binary tasks (num_classes == 2) use `positive_class`; otherwise (or with positive_class=None)
    the one-vs-rest values are averaged over all classes, as in the paper's Algorithm 1.
    """
    if eod_agg not in EOD_AGG:
        raise ValueError(f"unknown EOD aggregation {eod_agg!r}; expected one of {EOD_AGG}")
    g = len(groups)
    cells = cell_counts(label, pred, group, g, num_classes)
    size, sel, pos, tp = tables_from_cells(cells)
    sr, tpr, fpr = rates(size, sel, pos, tp)
    if num_classes == 2 and positive_class is not None:
        if positive_class not in (0, 1):
            raise ValueError(f"positive class must be 0 or 1 for a binary task, got {positive_class}")
        classes = np.array([positive_class])
    else:
        classes = np.arange(num_classes)
    per_class = class_spreads(size, sel, pos, tp, eod_agg)
    dpd_c, tpr_c, fpr_c, eod_c = (per_class[k] for k in ("dpd", "tpr_diff", "fpr_diff", "eod"))
    summary = class_mean(per_class, classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(size > 0, tp.sum(axis=1) / np.maximum(size, 1), np.nan)
    warns = []
    for what, rate in (("selection rate", sr), ("TPR", tpr), ("FPR", fpr)):
        warns += _undefined_warnings(groups, size, rate, what, classes)
    for what, vals in (("DPD", dpd_c), ("EOD", eod_c)):
        n_nan = int(np.isnan(vals[classes]).sum())
        if n_nan:
            warns.append(f"{what} undefined for {n_nan} of {len(classes)} class(es) (fewer than "
                         "two groups with a defined rate)" + (
                             "; the class average skips them" if len(classes) > 1 else ""))
    return GroupFairness(groups, classes, size, acc, sr, tpr, fpr, dpd_c, tpr_c, fpr_c, eod_c,
                         float(summary["dpd"]), float(summary["eod"]), float(summary["tpr_diff"]),
                         float(summary["fpr_diff"]), eod_agg, warns, cells)


def bootstrap(label: np.ndarray, pred: np.ndarray, group: np.ndarray, n_groups: int,
              num_classes: int, classes: np.ndarray, *, n_boot: int, seed: int = 0,
              eod_agg: str = "worst", max_batch_cells: int = 20_000_000,
              cells: CellCounts | None = None) -> dict[str, np.ndarray]:
    """Bootstrap replicates of dpd, eod, tpr_diff, fpr_diff (arrays of length n_boot).

    Resampling N rows with replacement only changes how many rows fall in each
    (group, label, pred) cell, so each replicate is one multinomial draw over the occupied cells:
    the same distribution as row resampling at a cost independent of N. Pass `cells`
    (GroupFairness.cells) to skip counting the rows again.
    """
    rng = np.random.default_rng(seed)
    if cells is None:
        cells = cell_counts(label, pred, group, n_groups, num_classes)
    counts = cells.count
    n = int(counts.sum())
    batch = max(1, min(n_boot, max_batch_cells // max(counts.size, 1)))
    out: dict[str, list[np.ndarray]] = {"dpd": [], "eod": [], "tpr_diff": [], "fpr_diff": []}
    for start in range(0, n_boot, batch):
        b = min(batch, n_boot - start)
        w = rng.multinomial(n, counts / n, size=b).astype(np.float64)
        res = summaries(*tables_from_cells(cells, w), classes, eod_agg)
        for key in out:
            out[key].append(res[key])
    return {key: np.concatenate(v) for key, v in out.items()}


def percentile_ci(reps: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates ignored)."""
    tail = (1 - confidence) / 2 * 100
    if np.all(np.isnan(reps)):
        return float("nan"), float("nan")
    lo, hi = np.nanpercentile(reps, [tail, 100 - tail])
    return float(lo), float(hi)
