"""Noise floors and paired tests (metrics.null, metrics.paired) against plain row permutations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kdfair_cli.metrics.group import cell_counts, group_fairness
from kdfair_cli.metrics.individual import individual_fairness, pair_ratios
from kdfair_cli.metrics.null import null_draws, null_test, random_tables
from kdfair_cli.metrics.paired import (combine_seeds, debiased_ci, mean_interval, paired_group,
                                       paired_individual, two_sided_p, welch_seeds)


def _noisy(label: np.ndarray, acc: np.ndarray | float, c: int, rng) -> np.ndarray:
    """Predictions right with probability acc (per row), else a uniformly drawn wrong class."""
    wrong = (label + rng.integers(1, c, label.size)) % c
    return np.where(rng.random(label.size) < acc, label, wrong)


def _fair(label, pred, group, g, c):
    return group_fairness(label, pred, group, [str(i) for i in range(g)], c)


def _row_permutation_null(label, pred, group, g, c, n, rng, stratify="label"):
    """The reference: permute the attribute column itself, n times, and recompute."""
    out = np.empty((n, 2))
    for i in range(n):
        g2 = group.copy()
        if stratify == "label":
            for y in np.unique(label):
                m = label == y
                g2[m] = rng.permutation(g2[m])
        else:
            g2 = rng.permutation(g2)
        r = _fair(label, pred, g2, g, c)
        out[i] = r.dpd, r.eod
    return out


def _agree(ours: np.ndarray, ref: np.ndarray) -> None:
    """Means agree within 4 standard errors of their difference."""
    se = np.sqrt(ours.var(ddof=1) / ours.size + ref.var(ddof=1) / ref.size)
    assert abs(ours.mean() - ref.mean()) < 4 * se, (ours.mean(), ref.mean(), se)


def test_random_tables_keep_both_margins_and_are_hypergeometric() -> None:
    rng = np.random.default_rng(0)
    sizes = np.array([[3, 2, 4], [1, 0, 5]])  # [S=2, G=3]
    cols = np.array([[2, 0, 4, 3], [3, 2, 1, 0]])  # [S=2, K=4]
    t = random_tables(sizes, cols, 4000, rng)
    assert t.shape == (4000, 2, 3, 4) and (t >= 0).all()
    assert (t.sum(axis=-1) == sizes).all() and (t.sum(axis=-2) == cols).all()
    assert (t[:, 0, :, 1] == 0).all() and (t[:, 1, 1] == 0).all()
    # Group 0 of stratum 0 draws 3 of 9; its count of column 0 (2 of 9) is hypergeometric.
    freq = np.bincount(t[:, 0, 0, 0], minlength=3) / 4000
    pmf = stats.hypergeom(9, 2, 3).pmf(np.arange(3))
    assert np.abs(freq - pmf).max() < 0.03
    # The last group (the remainder) has the same law: 4 of 9, column 2 (4 of 9).
    freq = np.bincount(t[:, 0, 2, 2], minlength=5) / 4000
    assert np.abs(freq - stats.hypergeom(9, 4, 4).pmf(np.arange(5))).max() < 0.03


def test_null_test_p_formula_by_hand() -> None:
    r = null_test(0.5, np.array([0.1, 0.5, 0.7, np.nan]))
    assert r.p == pytest.approx(3 / 4)  # (1 + #{0.5, 0.7}) / (1 + 3 valid draws)
    assert r.null_mean == pytest.approx(13 / 30) and r.excess == pytest.approx(0.5 - 13 / 30)
    assert r.n_draws == 3
    assert np.isnan(null_test(np.nan, np.array([0.1, 0.2])).p)
    per_class = null_test(np.array([0.0, 1.0]), np.array([[0.2, 0.2], [0.4, np.nan]]))
    assert per_class.p.tolist() == [1.0, 0.5] and per_class.n_draws.tolist() == [2, 1]
    assert two_sided_p(-0.3, np.array([0.1, -0.4, 0.3, 0.2])) == pytest.approx(3 / 5)
    # Replicates 0.5..1.5 (mean 1.0) around an estimate of 0.8: bias 0.2, percentiles 0.525, 1.475.
    assert debiased_ci(0.8, np.arange(101) / 100 + 0.5) == pytest.approx((0.325, 1.275))


def test_null_matches_row_permutation_when_errors_ignore_the_group() -> None:
    rng = np.random.default_rng(1)
    n, c, g = 2000, 4, 3
    label = rng.integers(0, c, n)
    group = rng.integers(0, g, n)
    pred = _noisy(label, 0.85, c, rng)
    res = _fair(label, pred, group, g, c)
    ours = null_draws(res.cells, res.classes, n_draws=2000, seed=0)
    ref = _row_permutation_null(label, pred, group, g, c, 300, rng)
    _agree(ours.dpd, ref[:, 0])
    _agree(ours.eod, ref[:, 1])
    assert null_test(res.eod, ours.eod).p > 0.05 and null_test(res.dpd, ours.dpd).p > 0.05
    # The class average is the mean of the per-class draws (one permutation for all classes).
    assert np.allclose(ours.eod, ours.eod_per_class.mean(axis=1))
    none = null_draws(res.cells, res.classes, n_draws=2000, seed=0, stratify="none")
    _agree(none.dpd, _row_permutation_null(label, pred, group, g, c, 300, rng, "none")[:, 0])


def test_null_is_seeded() -> None:
    rng = np.random.default_rng(2)
    label, group = rng.integers(0, 3, 500), rng.integers(0, 2, 500)
    pred = _noisy(label, 0.8, 3, rng)
    cells = cell_counts(label, pred, group, 2, 3)
    a = null_draws(cells, np.arange(3), n_draws=50, seed=7)
    b = null_draws(cell_counts(label, pred, group, 2, 3), np.arange(3), n_draws=50, seed=7)
    c = null_draws(cells, np.arange(3), n_draws=50, seed=8)
    assert np.array_equal(a.eod_per_class, b.eod_per_class) and not np.array_equal(a.eod, c.eod)


def test_planted_disparity_is_detected() -> None:
    rng = np.random.default_rng(3)
    n, c, g = 3000, 4, 3
    label, group = rng.integers(0, c, n), rng.integers(0, g, n)
    pred = _noisy(label, np.where(group == 0, 0.75, 0.9), c, rng)
    res = _fair(label, pred, group, g, c)
    draws = null_draws(res.cells, res.classes, n_draws=1000, seed=0)
    test = null_test(res.eod, draws.eod)
    assert test.p < 0.01 and test.excess > 0.05


def test_unequal_base_rates_are_explained_by_the_label_stratified_floor() -> None:
    """Binary, P(y=1) = 0.2 vs 0.6, errors independent of the group: DPD is large but no
    evidence of disparity under Ŷ ⊥ A | Y; the unconditional null calls it disparity."""
    rng = np.random.default_rng(4)
    n = 4000
    group = rng.integers(0, 2, n)
    label = (rng.random(n) < np.where(group == 0, 0.2, 0.6)).astype(np.int64)
    pred = np.where(rng.random(n) < 0.9, label, 1 - label)
    res = _fair(label, pred, group, 2, 2)
    assert res.dpd > 0.25
    stratified = null_draws(res.cells, res.classes, n_draws=1000, seed=0)
    t = null_test(res.dpd, stratified.dpd)
    assert t.p > 0.05 and abs(t.excess) < 0.03
    assert null_test(res.eod, stratified.eod).p > 0.01
    free = null_draws(res.cells, res.classes, n_draws=1000, seed=0, stratify="none")
    assert null_test(res.dpd, free.dpd).p < 0.01
    _agree(stratified.dpd, _row_permutation_null(label, pred, group, 2, 2, 200, rng)[:, 0])


def _row_swap_null(label, pa, pb, group, g, c, n, rng) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        swap = rng.random(label.size) < 0.5
        a, b = np.where(swap, pb, pa), np.where(swap, pa, pb)
        out[i] = _fair(label, a, group, g, c).eod - _fair(label, b, group, g, c).eod
    return out


def test_paired_test_finds_a_planted_difference_and_not_a_null_one() -> None:
    rng = np.random.default_rng(5)
    n, c, g = 3000, 3, 3
    label, group = rng.integers(0, c, n), rng.integers(0, g, n)
    classes = np.arange(c)
    unfair = _noisy(label, np.where(group == 0, 0.7, 0.9), c, rng)
    fair = _noisy(label, 0.83, c, rng)
    planted = paired_group(label, unfair, fair, group, g, c, classes, seed=0)
    assert planted["eod"].p < 0.01 and planted["eod"].ci[0] > 0
    assert planted["eod"].a == pytest.approx(_fair(label, unfair, group, g, c).eod)
    assert planted["eod"].delta == pytest.approx(planted["eod"].a - planted["eod"].b)
    other = _noisy(label, 0.83, c, rng)
    null = paired_group(label, fair, other, group, g, c, classes, seed=0)
    for m in ("dpd", "eod"):
        assert null[m].p > 0.05 and null[m].ci[0] < 0 < null[m].ci[1]
    # The count-based swap null has the spread of swapping rows.
    ref = _row_swap_null(label, fair, other, group, g, c, 300, rng)
    assert null["eod"].null.std() == pytest.approx(ref.std(), rel=0.2)
    assert null["eod"].null.mean() == pytest.approx(0, abs=4 * ref.std() / np.sqrt(300))
    same = paired_group(label, fair, fair, group, g, c, classes, n_perm=20, n_boot=20)
    assert same["eod"].delta == 0 and same["eod"].p == 1 and (same["eod"].null == 0).all()


def test_combine_seeds_and_welch() -> None:
    rng = np.random.default_rng(6)
    n, c, g = 1500, 3, 2
    label, group = rng.integers(0, c, n), rng.integers(0, g, n)
    pa, pb = _noisy(label, 0.8, c, rng), _noisy(label, 0.8, c, rng)
    ab = paired_group(label, pa, pb, group, g, c, np.arange(c), n_perm=200, n_boot=100, seed=0)["eod"]
    ba = paired_group(label, pb, pa, group, g, c, np.arange(c), n_perm=200, n_boot=100, seed=1)["eod"]
    both = combine_seeds([ab, ba])
    assert both.delta == pytest.approx(0, abs=1e-12)
    assert np.allclose(both.null, (ab.null + ba.null) / 2) and both.p == 1
    with pytest.raises(ValueError, match="different numbers of null"):
        combine_seeds([ab, paired_group(label, pa, pb, group, g, c, np.arange(c), n_perm=10,
                                        n_boot=100)["eod"]])
    xa, xb = np.array([0.20, 0.25, 0.22]), np.array([0.10, 0.12, 0.11, 0.13])
    w = welch_seeds(xa, xb)
    va, vb = xa.var(ddof=1) / 3, xb.var(ddof=1) / 4
    t = (xa.mean() - xb.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    assert w.t == pytest.approx(t) and w.p == pytest.approx(2 * stats.t.sf(abs(t), df))
    with pytest.raises(ValueError, match=">= 2 seeds"):
        welch_seeds([0.1], [0.2, 0.3])


def test_individual_fairness_intervals_and_paired_comparison() -> None:
    rng = np.random.default_rng(7)
    m, n_pairs = 400, 3000
    a, b = rng.integers(0, m, n_pairs), rng.integers(0, m, n_pairs)
    d = rng.uniform(0.0, 1.0, n_pairs)
    d[:5] = 0
    f = rng.dirichlet(np.ones(3), m)
    ratio, _, used = pair_ratios(f, a, b, d)
    assert used.sum() == n_pairs - 5
    assert ratio.mean() == pytest.approx(individual_fairness(f, a, b, d).score)
    iv = mean_interval(ratio, n_boot=500, seed=0)
    se = ratio.std(ddof=1) / np.sqrt(ratio.size)
    assert iv.ci[1] - iv.ci[0] == pytest.approx(2 * 1.96 * se, rel=0.15)
    g = 0.8 * f + 0.2 / 3  # smoother outputs: every ratio shrinks by 0.8
    ratio_g, _, _ = pair_ratios(g, a, b, d)
    res = paired_individual(ratio, ratio_g, n_perm=500, n_boot=500, seed=0)
    assert res.delta == pytest.approx(0.2 * ratio.mean()) and res.p < 0.01 and res.ci[0] > 0
    # Exchangeable models: a coin decides per pair which model gets which output.
    swap = rng.random(ratio.size) < 0.5
    x, y = np.where(swap, ratio, ratio_g), np.where(swap, ratio_g, ratio)
    res = paired_individual(x, y, n_perm=2000, n_boot=500, seed=0)
    assert res.p > 0.01 and res.ci[0] < res.delta < res.ci[1]
    # Sign flips by hand: the null's spread is that of the mean of randomly signed differences.
    diff = x - y
    ref = np.array([(diff * rng.choice([-1.0, 1.0], diff.size)).mean() for _ in range(500)])
    assert res.null.std() == pytest.approx(ref.std(), rel=0.15)
    assert paired_individual(x, x, n_perm=10, n_boot=10).p == 1
