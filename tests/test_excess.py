"""Excess disparity (metrics.excess) and the tests built on it (metrics.paired), against
independent numpy references: rates counted group by group, floors simulated row by row,
per-sample swaps made on the outputs themselves."""

from __future__ import annotations

import numpy as np
import pytest

from kdfair_cli.metrics.excess import floor_from_cells, normal_scores, rate_moments
from kdfair_cli.metrics.group import cell_counts, group_fairness
from kdfair_cli.metrics.null import null_draws
from kdfair_cli.metrics.paired import combine_seeds, paired_group, paired_individual


def ref_dpd_eod(label: np.ndarray, pred: np.ndarray, group: np.ndarray, g: int, c: int) -> tuple[float, float]:
    """DPD and EOD ('worst', one-vs-rest, mean over classes) counted group by group."""
    dpd, eod = [], []
    for k in range(c):
        sr = [np.mean(pred[group == j] == k) for j in range(g)]
        tpr = [np.mean(pred[(group == j) & (label == k)] == k) for j in range(g)]
        fpr = [np.mean(pred[(group == j) & (label != k)] == k) for j in range(g)]
        dpd.append(max(sr) - min(sr))
        eod.append(max(max(tpr) - min(tpr), max(fpr) - min(fpr)))
    return float(np.mean(dpd)), float(np.mean(eod))


def ref_floor(label, pred, group, g, c, n, rng) -> np.ndarray:
    """The floor by definition: n models that predict every row from the pooled P(pred | label),
    whatever its group; their DPD and EOD [n, 2]."""
    conf = np.zeros((c, c))
    np.add.at(conf, (label, pred), 1)
    cum = np.cumsum(conf / conf.sum(axis=1, keepdims=True), axis=1)
    out = np.empty((n, 2))
    for i in range(n):
        draw = (rng.random(label.size)[:, None] > cum[label]).sum(axis=1)
        out[i] = ref_dpd_eod(label, np.minimum(draw, c - 1), group, g, c)
    return out


def _noisy(label, acc, c, rng):
    wrong = (label + rng.integers(1, c, label.size)) % c
    return np.where(rng.random(label.size) < acc, label, wrong)


def _floor(label, pred, group, g, c, **kw) -> dict[str, float]:
    f = floor_from_cells(cell_counts(label, pred, group, g, c), np.arange(c), **kw)
    return {k: float(v[0]) for k, v in f.items()}


def test_normal_scores_are_a_fixed_latin_hypercube() -> None:
    z = normal_scores(64, 3, 2)
    assert z.shape == (64, 3, 3, 2) and not z.flags.writeable
    assert np.allclose(np.sort(z[:, 1, 2, 0]), np.sort(z[:, 0, 0, 1]))  # every column: all strata
    assert abs(z.mean()) < 1e-12 and z.std() == pytest.approx(1, abs=0.03)
    assert normal_scores(64, 3, 2) is z


def test_rate_moments_by_hand() -> None:
    # One group, two classes: labels (0, 0, 1), preds (0, 1, 1): q = [[.5, .5], [0, 1]].
    cells = cell_counts(np.array([0, 0, 1]), np.array([0, 1, 1]), np.zeros(3, int), 1, 2)
    from kdfair_cli.metrics.excess import confusion_by_group
    pos, conf = confusion_by_group(cells)
    assert pos.tolist() == [[[2, 1]]] and conf.tolist() == [[[1, 1], [0, 1]]]
    mean, sd = rate_moments(pos, conf)
    # selections of class 1: Bin(2, .5) + Bin(1, 1) -> mean 2/3, var 0.5 / 9
    assert mean[0, 0, 0, 1] == pytest.approx(2 / 3) and sd[0, 0, 0, 1] == pytest.approx(np.sqrt(0.5) / 3)
    assert mean[0, 1, 0].tolist() == [0.5, 1.0] and sd[0, 1, 0, 0] == pytest.approx(np.sqrt(0.25 / 2))
    assert mean[0, 2, 0, 1] == pytest.approx(0.5) and sd[0, 2, 0, 1] == pytest.approx(np.sqrt(0.25 / 2))
    with pytest.raises(ValueError, match="stratification"):
        rate_moments(pos, conf, "both")


@pytest.mark.parametrize("acc", [0.75, 0.93])
def test_floor_matches_a_row_level_simulation_and_the_permutation_null(acc: float) -> None:
    rng = np.random.default_rng(1)
    n, c, g = 2000, 3, 4
    label, group = rng.integers(0, c, n), rng.integers(0, g, n)
    pred = _noisy(label, acc, c, rng)
    ours = _floor(label, pred, group, g, c)
    ref = ref_floor(label, pred, group, g, c, 150, rng)
    se = ref.std(axis=0, ddof=1) / np.sqrt(len(ref))
    for j, key in enumerate(("dpd", "eod")):
        assert abs(ours[key] - ref[:, j].mean()) < 4 * se[j] + 0.01 * ours[key], (key, ours, ref.mean(0))
    perm = null_draws(cell_counts(label, pred, group, g, c), np.arange(c), n_draws=400, seed=0)
    assert ours["eod"] == pytest.approx(perm.eod.mean(), rel=0.05)
    assert ours["dpd"] == pytest.approx(perm.dpd.mean(), rel=0.05)
    # The floor is a deterministic function of the counts.
    assert _floor(label, pred, group, g, c) == ours


def test_a_fair_model_has_no_excess_whatever_its_accuracy_but_an_unfair_one_has() -> None:
    rng = np.random.default_rng(2)
    n, c, g = 4000, 3, 4
    label, group = rng.integers(0, c, n), rng.integers(0, g, n)
    names = [str(i) for i in range(g)]
    for acc in (0.7, 0.95):
        ex = []
        for _ in range(40):
            pred = _noisy(label, acc, c, rng)
            res = group_fairness(label, pred, group, names, c)
            ex.append(res.eod - _floor(label, pred, group, g, c)["eod"])
        assert abs(np.mean(ex)) < 4 * np.std(ex, ddof=1) / np.sqrt(len(ex)) + 0.002, (acc, np.mean(ex))
    pred = _noisy(label, np.where(group == 0, 0.7, 0.9), c, rng)
    assert group_fairness(label, pred, group, names, c).eod - _floor(label, pred, group, g, c)["eod"] > 0.1


def test_floor_of_unequal_base_rates_follows_the_stratification() -> None:
    rng = np.random.default_rng(3)
    n, c, g = 3000, 2, 2
    group = rng.integers(0, g, n)
    label = (rng.random(n) < np.where(group == 0, 0.2, 0.6)).astype(int)  # base rates differ
    pred = _noisy(label, 0.9, c, rng)
    dpd = group_fairness(label, pred, group, ["a", "b"], c).dpd
    within, anyway = (_floor(label, pred, group, g, c, stratify=s)["dpd"] for s in ("label", "none"))
    assert within == pytest.approx(dpd, abs=0.04) and within > 0.25  # explained by the base rates
    assert anyway < 0.05  # equal selection rates expected: the base rates count as disparity


def test_floor_of_undefined_rates_and_empty_groups() -> None:
    label = np.array([0, 1, 0, 1, 0, 0])
    pred = np.array([0, 1, 1, 1, 0, 0])
    group = np.array([0, 0, 1, 1, 2, 2])  # group 2 has no positives of class 1
    f = floor_from_cells(cell_counts(label, pred, group, 4, 2), np.array([1]))  # group 3 empty
    assert np.isfinite(f["dpd"]).all() and np.isfinite(f["eod"]).all()


def _paired_ref(label, pa, pb, group, g, c):
    return ref_dpd_eod(label, pa, group, g, c), ref_dpd_eod(label, pb, group, g, c)


def test_paired_excess_is_the_difference_of_the_two_excesses() -> None:
    rng = np.random.default_rng(4)
    n, c, g = 3000, 3, 3
    label, group = rng.integers(0, c, n), rng.integers(0, g, n)
    pa, pb = _noisy(label, 0.75, c, rng), _noisy(label, 0.95, c, rng)
    res = paired_group(label, pa, pb, group, g, c, np.arange(c), n_perm=50, n_boot=200, seed=0)
    (dpd_a, eod_a), (dpd_b, eod_b) = _paired_ref(label, pa, pb, group, g, c)
    fa, fb = _floor(label, pa, group, g, c), _floor(label, pb, group, g, c)
    assert res["excess_eod"].a == pytest.approx(eod_a - fa["eod"])
    assert res["excess_dpd"].b == pytest.approx(dpd_b - fb["dpd"])
    assert res["excess_eod"].delta == pytest.approx(eod_a - fa["eod"] - eod_b + fb["eod"])
    assert res["eod"].delta == pytest.approx(eod_a - eod_b)
    ex = res["excess_eod"]
    assert ex.null.mean() == pytest.approx(0, abs=1e-12)
    assert ex.null == pytest.approx(ex.boot - ex.boot.mean())
    assert ex.p == pytest.approx((1 + np.sum(np.abs(ex.null) >= abs(ex.delta))) / (1 + ex.null.size))
    assert ex.ci[0] < ex.delta < ex.ci[1]
    same = paired_group(label, pa, pa, group, g, c, np.arange(c), n_perm=20, n_boot=20)
    assert same["excess_eod"].delta == 0 and same["excess_eod"].p == 1
    plain = paired_group(label, pa, pb, group, g, c, np.arange(c), n_perm=50, n_boot=200, seed=0,
                         excess=False)
    assert set(plain) == {"dpd", "eod"} and plain["eod"].p == res["eod"].p
    both = combine_seeds([res["excess_eod"], res["excess_eod"]])
    assert both.delta == pytest.approx(ex.delta) and both.p == pytest.approx(ex.p)


def _tv(f: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.abs(f - h).sum(axis=1) / 2


def _knn_like(rng, s: int, k: int):
    """Sample positions on a line, each paired with its next k neighbours (~2k pairs a sample)."""
    x = np.sort(rng.random(s)) * 10
    ia = np.repeat(np.arange(s), k)
    ib = ia + np.tile(np.arange(1, k + 1), s)
    keep = ib < s
    ia, ib = ia[keep], ib[keep]
    return x, ia, ib, np.abs(x[ia] - x[ib]) + 0.01


def test_per_sample_swap_null_by_hand_on_overlapping_pairs() -> None:
    rng = np.random.default_rng(5)
    s, k = 60, 4
    _, ia, ib, dist = _knn_like(rng, s, k)
    fa, fb = rng.dirichlet(np.ones(3), s), rng.dirichlet(np.ones(3), s)
    ra, rb = _tv(fa[ia], fa[ib]) / dist, _tv(fb[ia], fb[ib]) / dist
    mixed = (_tv(fb[ia], fa[ib]) - _tv(fa[ia], fb[ib])) / dist
    res = paired_individual(ra, rb, mixed=mixed, pair_samples=(ia, ib), n_perm=4000, n_boot=200, seed=0)
    assert res.delta == pytest.approx(ra.mean() - rb.mean())
    # Reference: swap the two models' outputs per sample, recompute every ratio.
    ref = np.empty(1500)
    for i in range(ref.size):
        swap = rng.random(s) < 0.5
        a = np.where(swap[:, None], fb, fa)
        b = np.where(swap[:, None], fa, fb)
        ref[i] = (_tv(a[ia], a[ib]) / dist).mean() - (_tv(b[ia], b[ib]) / dist).mean()
    assert res.null.std() == pytest.approx(ref.std(), rel=0.1)
    assert abs(res.null.mean() - ref.mean()) < 5 * ref.std() / np.sqrt(ref.size)
    # A model against itself cannot move.
    same = paired_individual(ra, ra, mixed=np.zeros_like(ra), pair_samples=(ia, ib), n_perm=10, n_boot=10)
    assert same.p == 1 and same.delta == 0
    with pytest.raises(ValueError, match="go together"):
        paired_individual(ra, rb, mixed=mixed)


def test_clustered_bootstrap_is_wider_than_the_pair_bootstrap_on_overlapping_pairs() -> None:
    rng = np.random.default_rng(6)
    s, k = 400, 5
    x, ia, ib, dist = _knn_like(rng, s, k)
    effect = rng.normal(0, 1, s)  # a per-sample effect shared by the sample's pairs
    fa = np.stack([1 / (1 + np.exp(-(np.sin(x) + effect))), np.zeros(s)], 1)
    fa[:, 1] = 1 - fa[:, 0]
    fb = np.roll(fa, 1, axis=0)
    ra, rb = _tv(fa[ia], fa[ib]) / dist, _tv(fb[ia], fb[ib]) / dist
    mixed = (_tv(fb[ia], fa[ib]) - _tv(fa[ia], fb[ib])) / dist
    new = paired_individual(ra, rb, mixed=mixed, pair_samples=(ia, ib), n_perm=200, n_boot=1000, seed=0)
    old = paired_individual(ra, rb, n_perm=200, n_boot=1000, seed=0)
    assert new.boot.mean() == pytest.approx(new.delta, abs=0.2 * new.boot.std())
    assert new.boot.std() > 1.3 * old.boot.std()
