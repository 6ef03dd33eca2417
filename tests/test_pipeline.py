"""The pipeline on a tiny generated Trifeature: data -> train-teacher -> predict -> distill -> predict."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.data.trifeature import generate_trifeature, open_trifeature
from kdfair_cli.io.predictions import read_predictions

cli = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--epochs", "1", "--batch-size", "64", "--device", "cpu", "-q"]

pytestmark = pytest.mark.slow  # every test here trains or predicts with a trained model


@pytest.fixture(scope="module")
def tri(tmp_path_factory) -> Path:
    return generate_trifeature(tmp_path_factory.mktemp("d") / "tri", image_size=16, train_per_combination=1,
                               val_per_combination=1, test_per_combination=1, seed=0)


@pytest.fixture(scope="module")
def teacher(tri, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("m") / "teacher"
    result = cli.invoke(app, ["train-teacher", "--data", str(tri), "--arch", "resnet20", "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return out


def _ok(args: list[str]) -> str:
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_predict_writes_the_design_schema(tri, teacher, tmp_path) -> None:
    out = tmp_path / "p.parquet"
    _ok(["predict", str(teacher), "--split", "test", "-o", str(out), "--device", "cpu"])
    table = pq.read_table(out)
    assert table.column_names[:4] == ["sample_id", "label", "pred", "logits"]
    assert {"attr_color", "attr_texture"} <= set(table.column_names)
    meta = json.loads(table.schema.metadata[b"kdfair"])
    assert meta["schema"] == "kdfair.predictions/1" and meta["split"] == "test" and meta["num_classes"] == 10
    assert meta["attributes"]["color"][0] == "red" and meta["model"]["role"] == "teacher"
    preds = read_predictions(out)
    split = open_trifeature(tri).split("test")
    assert np.array_equal(preds.label, split.labels) and np.array_equal(preds.attrs["color"], split.attrs["color"])
    assert np.array_equal(preds.pred, preds.logits.argmax(1))
    # predictions are deterministic
    again = tmp_path / "q.parquet"
    _ok(["predict", str(teacher), "--split", "test", "-o", str(again), "--device", "cpu"])
    assert np.array_equal(read_predictions(again).logits, preds.logits)


def test_predict_to_stdout_is_parquet(teacher) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "kdfair_cli", "predict", str(teacher), "--split", "val",
                           "-o", "-", "--device", "cpu"], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    table = pq.read_table(io.BytesIO(proc.stdout))
    assert table.num_rows == 1000
    assert b"accuracy" in proc.stderr  # the human summary goes to stderr only


def test_offline_distillation_from_the_cache(tri, teacher, tmp_path) -> None:
    cache = tmp_path / "cache.parquet"
    _ok(["predict", str(teacher), "--split", "train", "-o", str(cache), "--device", "cpu"])
    out = tmp_path / "ds"
    _ok(["distill", "--teacher-logits", str(cache), "--data", str(tri), "--arch", "lenet5", "-T", "4",
         "-o", str(out), *FAST])
    meta = json.loads((out / "model.json").read_text())
    assert meta["role"] == "ds" and meta["temperature"] == 4.0 and meta["alpha"] == 0.8
    assert meta["teacher"]["mode"] == "offline" and len(meta["teacher"]["cache_sha256"]) == 64
    # A cache of another split is refused, naming it.
    wrong = tmp_path / "test-cache.parquet"
    _ok(["predict", str(teacher), "--split", "test", "-o", str(wrong), "--device", "cpu"])
    result = cli.invoke(app, ["distill", "--teacher-logits", str(wrong), "--data", str(tri), "--arch", "lenet5",
                              "-T", "4", "-o", str(tmp_path / "ds2"), *FAST])
    assert result.exit_code == 2 and "expected the train split" in result.output


def test_offline_cache_with_nan_is_refused(tri, teacher, tmp_path) -> None:
    cache = tmp_path / "cache.parquet"
    _ok(["predict", str(teacher), "--split", "train", "-o", str(cache), "--device", "cpu"])
    table = pq.read_table(cache)
    logits = np.stack(table.column("logits").to_numpy(zero_copy_only=False)).astype(np.float32)
    logits[3, 2] = np.nan
    import pyarrow as pa

    arr = pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), 10)
    pq.write_table(table.set_column(table.column_names.index("logits"), "logits", arr), cache)
    result = cli.invoke(app, ["distill", "--teacher-logits", str(cache), "--data", str(tri), "--arch", "lenet5",
                              "-T", "4", "-o", str(tmp_path / "ds"), *FAST])
    assert result.exit_code == 2 and "kdfair: error:" in result.output
    assert not (tmp_path / "ds" / "model.json").exists()


def test_predict_bad_model_dirs(teacher, tmp_path) -> None:
    import shutil

    no_weights = tmp_path / "nw"
    shutil.copytree(teacher, no_weights)
    (no_weights / "model.safetensors").unlink()
    wrong_arch = tmp_path / "wa"
    shutil.copytree(teacher, wrong_arch)
    meta = json.loads((wrong_arch / "model.json").read_text())
    meta["arch"] = "resnet32"
    (wrong_arch / "model.json").write_text(json.dumps(meta))
    out = tmp_path / "p.parquet"
    for model_dir, message in [(tmp_path / "missing", "does not exist"), (no_weights, "has no weights"),
                               (wrong_arch, "does not fit arch 'resnet32'")]:
        result = cli.invoke(app, ["predict", str(model_dir), "-o", str(out), "--device", "cpu"])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()
    result = cli.invoke(app, ["predict", str(teacher), "-o", "/proc/nope/p.parquet", "--device", "cpu"])
    assert result.exit_code == 2 and "cannot write output" in result.output


def test_corrupt_data_dir_is_reported(teacher, tmp_path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    result = cli.invoke(app, ["train-teacher", "--data", str(bad), "--arch", "lenet5", "-o", str(tmp_path / "o"),
                              *FAST])
    assert result.exit_code == 2 and "manifest.json" in result.output


def test_sigterm_in_a_real_process_saves_state_and_resume_finishes(tri, tmp_path) -> None:
    import signal
    import time

    import pandas as pd

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "kdfair_cli", "train-teacher", "--data", str(tri), "--arch", "resnet20",
            "-o", str(out), "--epochs", "4", "--batch-size", "64", "--device", "cpu"]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "train_state.pt").exists() and time.time() < deadline:  # epoch 1 is done
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err.decode()
    assert b"rerun with --resume" in err and b"Traceback" not in err
    assert (out / "train_state.pt").exists() and not (out / "model.json").exists()
    resumed = subprocess.run(args + ["--resume"], env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert list(pd.read_parquet(out / "history.parquet")["epoch"]) == [0, 1, 2, 3]
    assert not (out / "train_state.pt").exists()
