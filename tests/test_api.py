"""kdfair_cli.api: torch-free import, to_dict() equal to the CLI's --json, DataFrame input, io.align."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from kdfair_cli import api
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_same_source, check_schema, rows_for_ids, source_of
from kdfair_cli.io.pairs_file import write_pairs
from kdfair_cli.io.tables import with_meta
from tests._metrics_helpers import logits_for, run, write_run

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return set(out.stdout.split())


def test_import_api_loads_no_torch_and_no_cli():
    mods = _modules_after("import kdfair_cli.api")
    assert "torch" not in mods
    assert not any(m.startswith("kdfair_cli.cli") for m in mods)


def test_sweep_imports_nothing_from_cli():
    for path in (ROOT / "kdfair_cli" / "sweep").glob("*.py"):
        assert "kdfair_cli.cli" not in path.read_text(), path
    mods = _modules_after("import kdfair_cli.sweep.runner, kdfair_cli.classifier.report, "
                          "kdfair_cli.classifier.analyses")
    assert not any(m.startswith("kdfair_cli.cli") for m in mods)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("api")
    rng = np.random.default_rng(3)
    n, c = 400, 4
    label = rng.integers(0, c, n)
    attrs = {"color": rng.integers(0, 3, n), "shade": np.array(["dark", "light"])[rng.integers(0, 2, n)]}
    meta = {"split": "test", "dataset": "fake", "dataset_fingerprint": "fp"}
    out = {f"{m}{s}": write_run(tmp / f"{m}{s}.parquet", label, logits_for(label, c, acc, rng), attrs, meta)
           for m, acc in (("a", 0.6), ("b", 0.85)) for s in range(2)}
    a = rng.integers(0, n, 150)
    b = (a + 1 + rng.integers(0, n - 1, 150)) % n
    out["pairs"] = tmp / "pairs.parquet"
    write_pairs(out["pairs"], a, b, rng.random(150) + 0.1, {"split": "test", "source": "knn"})
    return out


def _cli_json(*args) -> object:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_group_fairness_to_dict_is_cli_json(files):
    res = api.group_fairness([str(files["a0"]), str(files["a1"])], n_boot=30, seed=4)
    cli = _cli_json("group-fairness", files["a0"], files["a1"], "--bootstrap", 30, "--seed", 4)
    assert res.to_dict() == cli
    assert set(cli) == {"color", "shade"} and cli["color"]["n_files"] == 2


def test_compare_classes_to_dict_is_cli_json(files):
    for a, b in (([files["a0"]], [files["b0"]]), ([files["a0"], files["a1"]], [files["b0"], files["b1"]])):
        res = api.compare_classes([str(p) for p in a], [str(p) for p in b], correction="holm")
        args = [x for p in a for x in ("-a", p)] + [x for p in b for x in ("-b", p)]
        assert res.to_dict() == _cli_json("compare-classes", *args, "--correction", "holm")


def test_individual_fairness_to_dict_is_cli_json(files):
    res = api.individual_fairness([str(files["a0"]), str(files["b0"])], str(files["pairs"]), temperature=2)
    cli = _cli_json("individual-fairness", files["a0"], files["b0"], "--pairs", files["pairs"],
                    "--temperature", 2)
    assert res.to_dict() == cli and cli["n_pairs"] == 150


def test_dataframe_and_dict_inputs_give_the_file_numbers(files):
    df = pd.read_parquet(files["a0"])
    from_file = api.group_fairness(str(files["a0"]), ["color"])["color"].to_dict()
    from_frame = api.group_fairness(df, ["color"])["color"].to_dict()
    assert from_frame["files"][0]["path"] == "predictions[0]"
    for d in (from_file, from_frame):
        d.pop("files")
    assert from_frame == from_file
    logits = np.stack(df["logits"].to_numpy())
    columns = {"sample_id": df["sample_id"].to_numpy(), "label": df["label"].to_numpy(),
               "logits": logits, "attr_color": df["attr_color"].to_numpy()}
    pairs = pd.read_parquet(files["pairs"])
    assert (api.individual_fairness(columns, pairs).results[0].score
            == pytest.approx(api.individual_fairness(str(files["a0"]), str(files["pairs"])).results[0].score))
    # hand-worked: one group perfect, the other always wrong -> binary DPD/EOD by hand
    hand = api.group_fairness({"label": [1, 0, 1, 0], "pred": [1, 0, 0, 1], "attr_g": ["x", "x", "y", "y"]})
    assert hand["g"].summary["dpd"] == 0.0 and hand["g"].summary["eod"] == 1.0


def test_dataframe_errors_name_the_column():
    with pytest.raises(KdfairError, match="missing column 'label'"):
        api.read_predictions(pd.DataFrame({"pred": [0, 1]}), name="mine")


def test_rows_for_ids_joins_and_names_the_missing():
    ids = np.array([30, 10, 20])
    assert rows_for_ids(ids, np.array([20, 30, 20]), have="H", want="W").tolist() == [2, 0, 2]
    with pytest.raises(KdfairError, match=r"W: 2 of 3 sample ids \(e.g. 5\) are not sample ids of H"):
        rows_for_ids(ids, np.array([5, 10, 7]), have="H", want="W")


def test_check_same_source_and_schema():
    ref = source_of({"dataset": {"name": "tf", "fingerprint": "abc"}, "split": "test"}, 10)
    check_same_source("r", ref, "o", source_of({"split": "test"}, 10))  # missing keys not compared
    with pytest.raises(KdfairError, match="o is from split 'val' but r is from split 'test'"):
        check_same_source("r", ref, "o", source_of({"split": "val"}))
    with pytest.raises(KdfairError, match="o has 3 classes but r has 10"):
        check_same_source("r", ref, "o", source_of({}, 3))
    with pytest.raises(KdfairError, match="dataset fingerprint 'xyz'"):
        check_same_source("r", ref, "o", source_of({"dataset_fingerprint": "xyz"}))
    check_schema("f", {"schema": "kdfair.predictions/1"}, "kdfair.predictions/1")
    check_schema("f", {}, "kdfair.predictions/1")
    with pytest.raises(KdfairError, match="newer than this kdfair reads"):
        check_schema("f", {"schema": "kdfair.predictions/2"}, "kdfair.predictions/1")
    with pytest.raises(KdfairError, match="is not a kdfair.pairs file"):
        check_schema("f", {"schema": "kdfair.predictions/1"}, "kdfair.pairs/1")


def test_cli_refuses_a_newer_schema(tmp_path):
    path = write_run(tmp_path / "p.parquet", np.array([0, 1]), np.eye(2, dtype=np.float32),
                     {"g": np.array([0, 1])})
    table = pq.read_table(path)
    pq.write_table(with_meta(table, {"schema": "kdfair.predictions/9"}), path)
    result = run("group-fairness", path)
    assert result.exit_code == 2 and "newer than this kdfair reads" in result.output
