"""Class-wise bias: which classes does distillation make better or worse?

With several seeds per model (the paper's method) each class's accuracy, normalised by the
run's overall accuracy, is compared with Welch's t-test over seeds. With a single run per model
an exact McNemar test per class, paired on the samples of that class, is the honest
alternative. Degenerate classes are flagged in a `note`, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdfair_cli.metrics.multiple_testing import adjust_pvalues

NORMALIZE = ("ratio", "difference", "none")


def class_accuracy(label: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, float]:
    """Per-class accuracy (NaN for a class absent from `label`) and overall accuracy."""
    n = np.bincount(label, minlength=num_classes)
    hits = np.bincount(label, weights=(label == pred), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n > 0, hits / np.maximum(n, 1), np.nan)
    return acc, float(hits.sum() / label.size)


def normalise(acc: np.ndarray, overall: np.ndarray | float, mode: str) -> np.ndarray:
    """Class accuracy relative to the run's overall accuracy: acc/overall, acc-overall, or acc.

    Normalising removes a model-wide accuracy shift, so a class is flagged only when it moves
    differently from the rest (the paper's H0: acc_c(A)/acc(A) = acc_c(B)/acc(B)).
    """
    overall = np.asarray(overall, dtype=np.float64)
    if mode == "ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            return acc / overall[..., None] if overall.ndim else acc / overall
    if mode == "difference":
        return acc - (overall[..., None] if overall.ndim else overall)
    if mode == "none":
        return acc.astype(np.float64, copy=True)
    raise ValueError(f"unknown normalisation {mode!r}; expected one of {NORMALIZE}")


def welch_per_class(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's t-test per column of xa [Sa, C] vs xb [Sb, C]; returns (t, p, note).

    Degenerate columns: NaN values (class absent) -> t, p NaN, note 'absent'. Zero variance on
    both sides -> the limit of the test: equal means give t = 0, p = 1, different means give
    t = +-inf, p = 0; note 'zero variance'.
    """
    from scipy import stats  # imported here: scipy.stats adds ~0.5 s to every kdfair start-up

    c = xa.shape[1]
    t = np.full(c, np.nan)
    p = np.full(c, np.nan)
    note = np.full(c, "", dtype=object)
    absent = np.isnan(xa).any(axis=0) | np.isnan(xb).any(axis=0)
    note[absent] = "absent"
    zero = ~absent & (np.ptp(xa, axis=0) == 0) & (np.ptp(xb, axis=0) == 0)
    ok = ~absent & ~zero
    if ok.any():
        res = stats.ttest_ind(xa[:, ok], xb[:, ok], axis=0, equal_var=False)
        t[ok], p[ok] = res.statistic, res.pvalue
    diff = xa[0, zero] - xb[0, zero]
    t[zero] = np.where(diff == 0, 0.0, np.copysign(np.inf, diff))
    p[zero] = np.where(diff == 0, 1.0, 0.0)
    note[zero] = "zero variance"
    return t, p, note


def mcnemar_per_class(label: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                      num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact (binomial) McNemar test per true class, paired on samples.

    Returns (a_only, b_only, p, note): a_only counts samples of the class that A gets right and
    B wrong, b_only the reverse; p = min(1, 2 * Binom(a_only + b_only, 1/2).cdf(min)).
    No discordant pair -> p = 1 (note 'identical correctness'); absent class -> NaN.
    """
    from scipy import stats

    ca, cb = pred_a == label, pred_b == label
    n = np.bincount(label, minlength=num_classes)
    a_only = np.bincount(label, weights=ca & ~cb, minlength=num_classes).astype(np.int64)
    b_only = np.bincount(label, weights=~ca & cb, minlength=num_classes).astype(np.int64)
    disc = a_only + b_only
    p = np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(a_only, b_only), disc, 0.5))
    p = np.where(disc == 0, 1.0, p)
    note = np.full(num_classes, "", dtype=object)
    note[disc == 0] = "identical correctness"
    p = np.where(n == 0, np.nan, p)
    note[n == 0] = "absent"
    return a_only, b_only, p, note


def disagreement(label: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's Figure 2: per true class, the rate at which A and B predict differently, and
    the C x C matrix of (pred_a, pred_b) counts with the diagonal (agreement) set to 0."""
    n = np.bincount(label, minlength=num_classes)
    diff = np.bincount(label, weights=pred_a != pred_b, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, diff / np.maximum(n, 1), np.nan)
    named = (pred_a >= 0) & (pred_b >= 0)  # an unparsed answer (-1) has no cell
    matrix = np.bincount(pred_a[named] * num_classes + pred_b[named], minlength=num_classes * num_classes)
    matrix = matrix.reshape(num_classes, num_classes)
    np.fill_diagonal(matrix, 0)
    return rate, matrix


@dataclass
class ClassComparison:
    """Per-class comparison of model A (several runs) with model B; arrays of length C."""

    test: str  # "welch" or "mcnemar"
    normalize: str
    alpha: float
    correction: str
    n: np.ndarray  # samples per class
    acc_a: np.ndarray  # [Sa, C]
    acc_b: np.ndarray  # [Sb, C]
    overall_a: np.ndarray  # [Sa]
    overall_b: np.ndarray  # [Sb]
    norm_a: np.ndarray  # [Sa, C]
    norm_b: np.ndarray  # [Sb, C]
    statistic: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    significant: np.ndarray  # bool
    note: np.ndarray  # str per class, '' when nothing special
    a_only: np.ndarray | None  # McNemar counts
    b_only: np.ndarray | None
    disagreement: np.ndarray  # [C], mean over paired runs
    matrix: np.ndarray  # [C, C] off-diagonal counts, mean over paired runs
    n_disagreement_pairs: int

    @property
    def n_significant(self) -> int:
        return int(self.significant.sum())

    @property
    def n_tested(self) -> int:
        return int((~np.isnan(self.p_value)).sum())


def compare_classes(label: np.ndarray, preds_a: list[np.ndarray], preds_b: list[np.ndarray],
                    num_classes: int, *, normalize: str = "ratio", alpha: float = 0.05,
                    correction: str = "none") -> ClassComparison:
    """Compare runs of A with runs of B on one labelled split (rows aligned across runs).

    >= 2 runs a side: Welch's t-test on normalised class accuracy; 1 run a side: exact McNemar.
    Disagreement pairs run i of A with run i of B (i < min(Sa, Sb)) and averages over pairs.
    """
    sa, sb = len(preds_a), len(preds_b)
    if not ((sa >= 2 and sb >= 2) or (sa == 1 and sb == 1)):
        raise ValueError("give one run per side (McNemar) or at least two per side (Welch)")
    n = np.bincount(label, minlength=num_classes)
    acc_a, ov_a = zip(*(class_accuracy(label, p, num_classes) for p in preds_a))
    acc_b, ov_b = zip(*(class_accuracy(label, p, num_classes) for p in preds_b))
    acc_a, acc_b = np.vstack(acc_a), np.vstack(acc_b)
    ov_a, ov_b = np.array(ov_a), np.array(ov_b)
    norm_a, norm_b = normalise(acc_a, ov_a, normalize), normalise(acc_b, ov_b, normalize)
    a_only = b_only = None
    if sa >= 2:
        test = "welch"
        stat, p, note = welch_per_class(norm_a, norm_b)
    else:
        test = "mcnemar"
        a_only, b_only, p, note = mcnemar_per_class(label, preds_a[0], preds_b[0], num_classes)
        stat = (a_only - b_only).astype(np.float64)
        stat[n == 0] = np.nan
    p_adj = adjust_pvalues(p, correction)
    significant = np.nan_to_num(p_adj, nan=1.0) < alpha
    pairs = min(sa, sb)
    rates, mats = zip(*(disagreement(label, preds_a[i], preds_b[i], num_classes)
                        for i in range(pairs)))
    return ClassComparison(test, normalize, alpha, correction, n, acc_a, acc_b, ov_a, ov_b,
                           norm_a, norm_b, stat, p, p_adj, significant, note, a_only, b_only,
                           np.mean(rates, axis=0), np.mean(mats, axis=0), pairs)
