"""individual-fairness and pairs: hand-worked I(f), exact kNN, twins, the CLI, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdfair_cli.data import registry
from kdfair_cli.io.pairs_file import read_pairs, write_pairs
from kdfair_cli.metrics.individual import individual_fairness, softmax
from kdfair_cli.metrics.pairs import knn_pairs, pair_distances, twin_pairs
from tests._metrics_helpers import error_line, run, write_run

# probabilities [.5, .5], [.75, .25], [.25, .75]
LOGITS = np.array([[0.0, 0.0], [np.log(3), 0.0], [0.0, np.log(3)]], dtype=np.float32)


def test_individual_fairness_hand_worked():
    probs = softmax(LOGITS)
    assert np.allclose(probs, [[0.5, 0.5], [0.75, 0.25], [0.25, 0.75]])
    a, b = np.array([0, 0, 1]), np.array([1, 2, 2])
    d = np.array([0.5, 0.25, 0.0])
    tv = individual_fairness(probs, a, b, d, "tv")
    # TV(0,1) = .25 -> .25/.5 = .5; TV(0,2) = .25 -> .25/.25 = 1; (1,2) at d = 0 excluded
    assert (tv.score, tv.median, tv.max, tv.n_pairs, tv.n_zero_distance) == \
        pytest.approx((0.75, 0.75, 1.0, 2, 1))
    assert tv.p95 == pytest.approx(0.5 + 0.95 * 0.5)
    assert individual_fairness(probs, a, b, d, "l1").score == pytest.approx(1.5)
    l2 = np.sqrt(2 * 0.25 ** 2)
    assert individual_fairness(probs, a, b, d, "l2").score == pytest.approx((l2 / 0.5 + l2 / 0.25) / 2)


def test_temperature_flattens_probabilities():
    assert np.allclose(softmax(LOGITS, temperature=1e6), 0.5, atol=1e-5)
    assert np.allclose(softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])  # no overflow


def test_knn_is_exact_and_unique():
    rng = np.random.default_rng(0)
    x = rng.random((300, 7)).astype(np.float32)
    a, b = knn_pairs(x, 4)
    d = np.linalg.norm(x[:, None, :].astype(np.float64) - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :4]
    expected = {tuple(sorted((i, j))) for i in range(300) for j in nn[i]}
    assert set(zip(a.tolist(), b.tolist())) == expected
    assert np.all(a < b) and len(set(zip(a, b))) == a.size


def test_knn_over_several_blocks_stays_exact():
    rng = np.random.default_rng(1)
    x = rng.random((5000, 3)).astype(np.float32)  # several blocks, a short last one
    a, b = knn_pairs(x, 2, block=700)
    sample = rng.choice(5000, 40, replace=False)
    pairs = set(zip(a.tolist(), b.tolist()))
    for i in sample:
        d = np.linalg.norm(x.astype(np.float64) - x[i], axis=1)
        d[i] = np.inf
        for j in np.argsort(d)[:2]:
            assert (min(i, j), max(i, j)) in pairs


def test_pair_distances():
    x = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=np.float32)
    a, b = np.array([0, 0]), np.array([1, 2])
    assert np.allclose(pair_distances(x, a, b, "euclidean"), [2.0, 1.0])
    assert np.allclose(pair_distances(x, a, b, "rms"), [1.0, 0.5])
    assert np.allclose(pair_distances(x, a, b, "unit"), [1.0, 1.0])


def test_twins_differ_only_in_the_attribute():
    pose = np.array([0, 0, 0, 0, 1, 1])
    color = np.array([0, 1, 0, 1, 0, 2])
    texture = np.array([0, 0, 1, 1, 0, 0])
    a, b = twin_pairs(pose, color, [texture])
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1), (2, 3), (4, 5)]
    a, b = twin_pairs(pose, texture, [color])
    assert list(zip(a.tolist(), b.tolist())) == [(0, 2), (1, 3)]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.DATASETS, "fake", "tests._metrics_helpers:open_fake")
    (tmp_path / "data").mkdir()
    return tmp_path


def test_cli_pairs_twins_and_knn(fake):
    result = run("pairs", "--dataset", "fake", "--data", fake / "data", "--source", "twins",
                 "--attribute", "color", "-o", fake / "twins.parquet", "--json")
    assert result.exit_code == 0, result.output
    pairs = read_pairs(fake / "twins.parquet")
    # 2 poses x 2 textures, 3 colours each -> 4 * C(3, 2) = 12 twin pairs
    assert len(pairs) == 12 and pairs.meta["source"] == "twins"
    assert pairs.meta["dataset_fingerprint"] == "fp-fake" and pairs.meta["split"] == "test"
    assert pairs.sample_id_a.min() >= 100  # sample ids, not row numbers
    result = run("pairs", "--dataset", "fake", "--data", fake / "data", "-k", "2",
                 "-o", fake / "knn.parquet")
    assert result.exit_code == 0, result.output
    knn = read_pairs(fake / "knn.parquet")
    assert knn.meta["k"] == 2 and knn.meta["dim"] == 12 and knn.distance.max() <= 1.0


@pytest.mark.parametrize("args, message", [
    (["--source", "twins", "--attribute", "size"], "has no attribute 'size'"),
    (["--source", "twins"], "needs --attribute"),
    (["-k", "50"], "--k must be in [1, 11]"),
])
def test_cli_pairs_errors(fake, args, message):
    result = run("pairs", "--dataset", "fake", "--data", fake / "data", *args, "-o", fake / "p.parquet")
    assert result.exit_code == 2 and message in error_line(result)


@pytest.fixture
def scored(tmp_path):
    label = np.array([0, 1, 1])
    p0 = write_run(tmp_path / "m0.parquet", label, LOGITS, sample_id=np.array([7, 8, 9]))
    p1 = write_run(tmp_path / "m1.parquet", label, LOGITS * 0, sample_id=np.array([7, 8, 9]))
    pairs = tmp_path / "pairs.parquet"
    write_pairs(pairs, np.array([7, 7, 8]), np.array([8, 9, 9]), np.array([0.5, 0.25, 0.0]),
                {"source": "test", "split": "test"})
    return tmp_path, p0, p1, pairs


def test_cli_individual_fairness(scored):
    tmp, p0, p1, pairs = scored
    result = run("individual-fairness", p0, p1, "--pairs", pairs, "--json", "-o", tmp / "i.csv")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [f["score"] for f in doc["files"]] == pytest.approx([0.75, 0.0])
    assert doc["score"] == pytest.approx(0.375) and doc["n_pairs"] == 2
    assert doc["n_zero_distance"] == 1 and "distance 0 excluded" in result.stderr
    assert pd.read_csv(tmp / "i.csv")["score"].tolist() == pytest.approx([0.75, 0.0])


def test_cli_individual_fairness_onehot_for_pred_only_files(scored, tmp_path):
    _, _, _, pairs = scored
    path = tmp_path / "byo.csv"
    pd.DataFrame({"sample_id": [7, 8, 9], "label": [0, 0, 1], "pred": [0, 0, 1]}).to_csv(path, index=False)
    assert run("individual-fairness", path, "--pairs", pairs).exit_code == 2
    result = run("individual-fairness", path, "--pairs", pairs, "--model-output", "onehot", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["score"] == pytest.approx((0 / 0.5 + 1 / 0.25) / 2)


@pytest.mark.parametrize("case, message", [
    ("ids", "are not sample ids of"),
    ("split", "is from split 'test'"),
    ("columns", "missing column 'distance'"),
])
def test_cli_individual_fairness_errors(scored, case, message):
    tmp, p0, _, pairs = scored
    if case == "ids":
        write_pairs(pairs, np.array([7]), np.array([99]), np.array([1.0]), {})
    elif case == "split":
        p0 = write_run(tmp / "val.parquet", np.array([0, 1, 1]), LOGITS,
                       sample_id=np.array([7, 8, 9]), meta={"split": "val"})
    else:
        pd.DataFrame({"sample_id_a": [7], "sample_id_b": [8]}).to_parquet(pairs)
    result = run("individual-fairness", p0, "--pairs", pairs)
    assert result.exit_code == 2 and message in error_line(result)


def test_metrics_and_cli_modules_do_not_import_torch():
    code = ("import sys, kdfair_cli.metrics, kdfair_cli.metrics.class_bias, "
            "kdfair_cli.metrics.group, kdfair_cli.metrics.individual, kdfair_cli.metrics.pairs, "
            "kdfair_cli.metrics.multiple_testing, kdfair_cli.cli.compare_classes, "
            "kdfair_cli.cli.group_fairness, kdfair_cli.cli.individual_fairness, "
            "kdfair_cli.cli.pairs, kdfair_cli.io.predictions; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
