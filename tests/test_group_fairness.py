"""group-fairness: DPD/EOD against fairlearn, undefined rates, bootstrap, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from kdfair_cli.metrics.group import bootstrap, encode_groups, group_fairness, percentile_ci
from tests._metrics_helpers import error_line, logits_for, run, write_run


def _random_task(seed: int, n: int, c: int, g: int):
    rng = np.random.default_rng(seed)
    groups = np.array([f"g{i}" for i in range(g)])[rng.integers(0, g, n)]
    label = rng.integers(0, c, n)
    # group-dependent accuracy so that the differences are far from 0
    codes = np.searchsorted(np.unique(groups), groups)
    hit = rng.random(n) < 0.5 + 0.4 * codes / g
    pred = np.where(hit, label, rng.integers(0, c, n))
    return label, pred, groups


@pytest.mark.parametrize("seed, g", [(0, 2), (1, 5), (2, 9)])
@pytest.mark.parametrize("positive", [0, 1])
def test_binary_matches_fairlearn(seed, g, positive):
    label, pred, groups = _random_task(seed, 4000, 2, g)
    codes, names = encode_groups(groups)
    res = group_fairness(label, pred, codes, names, 2, positive_class=positive)
    y, yhat = (label == positive).astype(int), (pred == positive).astype(int)
    assert res.dpd == pytest.approx(demographic_parity_difference(y, yhat, sensitive_features=groups))
    assert res.eod == pytest.approx(equalized_odds_difference(y, yhat, sensitive_features=groups))
    mean = group_fairness(label, pred, codes, names, 2, positive_class=positive, eod_agg="mean")
    assert mean.eod == pytest.approx(
        equalized_odds_difference(y, yhat, sensitive_features=groups, agg="mean"))
    assert res.dpd > 0.01 and res.eod > 0.01


def test_multiclass_is_one_vs_rest_average_of_fairlearn():
    label, pred, groups = _random_task(5, 6000, 4, 6)
    codes, names = encode_groups(groups)
    res = group_fairness(label, pred, codes, names, 4)
    dpd_c = [demographic_parity_difference(label == k, pred == k, sensitive_features=groups)
             for k in range(4)]
    eod_c = [equalized_odds_difference(label == k, pred == k, sensitive_features=groups)
             for k in range(4)]
    assert np.allclose(res.dpd_per_class, dpd_c) and np.allclose(res.eod_per_class, eod_c)
    assert res.dpd == pytest.approx(np.mean(dpd_c)) and res.eod == pytest.approx(np.mean(eod_c))


def test_rates_by_hand_and_undefined_groups_are_nan():
    # group a: labels 1,1,0 preds 1,0,0 -> SR 1/3, TPR 1/2, FPR 0
    # group b: labels 0,0 preds 1,0 -> SR 1/2, TPR undefined (no positives), FPR 1/2
    # group c (from metadata): no samples -> everything undefined
    label = np.array([1, 1, 0, 0, 0])
    pred = np.array([1, 0, 0, 1, 0])
    codes = np.array([0, 0, 0, 1, 1])
    res = group_fairness(label, pred, codes, ["a", "b", "c"], 2, positive_class=1)
    assert np.allclose(res.selection_rate[:2, 1], [1 / 3, 1 / 2])
    assert res.tpr[0, 1] == 0.5 and np.isnan(res.tpr[1, 1]) and np.isnan(res.tpr[2, 1])
    assert res.fpr[0, 1] == 0 and res.fpr[1, 1] == 0.5
    assert res.dpd == pytest.approx(1 / 6)
    assert np.isnan(res.tpr_diff)  # only one group with positives: no difference to take
    assert np.isnan(res.eod)
    assert res.fpr_diff == pytest.approx(0.5)
    text = " ".join(res.warnings)
    assert "TPR undefined (no positives)" in text and "selection rate undefined" in text


def test_encode_groups_uses_metadata_numbering():
    codes, names = encode_groups(np.array([2, 0, 2]), ["red", "green", "blue"])
    assert codes.tolist() == [2, 0, 2] and names == ["red", "green", "blue"]
    codes, names = encode_groups(np.array(["m", "f", "m"]))
    assert codes.tolist() == [1, 0, 1] and names == ["f", "m"]


def test_bootstrap_is_seeded_and_matches_row_resampling():
    label, pred, groups = _random_task(3, 3000, 3, 4)
    codes, names = encode_groups(groups)
    classes = np.arange(3)
    a = bootstrap(label, pred, codes, 4, 3, classes, n_boot=400, seed=11)
    b = bootstrap(label, pred, codes, 4, 3, classes, n_boot=400, seed=11)
    assert np.array_equal(a["dpd"], b["dpd"])
    rng = np.random.default_rng(0)
    rows = [group_fairness(label[i], pred[i], codes[i], names, 3)
            for i in (rng.integers(0, 3000, 3000) for _ in range(400))]
    naive = np.array([r.dpd for r in rows])
    assert a["dpd"].mean() == pytest.approx(naive.mean(), abs=0.004)
    assert a["dpd"].std() == pytest.approx(naive.std(), rel=0.2)
    lo, hi = percentile_ci(a["eod"], 0.9)
    assert lo < np.median(a["eod"]) < hi


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(4)
    n = 800
    label = rng.integers(0, 3, n)
    color = rng.integers(0, 4, n)
    meta = {"split": "test", "attributes": {"color": ["red", "green", "blue", "pink"]}}
    paths = [write_run(tmp_path / f"s{i}.parquet", label, logits_for(label, 3, 0.8, rng),
                       attrs={"color": color, "texture": rng.integers(0, 2, n)}, meta=meta)
             for i in range(2)]
    return tmp_path, paths


def test_cli_json_fractions_metadata_names_and_seeds(files):
    tmp, paths = files
    result = run("group-fairness", *paths, "--json", "--bootstrap", "50", "-o", tmp / "g.csv")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"color", "texture"}  # default: every attr_* column
    color = doc["color"]
    assert 0 <= color["dpd"] < 1 and 0 <= color["eod"] < 1
    assert color["dpd"] == pytest.approx(np.mean([f["dpd"] for f in color["files"]]))
    assert color["dpd_std"] == pytest.approx(np.std([f["dpd"] for f in color["files"]], ddof=1))
    assert [g["name"] for g in color["files"][0]["groups"]] == ["red", "green", "blue", "pink"]
    assert len(color["ci"]["dpd"]) == 2 and color["task"] == "multiclass"
    table = pd.read_csv(tmp / "g.csv")
    assert {"attribute", "group_name", "class", "tpr", "fpr", "selection_rate"} <= set(table.columns)


def test_cli_byo_csv_binary(tmp_path):
    path = tmp_path / "byo.csv"
    label, pred, groups = _random_task(9, 500, 2, 3)
    pd.DataFrame({"label": label, "pred": pred, "attr_sex": groups}).to_csv(path, index=False)
    result = run("group-fairness", path, "--attribute", "sex", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["sex"]
    ref = demographic_parity_difference(label, pred, sensitive_features=groups)
    assert doc["dpd"] == pytest.approx(ref) and doc["positive_class"] == 1
    assert f"{100 * ref:.2f}" in result.stderr  # the human table shows percent


@pytest.mark.parametrize("args, message", [
    (["--attribute", "age"], "unknown attribute 'age'"),
    (["--bootstrap", "-1"], "--bootstrap must be >= 0"),
])
def test_cli_errors(files, args, message):
    _, paths = files
    result = run("group-fairness", paths[0], *args)
    assert result.exit_code == 2 and message in error_line(result)
    assert error_line(result).startswith("kdfair: error: ")


def test_cli_missing_label_column(tmp_path):
    path = tmp_path / "nolabel.csv"
    pd.DataFrame({"pred": [0, 1], "attr_a": [0, 1]}).to_csv(path, index=False)
    result = run("group-fairness", path)
    assert result.exit_code == 2 and "missing column 'label'" in error_line(result)
