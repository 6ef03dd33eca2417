"""compare-classes: Welch vs scipy and by hand, exact McNemar and Holm/BH by hand, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdfair_cli.metrics.class_bias import (compare_classes, disagreement, mcnemar_per_class,
                                           welch_per_class)
from kdfair_cli.metrics.multiple_testing import adjust_pvalues
from tests._metrics_helpers import error_line, logits_for, run, write_run


def test_holm_hand_worked():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*.005=.02, 3*.01=.03, 2*.03=.06, max(.06, 1*.04)=.06
    got = adjust_pvalues(np.array([0.01, 0.04, 0.03, 0.005]), "holm")
    assert np.allclose(got, [0.03, 0.06, 0.06, 0.02])


def test_bh_hand_worked():
    # m=3: .02*3/1=.06, .021*3/2=.0315, .5*3/3=.5 -> running min from the top: .0315, .0315, .5
    got = adjust_pvalues(np.array([0.5, 0.02, 0.021]), "bh")
    assert np.allclose(got, [0.5, 0.0315, 0.0315])


def test_adjust_skips_nan_and_clips():
    got = adjust_pvalues(np.array([0.4, np.nan, 0.3]), "holm")
    assert np.isnan(got[1]) and np.allclose(got[[0, 2]], [0.6, 0.6])
    assert adjust_pvalues(np.array([0.9, 0.8]), "holm").max() == 1.0
    assert np.allclose(adjust_pvalues(np.array([0.9, 0.01]), "none"), [0.9, 0.01])


def test_mcnemar_hand_worked():
    # class 0: A-only right 1, B-only right 7 -> p = 2 * (C(8,0) + C(8,1)) / 2^8 = 18/256
    # class 1: A-only right 5, B-only 0 -> p = 2 / 2^5; class 2: identical -> p = 1
    label = np.array([0] * 10 + [1] * 6 + [2] * 3)
    pred_a = np.array([0, 1, 1, 1, 1, 1, 1, 1, 0, 0] + [1] * 5 + [0] + [2, 0, 0])
    pred_b = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0] + [0] * 5 + [0] + [2, 0, 0])
    a_only, b_only, p, note = mcnemar_per_class(label, pred_a, pred_b, 4)
    assert a_only.tolist() == [1, 5, 0, 0] and b_only.tolist() == [7, 0, 0, 0]
    assert p[0] == pytest.approx(18 / 256) and p[1] == pytest.approx(2 / 32)
    assert p[2] == 1.0 and note[2] == "identical correctness"
    assert np.isnan(p[3]) and note[3] == "absent"


def test_welch_matches_scipy_and_hand_formula():
    rng = np.random.default_rng(1)
    n, c = 3000, 6
    label = rng.integers(0, c, n)
    runs_a = [logits_for(label, c, 0.8, rng).argmax(1) for _ in range(5)]
    runs_b = [logits_for(label, c, 0.7, rng).argmax(1) for _ in range(4)]
    res = compare_classes(label, runs_a, runs_b, c, normalize="ratio")

    def normalised(pred):  # independent: Python loop over classes with boolean masks
        overall = np.mean(pred == label)
        return [np.mean(pred[label == k] == k) / overall for k in range(c)]

    xa = np.array([normalised(p) for p in runs_a])
    xb = np.array([normalised(p) for p in runs_b])
    for k in range(c):
        ref = stats.ttest_ind(xa[:, k], xb[:, k], equal_var=False)
        assert res.statistic[k] == pytest.approx(ref.statistic)
        assert res.p_value[k] == pytest.approx(ref.pvalue)
        ma, mb, va, vb = xa[:, k].mean(), xb[:, k].mean(), xa[:, k].var(ddof=1), xb[:, k].var(ddof=1)
        assert res.statistic[k] == pytest.approx((ma - mb) / np.sqrt(va / 5 + vb / 4))
    assert res.test == "welch"


def test_normalize_difference_and_none():
    label = np.array([0, 0, 1, 1])
    a = [np.array([0, 0, 1, 0]), np.array([0, 1, 1, 1])]
    b = [np.array([0, 0, 0, 0]), np.array([1, 0, 1, 1])]
    diff = compare_classes(label, a, b, 2, normalize="difference")
    # A run 0: class acc [1, .5], overall .75 -> [.25, -.25]
    assert np.allclose(diff.norm_a[0], [0.25, -0.25])
    raw = compare_classes(label, a, b, 2, normalize="none")
    assert np.allclose(raw.norm_b[1], [0.5, 1.0])


def test_welch_degenerate_cases():
    xa = np.array([[0.9, 0.5, np.nan], [0.9, 0.5, np.nan]])
    xb = np.array([[0.9, 0.7, 0.1], [0.9, 0.7, 0.2]])
    t, p, note = welch_per_class(xa, xb)
    assert (t[0], p[0], note[0]) == (0.0, 1.0, "zero variance")
    assert (t[1], p[1], note[1]) == (-np.inf, 0.0, "zero variance")
    assert np.isnan(p[2]) and note[2] == "absent"


def test_disagreement_by_hand():
    label = np.array([0, 0, 1, 1, 2])
    a = np.array([0, 1, 1, 2, 2])
    b = np.array([1, 1, 1, 0, 2])
    rate, matrix = disagreement(label, a, b, 3)
    assert np.allclose(rate, [0.5, 0.5, 0.0])
    expected = np.zeros((3, 3), dtype=int)
    expected[0, 1] = 1
    expected[2, 0] = 1
    assert np.array_equal(matrix, expected)


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(3)
    n, c = 600, 5
    label = rng.integers(0, c, n)
    label[label == 4] = 3  # class 4 absent from the split
    meta = {"split": "test", "class_names": ["a", "b", "c", "d", "e"]}
    paths = {}
    for name, acc in (("a0", 0.9), ("a1", 0.88), ("a2", 0.91), ("b0", 0.7), ("b1", 0.72),
                      ("b2", 0.69)):
        order = rng.permutation(n)  # row order must not matter: files are joined on sample_id
        logits = logits_for(label, c, acc, rng)
        paths[name] = write_run(tmp_path / f"{name}.parquet", label[order], logits[order],
                                meta=meta, sample_id=order)
    return tmp_path, paths


def test_cli_welch_json_and_outputs(runs):
    tmp, p = runs
    result = run("compare-classes", "-a", p["a0"], "-a", p["a1"], "-a", p["a2"], "-b", p["b0"],
                 "-b", p["b1"], "-b", p["b2"], "--json", "-o", tmp / "c.csv",
                 "--disagreement", tmp / "d.parquet", "--plot", tmp / "d.png",
                 "--correction", "holm")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["test"] == "welch" and doc["n_classes"] == 5 and doc["correction"] == "holm"
    assert doc["n_significant"] == sum(r["significant"] for r in doc["classes"])
    assert {"class", "p_value", "significant"} <= set(doc["classes"][0])
    assert doc["classes"][4]["note"] == "absent" and doc["classes"][4]["p_value"] is None
    table = pd.read_csv(tmp / "c.csv")
    assert list(table["class_name"]) == ["a", "b", "c", "d", "e"]
    assert (tmp / "d.png").read_bytes()[:4] == b"\x89PNG"
    dis = pd.read_parquet(tmp / "d.parquet")
    assert set(dis.columns) == {"pred_a", "pred_b", "count"} and (dis.pred_a != dis.pred_b).all()
    assert "classes significantly different" in result.stderr.strip().splitlines()[-1]


def test_cli_mcnemar(runs):
    _, p = runs
    result = run("compare-classes", "-a", p["a0"], "-b", p["b0"], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test"] == "mcnemar"


def test_cli_identical_predictions_mcnemar_p_is_one(runs):
    _, p = runs
    doc = json.loads(run("compare-classes", "-a", p["a0"], "-b", p["a0"], "--json").stdout)
    assert [r["p_value"] for r in doc["classes"][:4]] == [1.0] * 4 and doc["n_significant"] == 0


@pytest.mark.parametrize("case, message", [
    ("uneven", "give one file a side"),
    ("ids", "hold different sample sets"),
    ("classes", "has 3 classes but"),
    ("labels", "disagree on the true label"),
    ("split", "is from split 'val'"),
])
def test_cli_refuses_mismatched_files(runs, case, message):
    tmp, p = runs
    rng = np.random.default_rng(0)
    bad = tmp / "bad.parquet"
    if case == "ids":
        write_run(bad, np.zeros(10, int), logits_for(np.zeros(10, int), 5, 0.5, rng))
    elif case == "classes":
        write_run(bad, np.zeros(600, int), logits_for(np.zeros(600, int), 3, 0.5, rng))
    elif case == "labels":
        write_run(bad, np.zeros(600, int), logits_for(np.zeros(600, int), 5, 0.5, rng))
    elif case == "split":
        label = np.zeros(600, int)
        write_run(bad, label, logits_for(label, 5, 0.5, rng), meta={"split": "val"})
    args = ["-a", p["a0"], "-a", p["a1"], "-b", p["b0"]] if case == "uneven" else \
        ["-a", p["a0"], "-b", bad]
    result = run("compare-classes", *args)
    assert result.exit_code == 2
    assert error_line(result).startswith("kdfair: error: ") and message in error_line(result)


def test_cli_quoted_glob_patterns(runs):
    tmp, _ = runs
    result = run("compare-classes", "-a", f"{tmp}/a*.parquet", "-b", f"{tmp}/b*.parquet", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["test"] == "welch" and len(doc["files_a"]) == 3 and len(doc["files_b"]) == 3
    result = run("compare-classes", "-a", f"{tmp}/zz*.parquet", "-b", f"{tmp}/b0.parquet")
    assert result.exit_code == 2 and "no file matches" in error_line(result)
