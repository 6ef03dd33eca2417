"""Excess disparity: DPD/EOD minus the disparity the same model would show if it ignored the group.

A max - min over noisy group rates is positive even for a model whose outputs do not depend on
the attribute, and more so the noisier the rates: a less accurate model, or smaller groups,
show a larger DPD/EOD with no unfairness at all. The *floor* is that expected value:

    floor = E[metric] for a model with this model's pooled per-label confusion
            P(pred = k | label = y), predicting each row independently of its group,
            on this test set's group x label counts n[g, y].

Under that model each group's one-vs-rest counts are sums of independent binomials:
selections of class k in group g ~ sum_y Bin(n[g, y], q[y, k]), true positives ~
Bin(n[g, k], q[k, k]), false positives ~ sum_{y != k} Bin(n[g, y], q[y, k]). The floor takes
each rate as normal with that exact mean and variance (a max - min is insensitive to skewness to
first order: it shifts the expected max and min alike) and computes E[max - min] (and for EOD
'worst' E[max(TPR spread, FPR spread)], the two spreads being independent as they use disjoint
rows) by Monte Carlo over FLOOR_DRAWS fixed standard normal scores per (group, class, rate):
a Latin hypercube with a fixed seed, so the floor is a deterministic, smooth function of the
counts. That makes it cheap to recompute for every bootstrap replicate (paired.paired_group)
and makes the same counts always give the same floor. tests/test_excess.py checks it against a
row-level binomial simulation.

excess = metric - floor. A fair model has excess ~ 0 whatever its accuracy; the excess of two
models can be compared where their raw DPD/EOD cannot (see docs/metrics.md).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from kdfair_cli.metrics.group import CellCounts, class_mean, eod_from, spread

#: Normal scores per (group, class, rate) behind every floor, and their seed.
FLOOR_DRAWS = 128
FLOOR_SEED = 20
STRATIFY = ("label", "none")


@lru_cache(maxsize=8)
def normal_scores(n_draws: int, n_groups: int, num_classes: int) -> np.ndarray:
    """Fixed N(0, 1) scores [n_draws, 3, G, C] (selection, TPR, FPR): a Latin hypercube per
    column (each column holds every stratum (i + 1/2) / n_draws once, in its own order)."""
    from scipy.special import ndtri  # here, not at import: scipy adds to every command's start-up

    rng = np.random.default_rng(FLOOR_SEED)
    shape = (3, n_groups, num_classes)
    order = rng.permuted(np.broadcast_to(np.arange(n_draws)[:, None], (n_draws, int(np.prod(shape)))),
                         axis=0)
    z = ndtri((order + 0.5) / n_draws).reshape(n_draws, *shape)
    z.setflags(write=False)
    return z


def confusion_by_group(cells: CellCounts, weights: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(label counts per group [b, G, C], pooled label x pred counts [b, C, C]) from cells,
    for b sets of cell weights (None: the counts, b = 1)."""
    g, c = cells.n_groups, cells.num_classes
    w = cells.count[None, :].astype(np.float64) if weights is None else np.asarray(weights, np.float64)
    b = w.shape[0]
    offs = np.arange(b)[:, None]
    pos = np.bincount((offs * (g * c) + cells.group * c + cells.label).ravel(), weights=w.ravel(),
                      minlength=b * g * c).reshape(b, g, c)
    named = cells.pred >= 0  # an unparsed answer (-1) is in no confusion cell
    conf = np.bincount((offs * (c * c) + cells.label * c + np.maximum(cells.pred, 0)).ravel(),
                       weights=(w * named).ravel(),
                       minlength=b * c * c).reshape(b, c, c)
    return pos, conf


def rate_moments(pos: np.ndarray, conf: np.ndarray, stratify: str = "label"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd [b, 3, G, C] of the selection rate, TPR and FPR under the floor's model.

    stratify="label": selections follow each group's own label counts (base rates differing by
    design are not disparity); "none": every group selects at the pooled rate (DPD in its own
    sense). TPR and FPR always condition on the label. NaN where a rate is undefined (a group
    without samples, positives or negatives), as in metrics.group.rates.
    """
    if stratify not in STRATIFY:
        raise ValueError(f"unknown stratification {stratify!r}; expected one of {STRATIFY}")
    with np.errstate(invalid="ignore", divide="ignore"):
        n_y = conf.sum(axis=-1, keepdims=True)
        q = np.where(n_y > 0, conf / np.where(n_y > 0, n_y, 1), 0.0)  # [b, C, C] P(pred | label)
        d = np.diagonal(q, axis1=-2, axis2=-1)[:, None, :]  # [b, 1, C] P(pred = k | label = k)
        size = pos.sum(axis=-1, keepdims=True)  # [b, G, 1]
        neg = size - pos
        sel_mean = pos @ q  # expected selections [b, G, C]
        sel_var = pos @ (q * (1 - q))
        tp_mean, tp_var = pos * d, pos * d * (1 - d)
        fp_mean, fp_var = sel_mean - tp_mean, np.maximum(sel_var - tp_var, 0.0)
        if stratify == "none":
            p = sel_mean.sum(axis=1, keepdims=True) / size.sum(axis=1, keepdims=True)
            sel_mean, sel_var = p * size, p * (1 - p) * size
        mean = np.stack([np.where(size > 0, sel_mean / size, np.nan),
                         np.where(pos > 0, np.broadcast_to(d, pos.shape), np.nan),
                         np.where(neg > 0, fp_mean / neg, np.nan)], axis=1)
        sd = np.sqrt(np.stack([sel_var / size ** 2, tp_var / pos ** 2, fp_var / neg ** 2], axis=1))
    return mean, np.where(np.isnan(mean), np.nan, sd)


def floor_means(pos: np.ndarray, conf: np.ndarray, classes: np.ndarray, *, eod_agg: str = "worst",
                stratify: str = "label", n_draws: int = FLOOR_DRAWS,
                max_batch_cells: int = 20_000_000) -> dict[str, np.ndarray]:
    """The floor {"dpd": [b], "eod": [b]} (class means over `classes`) of b count tables."""
    mean, sd = rate_moments(pos, conf, stratify)
    b, _, g, c = mean.shape
    z32 = normal_scores(n_draws, g, c).astype(np.float32)
    batch = max(1, min(b, max_batch_cells // max(n_draws * 3 * g * c, 1), 64))
    out: dict[str, list[np.ndarray]] = {"dpd": [], "eod": []}
    for s in range(0, b, batch):
        m, v = mean[s:s + batch, None], sd[s:s + batch, None]
        x = np.multiply(v.astype(np.float32), z32)
        x += m.astype(np.float32)  # [b, R, 3, G, C]; float32 is ample for an expected value
        if np.isnan(m).any():
            dpd, tpr, fpr = (spread(x[:, :, i]) for i in range(3))  # [b, R, C]
        else:
            d = x.max(axis=-2) - x.min(axis=-2)  # every rate defined: a plain max - min
            dpd, tpr, fpr = d[:, :, 0], d[:, :, 1], d[:, :, 2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # classes undefined in every draw
            per_class = {"dpd": np.nanmean(dpd, axis=1),
                         "eod": np.nanmean(eod_from(tpr, fpr, eod_agg), axis=1)}
        for k, v in class_mean(per_class, np.asarray(classes)).items():
            out[k].append(v.astype(np.float64))
    return {k: np.concatenate(v) for k, v in out.items()}


def floor_from_cells(cells: CellCounts, classes: np.ndarray, weights: np.ndarray | None = None, *,
                     eod_agg: str = "worst", stratify: str = "label",
                     n_draws: int = FLOOR_DRAWS) -> dict[str, np.ndarray]:
    """The floor of DPD and EOD from cell counts (GroupFairness.cells), or from b sets of cell
    weights (bootstrap replicates): arrays [b] (b = 1 without weights)."""
    pos, conf = confusion_by_group(cells, weights)
    return floor_means(pos, conf, classes, eod_agg=eod_agg, stratify=stratify, n_draws=n_draws)
