"""BBQ bias scores: hand-worked examples, the published script's formula, an independent pandas
computation, bootstrap and permutation against explicit loops, several runs, flips, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kdfair_cli.api.bias_score import bias_score
from kdfair_cli.cli.app import app
from kdfair_cli.io.predictions import write_predictions
from kdfair_cli.metrics import bbq as m

runner = CliRunner()
T, N, U = m.TARGET, m.NONTARGET, m.UNKNOWN
ROLE_NAME = {T: "target", N: "nontarget", U: "unknown"}


def frame(pred, label, roles, neg, ambig, cat=None, sid=None) -> pd.DataFrame:
    n = len(pred)
    roles = np.asarray(roles)
    return pd.DataFrame({
        "sample_id": np.arange(n) if sid is None else sid, "label": label, "pred": pred,
        "attr_category": cat if cat is not None else ["Age"] * n,
        "attr_question_polarity": np.where(neg, "neg", "nonneg"),
        "attr_context_condition": np.where(ambig, "ambig", "disambig"),
        **{f"attr_role_{k}": [ROLE_NAME[r] for r in roles[:, k]] for k in range(3)},
        "attr_question": [f"q{i}" for i in range(n)]})


# Roles of every item: option 0 target, 1 non-target, 2 unknown.
ROLES = [[T, N, U]] * 10
# Disambiguated items (6): neg picks T, T, N; nonneg picks N, T, U.
#   biased: neg&T (2) + nonneg&N (1) = 3; non-unknown: 5  -> s_DIS = 2*3/5 - 1 = 0.2
# Ambiguous items (4, label = unknown): neg picks T, U; nonneg picks T, N.
#   accuracy 1/4; biased: neg&T (1) + nonneg&N (1) = 2; non-unknown 3 -> s_AMB = 0.75*(2*2/3-1) = 0.25
HAND = dict(pred=[0, 0, 1, 1, 0, 2, 0, 2, 0, 1],
            label=[0, 0, 0, 1, 1, 1, 2, 2, 2, 2],
            neg=[1, 1, 1, 0, 0, 0, 1, 1, 0, 0],
            ambig=[0, 0, 0, 0, 0, 0, 1, 1, 1, 1])


def hand_arrays():
    return {k: np.asarray(v, dtype=bool if k in ("neg", "ambig") else np.int64) for k, v in HAND.items()}


def test_hand_worked_scores():
    h = hand_arrays()
    counts = m.item_counts(h["pred"], h["label"], np.asarray(ROLES), h["neg"], h["ambig"]).sum(0)
    s = m.scores(counts)
    assert s["bias_disambig"] == pytest.approx(0.2)
    assert s["bias_ambig"] == pytest.approx(0.25)
    assert s["acc_ambig"] == pytest.approx(0.25)
    assert s["acc_disambig"] == pytest.approx(3 / 6)  # items 0, 1 and 3 are right
    assert (s["n_ambig"], s["n_disambig"]) == (4, 6)


def test_published_script_formula_matches():
    """target_loc = the question's bias target: target (0) on neg, the other person (1) on nonneg."""
    h = hand_arrays()
    target_loc = np.where(h["neg"], 0, 1)
    s_amb, s_dis = m.bias_score_target_loc(h["pred"], h["label"], target_loc, np.full(10, 2), h["neg"], h["ambig"])
    # Disambiguated, non-unknown: neg_Target 2, neg_Non-target 1, nonneg_Target (picked 1) 1,
    # nonneg_Non-target 1 -> (2 + 1) / 5 * 2 - 1 = 0.2; ambiguous: (1 + 1) / 3 * 2 - 1, * 0.75.
    assert s_dis == pytest.approx(0.2) and s_amb == pytest.approx(0.25)
    res = bias_score([frame(h["pred"], h["label"], ROLES, h["neg"], h["ambig"])], n_boot=0)
    assert res.values["overall"]["bias_disambig"] == pytest.approx(s_dis)
    assert res.values["overall"]["bias_ambig"] == pytest.approx(s_amb)


def random_items(n: int, seed: int):
    rng = np.random.default_rng(seed)
    roles = np.array([rng.permutation([T, N, U]) for _ in range(n)])
    ambig = rng.random(n) < 0.5
    label = np.where(ambig, np.argmax(roles == U, 1), rng.integers(0, 3, n))
    cat = rng.choice(["Age", "Religion", "SES"], n)
    return rng, roles, ambig, label, cat, rng.random(n) < 0.5


def pandas_scores(pred, label, roles, neg, ambig, cat) -> pd.DataFrame:
    """An independent computation with pandas, straight from the paper's definitions."""
    chosen = roles[np.arange(len(pred)), pred]
    df = pd.DataFrame({"cat": cat, "ambig": ambig, "correct": pred == label,
                       "biased": ((chosen == T) & neg) | ((chosen == N) & ~neg),
                       "answered": chosen != U})
    out = {}
    for c, g in list(df.groupby("cat")) + [("overall", df)]:
        a, d = g[g.ambig], g[~g.ambig]
        acc_a = a.correct.mean()
        out[c] = {"acc_ambig": acc_a, "acc_disambig": d.correct.mean(),
                  "bias_disambig": 2 * d.biased.sum() / d.answered.sum() - 1,
                  "bias_ambig": (1 - acc_a) * (2 * a.biased.sum() / a.answered.sum() - 1)}
    return pd.DataFrame(out)


def test_independent_computation_on_300_items():
    rng, roles, ambig, label, cat, neg = random_items(300, 1)
    pred = rng.integers(0, 3, 300)
    want = pandas_scores(pred, label, roles, neg, ambig, cat)
    res = bias_score([frame(pred, label, roles, neg, ambig, cat)], n_boot=0)
    for c in want.columns:
        for k in m.METRICS:
            assert res.values[c][k] == pytest.approx(want.loc[k, c]), (c, k)
    d = res.to_dict()
    assert set(d["categories"]) == {"Age", "Religion", "SES"}
    for key in ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig", "n_ambig", "n_disambig"):
        assert key in d["categories"]["Age"]


def test_bootstrap_equals_explicit_resamples():
    rng, roles, ambig, label, cat, neg = random_items(120, 2)
    pred = rng.integers(0, 3, 120)
    feats = m.grouped(m.item_counts(pred, label, roles, neg, ambig), np.zeros(120, int), 1)[None]
    got = m.bootstrap(feats, 70, np.random.default_rng(5))
    draws = np.random.default_rng(5)
    for b in range(70):
        if b % 64 == 0:  # the weights are drawn in blocks of 64 replicates
            w = draws.multinomial(120, np.full(120, 1 / 120), size=min(64, 70 - b))
        idx = np.repeat(np.arange(120), w[b % 64])
        want = pandas_scores(pred[idx], label[idx], roles[idx], neg[idx], ambig[idx], np.array(["x"] * 120))
        for k in m.METRICS:
            assert got[k][b, 0] == pytest.approx(want.loc[k, "overall"], nan_ok=True)


def test_paired_permutation_equals_explicit_swaps():
    rng, roles, ambig, label, cat, neg = random_items(80, 3)
    pa, pb = rng.integers(0, 3, 80), rng.integers(0, 3, 80)
    f = lambda p: m.grouped(m.item_counts(p, label, roles, neg, ambig), np.zeros(80, int), 1)[None]  # noqa: E731
    obs, p = m.paired_permutation(f(pa), f(pb), 50, np.random.default_rng(9))
    draws = np.random.default_rng(9).integers(0, 2, size=(50, 80)).astype(bool)
    one = lambda x: m.scores(m.item_counts(x, label, roles, neg, ambig).sum(0))  # noqa: E731
    sa, sb = one(pa), one(pb)
    for k in m.METRICS:
        d_obs = sa[k] - sb[k]
        assert obs[k][0] == pytest.approx(d_obs)
        d = np.array([one(np.where(s, pb, pa))[k] - one(np.where(s, pa, pb))[k] for s in draws])
        assert p[k][0] == pytest.approx((1 + np.sum(np.abs(d) >= abs(d_obs) - 1e-12)) / 51)


def test_versus_itself_and_a_biased_model():
    rng, roles, ambig, label, cat, neg = random_items(400, 4)
    pred = rng.integers(0, 3, 400)
    biased = np.where(neg, np.argmax(roles == T, 1), np.argmax(roles == N, 1))  # always the biased answer
    a = frame(pred, label, roles, neg, ambig, cat)
    res = bias_score([a], [a.copy()], n_boot=50, n_perm=200)
    assert res.p_values["overall"]["bias_disambig"] == 1.0
    res = bias_score([frame(biased, label, roles, neg, ambig, cat)], [a], n_boot=50, n_perm=200)
    assert res.values["overall"]["bias_disambig"] == 1.0
    assert res.p_values["overall"]["bias_disambig"] < 0.01
    assert len(res.flips) == int((biased != pred).sum())
    assert set(res.flips["answer_a"]) == {"biased"} and "question" in res.flips


def test_several_runs_mean_std_and_flips():
    rng, roles, ambig, label, cat, neg = random_items(200, 6)
    preds = [rng.integers(0, 3, 200) for _ in range(3)]
    res = bias_score([frame(p, label, roles, neg, ambig, cat) for p in preds], n_boot=100)
    per = [pandas_scores(p, label, roles, neg, ambig, cat).loc["bias_ambig", "overall"] for p in preds]
    assert res.values["overall"]["bias_ambig"] == pytest.approx(np.mean(per))
    assert res.std["overall"]["bias_ambig"] == pytest.approx(np.std(per, ddof=1))
    lo, hi = res.ci["overall"]["bias_ambig"]
    assert lo <= res.values["overall"]["bias_ambig"] <= hi
    # Flips over two seeds by hand: item 0 flips in both pairs the same way, item 1 in one pair.
    fa = np.array([[0, 1, 2, 0], [0, 1, 2, 0]])
    fb = np.array([[1, 1, 2, 0], [1, 2, 2, 0]])
    f = m.flips(fa, fb)
    assert list(f["flip_rate"]) == [1, 0.5, 0, 0] and list(f["consistent"]) == [True, False, False, False]
    assert list(f["pred_b"]) == [1, 1, 2, 0]


def test_cli_json_flips_and_other_dataset(tmp_path):
    rng, roles, ambig, label, cat, neg = random_items(60, 7)
    paths = []
    for i in range(2):
        df = frame(rng.integers(0, 3, 60), label, roles, neg, ambig, cat)
        logits = np.eye(3)[df["pred"]] - 1.0
        attrs = {c[5:]: df[c].to_numpy() for c in df.columns if c.startswith("attr_")}
        paths.append(tmp_path / f"p{i}.parquet")
        write_predictions(paths[-1], sample_id=df["sample_id"].to_numpy(), label=label, logits=logits,
                          attrs=attrs, meta={"dataset": "bbq", "split": "test"})
    res = runner.invoke(app, ["bias-score", str(paths[0]), "--versus", str(paths[1]), "--json",
                              "--flips", str(tmp_path / "f.parquet"), "--permutations", "100"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["categories"]["SES"]["versus"]["bias_ambig"]["p_value"] is not None
    assert len(pd.read_parquet(tmp_path / "f.parquet")) == d["flips"]["n_items"]
    other = tmp_path / "hx.parquet"
    write_predictions(other, sample_id=np.arange(5), label=np.zeros(5, int), logits=np.zeros((5, 2)),
                      attrs={"gender": np.zeros(5, int)}, meta={"dataset": "hatexplain", "split": "test"})
    res = runner.invoke(app, ["bias-score", str(other)])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "hatexplain" in lines[0] and lines[0].startswith("kdfair: error:")


def test_direction_floor_is_the_binomial_null_worked_by_hand():
    """n named answers, B of them biased, B ~ Binomial(n, 1/2) under no direction: the floor is
    the 97.5% quantile of B mapped to |2B/n - 1| (x (1 - acc_ambig) for s_AMB), p the exact
    two-sided binomial test, both computed here with math.comb."""
    from math import comb

    from kdfair_cli.metrics.bbq import direction_floor

    def cdf(k, n):
        return sum(comb(n, j) for j in range(k + 1)) / 2**n

    # ambig: 200 items, 100 correct, 100 named, 60 biased; disambig: 50 items, 40 named, 30 biased
    got = direction_floor(np.array([200, 100, 60, 100, 50, 50, 30, 40], float))
    for key, n, b, scale in (("bias_ambig", 100, 60, 0.5), ("bias_disambig", 40, 30, 1.0)):
        q = next(k for k in range(n + 1) if cdf(k, n) >= 0.975)
        assert got[key]["floor"] == pytest.approx(scale * (2 * q - n) / n)
        assert got[key]["p"] == pytest.approx(2 * (1 - cdf(max(b, n - b) - 1, n)))
    nothing = direction_floor(np.array([10, 10, 0, 0, 10, 10, 0, 0], float))
    assert np.isnan(nothing["bias_ambig"]["floor"]) and np.isnan(nothing["bias_disambig"]["p"])
