"""Noise floors and --versus through the API and `group-fairness`/`individual-fairness`:
the JSON keys against direct calls of metrics.null and metrics.paired, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kdfair_cli import api
from kdfair_cli.metrics.group import encode_groups, group_fairness
from kdfair_cli.metrics.null import null_draws, null_test
from kdfair_cli.metrics.paired import combine_seeds, paired_group, welch_seeds
from tests._metrics_helpers import error_line, logits_for, run, write_run

N, C = 500, 3


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("floor")
    rng = np.random.default_rng(11)
    label = rng.integers(0, C, N)
    attrs = {"color": rng.integers(0, 3, N)}
    meta = {"split": "test", "dataset": "fake", "dataset_fingerprint": "fp"}
    out = {f"{m}{s}": write_run(tmp / f"{m}{s}.parquet", label, logits_for(label, C, acc, rng), attrs, meta)
           for m, acc in (("a", 0.6), ("b", 0.9)) for s in range(3)}
    # the same samples in another row order
    order = rng.permutation(N)
    out["b0_shuffled"] = write_run(tmp / "b0s.parquet", label[order], logits_for(label, C, 0.9, rng)[order],
                                   {"color": attrs["color"][order]}, meta, sample_id=np.arange(N)[order])
    out["val"] = write_run(tmp / "val.parquet", label, logits_for(label, C, 0.9, rng), attrs,
                           {**meta, "split": "val"})
    out["fewer"] = write_run(tmp / "fewer.parquet", label[:-5], logits_for(label[:-5], C, 0.9, rng),
                             {"color": attrs["color"][:-5]}, meta)
    out["other_ids"] = write_run(tmp / "other_ids.parquet", label, logits_for(label, C, 0.9, rng), attrs,
                                 meta, sample_id=np.arange(N) + 7)
    out["more_classes"] = write_run(tmp / "more_classes.parquet", label, logits_for(label, C + 1, 0.9, rng),
                                    attrs, meta)
    return out


def _json(*args) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _arrays(path: Path):
    p = api.read_predictions(str(path), with_logits=False)
    codes, groups = encode_groups(p.attrs["color"], p.attribute_values("color"))
    return p, codes, groups


def test_floor_keys_match_direct_null_calls(files):
    doc = _json("group-fairness", files["a0"], files["a1"], "--null", 300, "--seed", 5)["color"]
    draws = []
    for i, path in enumerate((files["a0"], files["a1"])):
        p, codes, groups = _arrays(path)
        res = group_fairness(p.label, p.pred, codes, groups, C)
        d = null_draws(res.cells, res.classes, n_draws=300, seed=5 + i)
        draws.append(d)
        t = null_test(res.eod, d.eod)
        assert doc["files"][i]["eod_null_mean"] == pytest.approx(t.null_mean)
        assert doc["files"][i]["eod_p"] == pytest.approx(t.p)
    mean = null_test(doc["dpd"], (draws[0].dpd + draws[1].dpd) / 2)
    assert (doc["dpd_null_mean"], doc["dpd_null_q95"], doc["dpd_p"]) == pytest.approx(
        (mean.null_mean, mean.null_q95, mean.p))
    assert doc["null_draws"] == 300 and doc["null_permutation"] == "within-label"
    p, codes, groups = _arrays(files["a0"])
    res = group_fairness(p.label, p.pred, codes, groups, C)
    t = null_test(res.eod_per_class, draws[0].eod_per_class)
    assert [e["eod_p"] for e in doc["per_class"]] == pytest.approx(list(t.p))
    # existing keys first, in their old order; the new ones appended
    keys = list(doc)
    assert keys.index("warnings") < keys.index("dpd_null_mean") < keys.index("eod_p")


def test_unconditional_permutation_and_off(files):
    doc = _json("group-fairness", files["a0"], "--null", 200, "--null-permutation", "unconditional")["color"]
    p, codes, groups = _arrays(files["a0"])
    res = group_fairness(p.label, p.pred, codes, groups, C)
    d = null_draws(res.cells, res.classes, n_draws=200, seed=0, stratify="none")
    assert doc["dpd_null_mean"] == pytest.approx(float(np.nanmean(d.dpd)))
    assert doc["null_permutation"] == "unconditional"
    off = _json("group-fairness", files["a0"], "--null", 0)["color"]
    assert "dpd_p" not in off and "null_draws" not in off


def test_null_is_seeded_and_deterministic(files):
    one = api.group_fairness(str(files["a0"]), null=200, seed=3).to_dict()
    assert one == api.group_fairness(str(files["a0"]), null=200, seed=3).to_dict()
    assert one != api.group_fairness(str(files["a0"]), null=200, seed=4).to_dict()


def test_versus_one_a_side_matches_paired_group(files):
    res = api.group_fairness(str(files["a0"]), versus=str(files["b0_shuffled"]), null=200, n_boot=150, seed=2)
    doc = res.to_dict()["color"]
    assert doc == _json("group-fairness", files["a0"], "--versus", files["b0_shuffled"], "--null", 200,
                        "--bootstrap", 150, "--seed", 2)["color"]
    a, codes, groups = _arrays(files["a0"])
    b, _, _ = _arrays(files["b0_shuffled"])
    pred_b = b.pred[np.argsort(b.sample_id)]  # rows of b in sample-id (= a's) order
    ref = paired_group(a.label, a.pred, pred_b, codes, len(groups), C, np.arange(C), n_perm=200,
                       n_boot=150, seed=2)
    for key in ("dpd", "eod"):
        assert doc[f"delta_{key}"] == pytest.approx(ref[key].delta)
        assert doc[f"delta_{key}_p"] == pytest.approx(ref[key].p)
        assert doc[f"delta_{key}_ci"] == pytest.approx(list(ref[key].ci))
    assert doc["delta_test"] == "paired"
    # B is much more accurate: A's EOD is larger, and the test says so
    assert doc["delta_eod"] > 0 and doc["delta_eod_p"] < 0.05


def test_versus_several_seeds_combined_and_welch(files):
    a = [str(files[f"a{i}"]) for i in range(2)]
    b = [str(files[f"b{i}"]) for i in range(2)]
    doc = api.group_fairness(a, versus=b, null=100, n_boot=100, seed=1).to_dict()["color"]
    per_seed = []
    for i in range(2):
        pa, codes, groups = _arrays(files[f"a{i}"])
        pb, _, _ = _arrays(files[f"b{i}"])
        per_seed.append(paired_group(pa.label, pa.pred, pb.pred, codes, len(groups), C, np.arange(C),
                                     n_perm=100, n_boot=100, seed=1 + i)["eod"])
    comb = combine_seeds(per_seed)
    assert doc["delta_eod"] == pytest.approx(comb.delta) and doc["delta_eod_p"] == pytest.approx(comb.p)
    w = welch_seeds([r.a for r in per_seed], [r.b for r in per_seed])
    assert doc["delta_eod_welch_p"] == pytest.approx(w.p)
    # 3 seeds against 2: Welch only, no interval
    doc = api.group_fairness([str(files[f"a{i}"]) for i in range(3)], versus=b, null=50).to_dict()["color"]
    assert doc["delta_test"] == "welch" and doc["delta_eod_ci"] is None
    ea = [f["eod"] for f in doc["files"]]
    eb = [api.group_fairness(p, null=0).summary()["color"]["eod"] for p in b]
    assert doc["delta_eod_p"] == pytest.approx(welch_seeds(ea, eb).p)


def test_within_floor_warning(files):
    result = run("group-fairness", files["b0"], "--null", 300)
    assert result.exit_code == 0
    res = api.group_fairness(str(files["b0"]), null=300)
    lines = res["color"].within_floor()
    for line in lines:
        assert "is within the noise floor (null mean" in line and "no evidence of disparity" in line
        assert line in " ".join(result.stderr.split())
    p = [res.to_dict()["color"][f"{k}_p"] for k in ("dpd", "eod")]
    assert len(lines) == sum(x > 0.05 for x in p)


@pytest.mark.parametrize("args, message", [
    (["--null", "-5"], "--null must be >= 0"),
    (["--versus", "val"], "split 'val'"),
    (["--versus", "fewer"], "has 495 samples"),
    (["--versus", "other_ids"], "are not sample ids of"),
    (["--versus", "b0", "--versus", "b1"], "1 file(s) against 2"),
])
def test_bad_input_is_one_line(files, args, message):
    args = [files.get(a, a) if isinstance(a, str) else a for a in args]
    result = run("group-fairness", files["a0"], *args)
    err = error_line(result)
    assert result.exit_code == 2 and message in err, err
    assert err.startswith("kdfair: error: ") and err.count("\n") == 1


@pytest.fixture(scope="module")
def pairs(files, tmp_path_factory) -> Path:
    from kdfair_cli.io.pairs_file import write_pairs

    rng = np.random.default_rng(5)
    a = rng.integers(0, N, 300)
    b = (a + 1 + rng.integers(0, N - 1, 300)) % N
    path = tmp_path_factory.mktemp("pairs") / "pairs.parquet"
    dist = rng.random(300) + 0.1
    dist[:4] = 0.0  # excluded pairs must stay aligned between the two models
    write_pairs(path, a, b, dist, {"split": "test", "source": "knn"})
    return path


def _pair_ratios(pred_path: Path, pairs_path: Path) -> np.ndarray:
    from kdfair_cli.metrics.individual import softmax

    p = api.read_predictions(str(pred_path))
    ps = api.read_pair_set(str(pairs_path))
    f = softmax(p.logits)
    ok = ps.distance > 0
    a, b = ps.sample_id_a[ok], ps.sample_id_b[ok]  # sample id == row in these files
    return np.abs(f[a] - f[b]).sum(axis=1) / 2 / ps.distance[ok]


def test_individual_interval_and_versus_match_direct_calls(files, pairs):
    from kdfair_cli.metrics.individual import softmax
    from kdfair_cli.metrics.paired import mean_interval, paired_individual

    doc = _json("individual-fairness", files["a0"], "--pairs", pairs, "--versus", files["b0"],
                "--bootstrap", 200, "--permutations", 300, "--seed", 7)
    assert doc == api.individual_fairness(str(files["a0"]), str(pairs), versus=str(files["b0"]),
                                          n_boot=200, n_perm=300, seed=7).to_dict()
    ra, rb = _pair_ratios(files["a0"], pairs), _pair_ratios(files["b0"], pairs)
    iv = mean_interval(ra, n_boot=200, seed=7)
    assert doc["score"] == pytest.approx(ra.mean())
    assert [doc["files"][0]["ci_low"], doc["files"][0]["ci_high"]] == pytest.approx(list(iv.ci))
    assert doc["score_ci"] == pytest.approx(list(iv.ci))
    # The per-sample swap: each pair's ratio with one end's output taken from the other model.
    fa, fb = (softmax(api.read_predictions(str(files[k])).logits) for k in ("a0", "b0"))
    ps = api.read_pair_set(str(pairs))
    ok = ps.distance > 0
    a, b, d = ps.sample_id_a[ok], ps.sample_id_b[ok], ps.distance[ok]
    tv = lambda x, y: np.abs(x - y).sum(axis=1) / 2  # noqa: E731
    mixed = (tv(fb[a], fa[b]) - tv(fa[a], fb[b])) / d
    ends = np.unique(np.concatenate([a, b]), return_inverse=True)[1].reshape(2, -1)
    ref = paired_individual(ra, rb, mixed=mixed, pair_samples=(ends[0], ends[1]), n_perm=300,
                            n_boot=200, seed=7)
    assert doc["delta_score"] == pytest.approx(ra.mean() - rb.mean())
    assert doc["delta_score_p"] == pytest.approx(ref.p)
    assert doc["delta_score_ci"] == pytest.approx(list(ref.ci))
    assert doc["delta_test"] == "paired"


def test_individual_bootstrap_off_and_bad_input(files, pairs):
    doc = _json("individual-fairness", files["a0"], "--pairs", pairs, "--bootstrap", 0)
    assert "score_ci" not in doc and "ci_low" not in doc["files"][0]
    for args, message in ((["--bootstrap", "-1"], "--bootstrap must be >= 0"),
                          (["--versus", files["val"]], "split 'val'"),
                          (["--versus", files["other_ids"]], "are not sample ids of"),
                          (["--versus", files["more_classes"]], "compares outputs over the same classes")):
        result = run("individual-fairness", files["a0"], "--pairs", pairs, *args)
        err = error_line(result)
        assert result.exit_code == 2 and message in err and err.count("\n") == 1, err


def test_excess_keys_are_value_minus_floor_per_file_and_mean(files):
    from kdfair_cli.metrics.excess import floor_from_cells

    doc = _json("group-fairness", files["a0"], files["a1"], "--null", 0)["color"]
    ex = []
    for i, path in enumerate((files["a0"], files["a1"])):
        p, codes, groups = _arrays(path)
        res = group_fairness(p.label, p.pred, codes, groups, C)
        f = floor_from_cells(res.cells, res.classes)
        row = doc["files"][i]
        assert row["eod_floor"] == pytest.approx(f["eod"][0])
        assert row["eod_excess"] == pytest.approx(res.eod - f["eod"][0])
        assert row["dpd_excess"] == pytest.approx(res.dpd - f["dpd"][0])
        ex.append(row["eod_excess"])
    assert doc["eod_excess"] == pytest.approx(np.mean(ex))
    assert doc["eod_excess_std"] == pytest.approx(np.std(ex, ddof=1))
    unc = _json("group-fairness", files["a0"], "--null-permutation", "unconditional", "--null", 50)["color"]
    p, codes, groups = _arrays(files["a0"])
    res = group_fairness(p.label, p.pred, codes, groups, C)
    assert unc["dpd_floor"] == pytest.approx(floor_from_cells(res.cells, res.classes, stratify="none")["dpd"][0])


def test_unconditional_null_gives_eod_no_p_and_says_why(files):
    doc = _json("group-fairness", files["a0"], "--null", 100, "--null-permutation", "unconditional")["color"]
    assert doc["eod_p"] is None and "base rates" in doc["eod_p_note"]
    assert doc["files"][0]["eod_p"] is None and doc["per_class"][0]["eod_p"] is None
    assert doc["dpd_p"] is not None and "dpd_p_note" not in doc
    out = run("group-fairness", files["a0"], "--null", 100, "--null-permutation", "unconditional").output
    assert "no EOD p under the unconditional null" in " ".join(out.split())
    within = _json("group-fairness", files["a0"], "--null", 100)["color"]
    assert within["eod_p"] is not None and "eod_p_note" not in within


def test_versus_excess_matches_paired_group_and_leads_the_output(files):
    doc = _json("group-fairness", files["a0"], "--versus", files["b0_shuffled"], "--null", 100,
                "--bootstrap", 120, "--seed", 4)["color"]
    a, codes, groups = _arrays(files["a0"])
    b, _, _ = _arrays(files["b0_shuffled"])
    ref = paired_group(a.label, a.pred, b.pred[np.argsort(b.sample_id)], codes, len(groups), C,
                       np.arange(C), n_perm=100, n_boot=120, seed=4)
    for key in ("dpd", "eod"):
        r = ref[f"excess_{key}"]
        assert doc[f"delta_excess_{key}"] == pytest.approx(r.delta)
        assert doc[f"delta_excess_{key}"] == pytest.approx(doc["files"][0][f"{key}_excess"] - r.b)
        assert doc[f"delta_excess_{key}_p"] == pytest.approx(r.p)
        assert doc[f"delta_excess_{key}_ci"] == pytest.approx(list(r.ci))
    keys = list(doc)
    assert keys.index("delta_excess_dpd") < keys.index("delta_dpd")
    assert "differ also when only the accuracy does" in doc["delta_raw_note"]
    text = " ".join(run("group-fairness", files["a0"], "--versus", files["b0"], "--null", 50,
                        "--bootstrap", 50).output.split())
    assert text.index("excess over each model's floor") < text.index("raw: ΔDPD")
    # several seeds a side, unmatched: Welch over the per-seed excess values
    doc = api.group_fairness([str(files[f"a{i}"]) for i in range(3)],
                             versus=[str(files[f"b{i}"]) for i in range(2)], null=0).to_dict()["color"]
    eb = [api.group_fairness(str(files[f"b{i}"]), null=0).to_dict()["color"]["eod_excess"] for i in range(2)]
    assert doc["delta_excess_eod_p"] == pytest.approx(
        welch_seeds([f["eod_excess"] for f in doc["files"]], eb).p)
