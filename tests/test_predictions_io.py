"""Predictions file: round trip, bring-your-own files, and one clear error per bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.predictions import SCHEMA, read_predictions, write_predictions
from tests._metrics_helpers import error_line, run


@pytest.fixture
def sample(tmp_path):
    rng = np.random.default_rng(0)
    n, c = 50, 4
    logits = rng.normal(size=(n, c)).astype(np.float32)
    label = rng.integers(0, c, n)
    attrs = {"color": rng.integers(0, 3, n), "group": np.array(["x", "y"])[rng.integers(0, 2, n)]}
    path = tmp_path / "p.parquet"
    write_predictions(path, sample_id=np.arange(10, 10 + n), label=label, logits=logits,
                      attrs=attrs, meta={"split": "test", "class_names": list("abcd")},
                      features=rng.random((n, 3)).astype(np.float32))
    return path, label, logits, attrs


def test_round_trip(sample):
    path, label, logits, attrs = sample
    p = read_predictions(path)
    assert p.sample_id.tolist() == list(range(10, 60))
    assert np.array_equal(p.label, label)
    assert np.array_equal(p.pred, logits.argmax(1))
    assert p.logits.dtype == np.float32 and np.array_equal(p.logits, logits)
    assert p.num_classes == 4 and p.class_names == list("abcd")
    assert np.array_equal(p.attrs["color"], attrs["color"])
    assert p.attrs["group"].tolist() == attrs["group"].tolist()
    assert p.features.shape == (50, 3)
    assert p.meta["schema"] == SCHEMA and p.meta["split"] == "test"


def test_schema_types(sample):
    schema = pq.read_schema(sample[0])
    assert schema.field("logits").type == pa.list_(pa.float32(), 4)
    assert schema.field("pred").type == pa.int32()
    assert schema.field("sample_id").type == pa.int64()
    assert json.loads(schema.metadata[b"kdfair"])["num_classes"] == 4


def test_write_to_stdout_and_read_from_stdin(capfdbinary, monkeypatch):
    logits = np.eye(3, dtype=np.float32)
    write_predictions("-", sample_id=np.arange(3), label=None, logits=logits, attrs={}, meta={})
    data = capfdbinary.readouterr().out
    assert data[:4] == b"PAR1"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    p = read_predictions("-")
    assert p.label is None and p.pred.tolist() == [0, 1, 2]


def test_bring_your_own_csv_with_logit_columns(tmp_path):
    path = tmp_path / "byo.csv"
    pd.DataFrame({"label": [0, 1, 2, 1], "logit_0": [3.0, 0, 0, 0], "logit_1": [0, 2.0, 0, 5],
                  "logit_2": [0, 0, 1.0, 0], "attr_sex": ["f", "m", "f", "m"]}).to_csv(path, index=False)
    p = read_predictions(path)
    assert p.pred.tolist() == [0, 1, 2, 1] and p.num_classes == 3
    assert p.sample_id.tolist() == [0, 1, 2, 3]
    assert p.attrs["sex"].tolist() == ["f", "m", "f", "m"]


def test_bring_your_own_parquet_pred_only(tmp_path):
    path = tmp_path / "byo.parquet"
    pd.DataFrame({"y": [0, 1, 4], "yhat": [0, 2, 4], "attr_a": [1, 1, 2]}).to_parquet(path)
    p = read_predictions(path, label_col="y", pred_col="yhat")
    assert p.logits is None and p.num_classes == 5 and p.class_names == list("01234")


def _bad(tmp_path, frame: pd.DataFrame, suffix: str = ".parquet"):
    path = tmp_path / f"bad{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"pred": [0, 1]}), "missing column 'label'"),
    (pd.DataFrame({"label": [0, 1]}), "missing column 'pred'"),
    (pd.DataFrame({"label": [0, 7], "logit_0": [1.0, 0], "logit_1": [0, 1.0]}),
     "column 'label' has value 7 outside the class range [0, 2)"),
    (pd.DataFrame({"label": [0, 1], "pred": [0, 1], "sample_id": [3, 3]}), "duplicate"),
    (pd.DataFrame({"label": [0, 1], "logit_0": [np.nan, 0], "logit_1": [0, 1.0]}), "NaN"),
    (pd.DataFrame({"label": [0, 1], "pred": [1, 1], "logit_0": [1.0, 0], "logit_1": [0, 1.0]}),
     "disagrees with argmax"),
    (pd.DataFrame({"label": [0, 1], "logit_0": [1.0, 0], "logit_2": [0, 1.0]}), "without gaps"),
    (pd.DataFrame({"label": [0.5, 1], "pred": [0, 1]}), "integer class ids"),
    (pd.DataFrame({"label": pd.Series([], dtype=int), "pred": pd.Series([], dtype=int)}),
     "no rows"),
])
def test_bad_inputs(tmp_path, frame, message):
    path = _bad(tmp_path, frame)
    with pytest.raises(KdfairError) as err:
        read_predictions(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_nan_in_fixed_size_logits(tmp_path):
    logits = np.array([[0.0, 1.0], [np.nan, 0.0]], dtype=np.float32)
    path = tmp_path / "nan.parquet"
    table = pa.table({"label": [0, 1], "logits": pa.FixedSizeListArray.from_arrays(
        pa.array(logits.ravel()), 2)})
    pq.write_table(table, path)
    with pytest.raises(KdfairError, match="NaN or infinite values in 1 rows"):
        read_predictions(path)


def test_missing_empty_and_non_parquet_files(tmp_path):
    with pytest.raises(KdfairError, match="does not exist"):
        read_predictions(tmp_path / "nope.parquet")
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(KdfairError, match="file is empty"):
        read_predictions(tmp_path / "empty.parquet")
    (tmp_path / "junk.parquet").write_bytes(bytes(range(200, 256)))
    with pytest.raises(KdfairError, match="not a Parquet or CSV file"):
        read_predictions(tmp_path / "junk.parquet")


@pytest.mark.parametrize("command", [["group-fairness"], ["individual-fairness", "--pairs", "x"]])
def test_cli_reports_bad_file_in_one_line(tmp_path, command):
    (tmp_path / "junk.parquet").write_bytes(bytes(range(200, 256)))
    result = run(*command[:1], tmp_path / "junk.parquet", *command[1:])
    assert result.exit_code == 2
    err = error_line(result)
    assert err.startswith("kdfair: error: ") and err.count("\n") == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case, message", [
    ("empty", "file is empty"),
    ("range", "column 'label' has value 9 outside the class range [0, 3)"),
    ("nan", "column 'logit_<k>' has NaN or infinite values"),
    ("missing", "file does not exist"),
])
def test_cli_bad_inputs_exit_2(tmp_path, case, message):
    path = tmp_path / "in.csv"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "range":
        pd.DataFrame({"label": [0, 9], "logit_0": [1.0, 0], "logit_1": [0, 1.0],
                      "logit_2": [0, 0.5], "attr_a": [0, 1]}).to_csv(path, index=False)
    elif case == "nan":
        pd.DataFrame({"label": [0, 1], "logit_0": [np.nan, 0], "logit_1": [0, 1.0],
                      "attr_a": [0, 1]}).to_csv(path, index=False)
    else:
        path = tmp_path / "nope.parquet"
    result = run("group-fairness", path)
    assert result.exit_code == 2
    assert error_line(result).startswith(f"kdfair: error: {path}") and message in error_line(result)
