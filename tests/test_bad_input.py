"""The bad-input battery: every subcommand, fed what a new user might feed it.

Each case asserts the README's promise: the exit code, exactly one `kdfair: error:` line that
names the culprit, no traceback, nothing under the final output name, and every input and
pre-existing output byte-identical afterwards. Commands run in-process through `main` (the real
entry point: usage errors included) so the whole battery builds its tiny inputs once.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kdfair_cli.cli.app import main

FAST = ["--epochs", "1", "--batch-size", "64", "--device", "cpu", "-q"]
LONG = "x" * 300  # longer than NAME_MAX (255) of every common file system

#: The battery builds a model and a sweep once per module: part of the full run (CI), not the quick one.
pytestmark = pytest.mark.slow


@dataclass
class Run:
    code: int | str
    stdout: bytes
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("kdfair: error:")]


def kdfair(*args: object) -> Run:
    """Run `kdfair ARGS` in this process through the console-script entry point."""
    out, err = io.BytesIO(), io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    saved = sys.argv, sys.stdout, sys.stderr
    sys.argv, sys.stdout, sys.stderr = ["kdfair", *map(str, args)], stdout, err
    code: int | str = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - an escaped exception is what the battery looks for
        traceback.print_exc(file=err)
        code = "escaped exception"
    finally:
        stdout.flush()
        sys.argv, sys.stdout, sys.stderr = saved
    return Run(code, out.getvalue(), err.getvalue())


def ok(*args: object) -> Run:
    run = kdfair(*args)
    assert run.code == 0, run.stderr
    return run


# ------------------------------------------------------------------------------ tiny inputs

def _spec(path: Path, data: Path, device: str = "cpu") -> Path:
    path.write_text(f"""
[sweep]
seeds = [0]
temperatures = [2]
device = "{device}"
[data]
dataset = "trifeature"
path = "{data}"
[train]
epochs = 1
batch_size = 64
[teacher]
arch = "lenet5"
[nds]
arch = "lenet5"
[analyses]
group_attributes = ["color"]
pairs = "none"
compare_classes = false
""")
    return path


def _write_pq(path: Path, cols: dict, meta: dict | None = None) -> Path:
    table = pa.table(cols)
    if meta is not None:
        table = table.replace_schema_metadata({b"kdfair": json.dumps(meta).encode()})
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    from kdfair_cli.data.trifeature import generate_trifeature

    root = tmp_path_factory.mktemp("world")
    w: dict[str, Path] = {"root": root}
    w["tri"] = generate_trifeature(root / "tri", image_size=16, train_per_combination=1,
                                   val_per_combination=1, test_per_combination=1, seed=0)
    w["model"] = root / "m"
    ok("train-teacher", "--data", w["tri"], "--arch", "lenet5", "-o", w["model"], *FAST)
    w["preds"] = root / "preds.parquet"
    ok("predict", w["model"], "--split", "test", "-o", w["preds"], "--device", "cpu")
    w["preds_b"] = root / "preds_b.parquet"
    shutil.copy(w["preds"], w["preds_b"])
    w["cache"] = root / "cache.parquet"
    ok("predict", w["model"], "--split", "train", "-o", w["cache"], "--device", "cpu")
    w["pairs"] = root / "pairs.parquet"
    ok("pairs", "--dataset", "trifeature", "--data", w["tri"], "--split", "test", "-k", "2", "-o", w["pairs"])

    # a dataset whose manifest disagrees with its labels (the fingerprint covers only the files)
    w["tri_nc"] = root / "tri_nc"
    shutil.copytree(w["tri"], w["tri_nc"])
    manifest = json.loads((w["tri_nc"] / "manifest.json").read_text())
    manifest.update(num_classes=3, class_names=["a", "b", "c"])
    (w["tri_nc"] / "manifest.json").write_text(json.dumps(manifest))

    # model directories with a broken model.json
    for name, edit in (("m_ten", {"num_classes": "ten"}), ("m_shape", {"input_shape": "abc"}), ("m_list", None)):
        shutil.copytree(w["model"], root / name)
        meta = json.loads((root / name / "model.json").read_text())
        (root / name / "model.json").write_text(json.dumps([meta] if edit is None else {**meta, **edit}))
        w[name] = root / name

    # bring-your-own predictions, each wrong in one way
    (root / "big_label.csv").write_text("label,pred,attr_g\n0,0,a\n1000000000,1,b\n1,1,a\n")
    w["big_label"] = root / "big_label.csv"
    (root / "str_logits.csv").write_text("label,logit_0,logit_1,attr_g\n0,a,b,x\n1,c,d,y\n")
    w["str_logits"] = root / "str_logits.csv"
    w["nc_ten"] = _write_pq(root / "nc_ten.parquet", {"label": [0, 1, 1], "pred": [0, 1, 0],
                                                       "attr_g": ["a", "b", "a"]}, {"num_classes": "ten"})
    w["empty_logits"] = _write_pq(root / "empty_logits.parquet", {
        "label": [0, 1], "logits": pa.array([[], []], pa.list_(pa.float32())), "attr_g": ["a", "b"]})
    w["label7"] = _write_pq(root / "label7.parquet", {
        "label": [0, 1, 7], "pred": [0, 1, 2], "logits": pa.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], pa.list_(pa.float32())),
        "attr_g": ["a", "b", "a"]})
    data = bytearray(w["preds"].read_bytes())
    data[8:600] = bytes((i * 37 + 11) % 256 for i in range(592))  # garbage over the first page headers
    w["corrupt"] = root / "corrupt.parquet"
    w["corrupt"].write_bytes(bytes(data))
    w["zero_width"] = root / "zero.npy"
    np.save(w["zero_width"], np.zeros((10, 0), dtype=np.float32))
    w["test_logits"] = w["preds"]  # a test-split file offered as the train cache
    import datetime

    import torch

    w["pickle"] = root / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "when": datetime.date(2020, 1, 1)}, w["pickle"])

    # a finished one-seed sweep, and broken copies of it
    w["spec"] = _spec(root / "spec.toml", w["tri"])
    w["sweep"] = root / "sweep"
    ok("sweep", "run", w["spec"], "-o", w["sweep"])
    w["sweep_trunc"] = root / "sweep_trunc"
    shutil.copytree(w["sweep"], w["sweep_trunc"])
    text = (w["sweep_trunc"] / "sweep.json").read_text()
    (w["sweep_trunc"] / "sweep.json").write_text(text[: len(text) // 2])
    w["sweep_broken"] = root / "sweep_broken"
    shutil.copytree(w["sweep"], w["sweep_broken"])
    metrics = w["sweep_broken"] / "cells" / "nds-s0" / "metrics.json"
    metrics.write_text(metrics.read_text()[:20])
    w["spec_tpu"] = _spec(root / "spec_tpu.toml", w["tri"], device="tpu")
    w["spec_nodata"] = _spec(root / "spec_nodata.toml", root / "no-such-data")
    (root / "bad.toml").write_text("[sweep\nseeds = [0]\n")
    w["bad_toml"] = root / "bad.toml"
    (root / "a_file").write_text("not a folder\n")
    w["a_file"] = root / "a_file"
    return w


# --------------------------------------------------------------------------------- the cases

@dataclass
class Case:
    id: str
    args: list[str]
    culprit: str  # must appear in the error line
    code: int = 2
    out: str | None = None  # must not exist afterwards
    keep: list[str] = field(default_factory=list)  # byte-identical afterwards (besides every input)


C = Case
TRI = ["--data", "{tri}", "--arch", "lenet5", *FAST]
CASES = [
    # -- usage errors: one short line, not click's box
    C("app-unknown-command", ["bogus"], "bogus"),
    C("app-missing-argument", ["group-fairness"], "files"),
    C("app-unknown-option", ["group-fairness", "{preds}", "--bogus"], "--bogus"),
    C("app-bad-float", ["distill", "-T", "abc", "--teacher-logits", "{cache}", *TRI, "-o", "{tmp}/o"], "abc",
      out="{tmp}/o"),
    C("app-data-unknown-sub", ["data", "bogus"], "bogus"),
    C("app-sweep-unknown-sub", ["sweep", "bogus"], "bogus"),
    # -- data trifeature
    C("data-seed-negative", ["data", "trifeature", "-o", "{tmp}/d", "--seed", "-1"], "--seed", out="{tmp}/d"),
    C("data-absurd-count", ["data", "trifeature", "-o", "{tmp}/d", "--train-per-combination", "10000000000"],
      "--train-per-combination", out="{tmp}/d"),
    C("data-image-size", ["data", "trifeature", "-o", "{tmp}/d", "--image-size", "4"], "--image-size",
      out="{tmp}/d"),
    C("data-spurious-nan", ["data", "trifeature", "-o", "{tmp}/d", "--spurious", "nan"], "--spurious",
      out="{tmp}/d"),
    C("data-out-is-file", ["data", "trifeature", "-o", "{a_file}"], "a_file"),
    C("data-out-not-trifeature", ["data", "trifeature", "-o", "{model}"], "m"),
    C("data-name-too-long", ["data", "trifeature", "-o", "{tmp}/" + LONG], "too long"),
    C("data-twin-group", ["data", "trifeature", "-o", "{tmp}/d", "--twin-group-size", "3"], "--twin-group-size",
      out="{tmp}/d"),
    # -- data llm-toy
    C("llm-toy-planted-rate", ["data", "llm-toy", "-o", "{tmp}/d", "--planted-rate", "1.5"], "--planted-rate",
      out="{tmp}/d"),
    C("llm-toy-guess-rate-nan", ["data", "llm-toy", "-o", "{tmp}/d", "--guess-rate", "nan"], "--guess-rate",
      out="{tmp}/d"),
    C("llm-toy-audit-too-small", ["data", "llm-toy", "-o", "{tmp}/d", "--audit-per-category", "2"],
      "--audit-per-category", out="{tmp}/d"),
    C("llm-toy-out-is-file", ["data", "llm-toy", "-o", "{a_file}"], "a_file"),
    C("llm-toy-out-not-toy", ["data", "llm-toy", "-o", "{model}"], "m"),
    # -- train-teacher
    C("train-weight-decay-inf", ["train-teacher", *TRI, "--weight-decay", "inf", "-o", "{tmp}/o"],
      "--weight-decay", out="{tmp}/o"),
    C("train-lr-nan", ["train-teacher", *TRI, "--lr", "nan", "-o", "{tmp}/o"], "--lr", out="{tmp}/o"),
    C("train-unknown-dataset-option", ["train-teacher", *TRI, "-O", "bogus=1", "-o", "{tmp}/o"], "bogus",
      out="{tmp}/o/model.json"),
    C("train-manifest-classes", ["train-teacher", "--data", "{tri_nc}", "--arch", "lenet5", *FAST, "-o",
                                 "{tmp}/o"], "num_classes", out="{tmp}/o/model.json"),
    C("train-missing-data", ["train-teacher", "--data", "{tmp}/nodata", "--arch", "lenet5", *FAST, "-o",
                             "{tmp}/o"], "nodata", out="{tmp}/o/model.json"),
    C("train-unknown-arch", ["train-teacher", "--data", "{tri}", "--arch", "lenet6", *FAST, "-o", "{tmp}/o"],
      "lenet6", out="{tmp}/o/model.json"),
    C("train-epochs-zero", ["train-teacher", "--data", "{tri}", "--arch", "lenet5", "--epochs", "0",
                            "--device", "cpu", "-o", "{tmp}/o"], "--epochs", out="{tmp}/o"),
    C("train-out-is-file", ["train-teacher", *TRI, "-o", "{a_file}"], "a_file"),
    C("train-seed-negative", ["train-teacher", *TRI, "--seed", "-1", "-o", "{tmp}/o"], "--seed",
      out="{tmp}/o"),
    C("train-device-tpu", ["train-teacher", "--data", "{tri}", "--arch", "lenet5", "--epochs", "1", "-q",
                           "--device", "tpu", "-o", "{tmp}/o"], "tpu", out="{tmp}/o/model.json"),
    C("train-pickled-pretrained", ["train-teacher", *TRI, "--pretrained", "{pickle}", "-o", "{tmp}/o"],
      "evil.pt", out="{tmp}/o/model.json"),
    C("dataloss-train-out-over-pretrained", ["train-teacher", *TRI, "--pretrained", "{model}/model.safetensors",
                                             "--force", "-o", "{model}"], "model.safetensors"),
    C("train-missing-data-option", ["train-teacher", "--arch", "lenet5", "-o", "{tmp}/o"], "--data",
      out="{tmp}/o"),
    # -- distill
    C("distill-temperature-nan", ["distill", "-T", "nan", "--teacher-logits", "{cache}", *TRI, "-o", "{tmp}/o"],
      "--temperature", out="{tmp}/o"),
    C("distill-alpha", ["distill", "-T", "2", "--alpha", "2", "--teacher-logits", "{cache}", *TRI, "-o",
                        "{tmp}/o"], "--alpha", out="{tmp}/o"),
    C("distill-missing-cache", ["distill", "-T", "2", "--teacher-logits", "{tmp}/none.parquet", *TRI, "-o",
                                "{tmp}/o"], "none.parquet", out="{tmp}/o/model.json"),
    C("distill-test-split-cache", ["distill", "-T", "2", "--teacher-logits", "{test_logits}", *TRI, "-o",
                                   "{tmp}/o"], "split", out="{tmp}/o/model.json"),
    C("distill-both-teachers", ["distill", "-T", "2", "--teacher", "{model}", "--teacher-logits", "{cache}",
                                *TRI, "-o", "{tmp}/o"], "--teacher", out="{tmp}/o"),
    C("distill-teacher-classes-ten", ["distill", "-T", "2", "--teacher", "{m_ten}", *TRI, "-o", "{tmp}/o"],
      "num_classes", out="{tmp}/o/model.json"),
    C("dataloss-distill-out-is-teacher", ["distill", "-T", "2", "--teacher", "{model}", *TRI, "--force", "-o",
                                          "{model}"], "m"),
    C("dataloss-distill-out-in-teacher", ["distill", "-T", "2", "--teacher", "{model}", *TRI, "-o",
                                          "{model}/student"], "m", out="{model}/student"),
    C("distill-corrupt-cache", ["distill", "-T", "2", "--teacher-logits", "{corrupt}", *TRI, "-o", "{tmp}/o"],
      "corrupt.parquet", out="{tmp}/o/model.json"),
    # -- predict
    C("dataloss-predict-over-weights", ["predict", "{model}", "--device", "cpu", "-o",
                                        "{model}/model.safetensors"], "model.safetensors"),
    C("dataloss-predict-over-model-json", ["predict", "{model}", "--device", "cpu", "-o", "{model}/model.json"],
      "model.json"),
    C("predict-into-model-dir", ["predict", "{model}", "--device", "cpu", "-o", "{model}/p.parquet"], "m",
      out="{model}/p.parquet"),
    C("predict-missing-model", ["predict", "{tmp}/nomodel", "--device", "cpu", "-o", "{tmp}/p.parquet"],
      "nomodel", out="{tmp}/p.parquet"),
    C("predict-model-json-list", ["predict", "{m_list}", "--device", "cpu", "-o", "{tmp}/p.parquet"],
      "model.json", out="{tmp}/p.parquet"),
    C("predict-model-json-shape", ["predict", "{m_shape}", "--device", "cpu", "-o", "{tmp}/p.parquet"],
      "input_shape", out="{tmp}/p.parquet"),
    C("predict-model-json-classes", ["predict", "{m_ten}", "--device", "cpu", "-o", "{tmp}/p.parquet"],
      "num_classes", out="{tmp}/p.parquet"),
    C("predict-unknown-split", ["predict", "{model}", "--split", "dev", "--device", "cpu", "-o",
                                "{tmp}/p.parquet"], "dev", out="{tmp}/p.parquet"),
    C("predict-device-tpu", ["predict", "{model}", "--device", "tpu", "-o", "{tmp}/p.parquet"], "tpu",
      out="{tmp}/p.parquet"),
    C("predict-name-too-long", ["predict", "{model}", "--device", "cpu", "-o", "{tmp}/" + LONG + ".parquet"],
      "too long"),
    C("predict-unknown-dataset-option", ["predict", "{model}", "--device", "cpu", "-O", "bogus=1", "-o",
                                         "{tmp}/p.parquet"], "bogus", out="{tmp}/p.parquet"),
    C("predict-out-over-dataset", ["predict", "{model}", "--device", "cpu", "-o", "{tri}/test.parquet"],
      "test.parquet"),
    # -- predict
    C("predict-batch-size-0", ["predict", "{model}", "--batch-size", "0", "--device", "cpu", "-o", "{tmp}/p.parquet"],
      "--batch-size", out="{tmp}/p.parquet"),
    # -- compare-classes
    C("dataloss-compare-out-is-input", ["compare-classes", "-a", "{preds}", "-b", "{preds_b}", "-o", "{preds}"],
      "preds.parquet"),
    C("compare-missing-file", ["compare-classes", "-a", "{preds}", "-b", "{tmp}/none.parquet"], "none.parquet"),
    C("compare-corrupt", ["compare-classes", "-a", "{preds}", "-b", "{corrupt}", "-o", "{tmp}/c.parquet"],
      "corrupt.parquet", out="{tmp}/c.parquet"),
    C("compare-missing-b", ["compare-classes", "-a", "{preds}"], "-b"),
    C("compare-alpha-nan", ["compare-classes", "-a", "{preds}", "-b", "{preds_b}", "--alpha", "nan"], "--alpha"),
    C("compare-big-label", ["compare-classes", "-a", "{big_label}", "-b", "{big_label}", "-o", "{tmp}/c.csv"],
      "1000000000", out="{tmp}/c.csv"),
    # -- group-fairness
    C("dataloss-group-out-is-input", ["group-fairness", "{preds}", "-o", "{preds}"], "preds.parquet"),
    *[C(f"group-{name}", ["group-fairness", "{" + src + "}", "-o", "{tmp}/g.parquet"], culprit,
        out="{tmp}/g.parquet")
      for name, src, culprit in (("big-label", "big_label", "1000000000"), ("string-logits", "str_logits", "logit_"),
                                 ("meta-classes-ten", "nc_ten", "num_classes"),
                                 ("empty-logits", "empty_logits", "logits"), ("label-outside-logits", "label7", "7"),
                                 ("corrupt", "corrupt", "corrupt.parquet"))],
    C("group-unknown-attribute", ["group-fairness", "{preds}", "--attribute", "size"], "size"),
    C("group-confidence", ["group-fairness", "{preds}", "--confidence", "2"], "--confidence"),
    C("group-name-too-long", ["group-fairness", "{preds}", "-o", "{tmp}/" + LONG + ".parquet"], "too long"),
    # -- pairs
    C("pairs-zero-width", ["pairs", "--features", "{zero_width}", "-o", "{tmp}/p.parquet"], "zero.npy",
      out="{tmp}/p.parquet"),
    C("pairs-missing-data", ["pairs", "--dataset", "trifeature", "--data", "{tmp}/nodata", "-o",
                             "{tmp}/p.parquet"], "nodata", out="{tmp}/p.parquet"),
    C("pairs-k-zero", ["pairs", "--dataset", "trifeature", "--data", "{tri}", "-k", "0", "-o", "{tmp}/p.parquet"],
      "--k", out="{tmp}/p.parquet"),
    C("dataloss-pairs-out-is-features", ["pairs", "--features", "{preds_b}", "-o", "{preds_b}"],
      "preds_b.parquet"),
    C("pairs-out-over-dataset-table", ["pairs", "--dataset", "trifeature", "--data", "{tri}", "-o",
                                       "{tri}/test.parquet"], "test.parquet"),
    C("pairs-unknown-dataset-option", ["pairs", "--dataset", "trifeature", "--data", "{tri}", "--source",
                                       "bogus", "-o", "{tmp}/p.parquet"], "bogus", out="{tmp}/p.parquet"),
    # -- individual-fairness
    C("if-temperature-nan", ["individual-fairness", "{preds}", "--pairs", "{pairs}", "--temperature", "nan"],
      "--temperature"),
    C("if-temperature-abc", ["individual-fairness", "{preds}", "--pairs", "{pairs}", "--temperature", "abc"],
      "abc"),
    C("if-missing-pairs", ["individual-fairness", "{preds}", "--pairs", "{tmp}/none.parquet"], "none.parquet"),
    C("dataloss-if-out-is-pairs", ["individual-fairness", "{preds}", "--pairs", "{pairs}", "-o", "{pairs}"],
      "pairs.parquet"),
    C("if-pairs-is-predictions", ["individual-fairness", "{preds}", "--pairs", "{preds_b}"], "not a kdfair.pairs file"),
    # -- sweep
    C("sweep-device-tpu", ["sweep", "run", "{spec_tpu}", "-o", "{tmp}/s"], "tpu", out="{tmp}/s"),
    C("sweep-missing-data", ["sweep", "run", "{spec_nodata}", "-o", "{tmp}/s"], "no-such-data", out="{tmp}/s"),
    C("sweep-status-truncated", ["sweep", "status", "{sweep_trunc}"], "sweep.json"),
    C("sweep-out-is-file", ["sweep", "run", "{spec}", "-o", "{a_file}"], "a_file"),
    C("sweep-missing-spec", ["sweep", "run", "{tmp}/none.toml", "-o", "{tmp}/s"], "none.toml", out="{tmp}/s"),
    C("sweep-bad-toml", ["sweep", "run", "{bad_toml}", "-o", "{tmp}/s"], "bad.toml", out="{tmp}/s"),
    C("sweep-status-missing", ["sweep", "status", "{tmp}/nosweep"], "nosweep"),
    C("sweep-run-index", ["sweep", "run", "{spec}", "-o", "{tmp}/s", "--index", "99"], "--index"),
    # -- report
    C("report-truncated-sweep-json", ["report", "{sweep_trunc}", "-o", "{tmp}/r"], "sweep.json", out="{tmp}/r"),
    C("report-out-is-file", ["report", "{sweep}", "-o", "{a_file}"], "a_file"),
    C("dataloss-report-broken-cell", ["report", "{sweep_broken}", "-o", "{tmp}/r"], "nds-s0", code=1,
      out="{tmp}/r"),
    C("report-not-a-sweep", ["report", "{tmp}", "-o", "{tmp}/r"], "sweep.json", out="{tmp}/r"),
    # -- demo
    C("demo-device-tpu", ["demo", "--device", "tpu", "-o", "{tmp}/demo"], "tpu", out="{tmp}/demo"),
    C("demo-out-is-file", ["demo", "--quick", "--device", "cpu", "-o", "{a_file}"], "a_file"),
    C("demo-unknown-option", ["demo", "--fast"], "--fast"),
]


def _snapshot(world: dict[str, Path]) -> dict[Path, bytes]:
    files = [p for p in world["root"].rglob("*") if p.is_file() and ".lock" not in p.name]
    return {p: p.read_bytes() for p in files}


def _restore(world: dict[str, Path], before: dict[Path, bytes]) -> None:
    """Undo what a failing case did to the shared inputs, so one fault cannot cascade."""
    for p in sorted(world["root"].rglob("*"), reverse=True):
        if p.is_file() and ".lock" not in p.name and p not in before:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    for p, data in before.items():
        if not p.is_file() or p.read_bytes() != data:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)


#: Refusals of an output over an input that must come before any table or warning is printed.
ALONE = {"dataloss-compare-out-is-input", "dataloss-group-out-is-input", "dataloss-if-out-is-pairs"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world: dict[str, Path], tmp_path: Path) -> None:
    names = {k: str(v) for k, v in world.items()} | {"tmp": str(tmp_path)}
    args = [a.format(**names) for a in case.args]
    before = _snapshot(world)
    try:
        run = kdfair(*args)
        assert "Traceback" not in run.stderr, run.stderr
        assert run.code == case.code, run.stderr
        assert len(run.error_lines) == 1, run.stderr
        assert case.culprit.format(**names) in run.error_lines[0], run.error_lines[0]
        assert run.stderr.rstrip().splitlines()[-1] == run.error_lines[0], "the error is not one line"
        if case.id in ALONE:
            assert run.stderr.strip() == run.error_lines[0], "a table or warning came before the refusal"
        if case.out is not None:
            assert not Path(case.out.format(**names)).exists()
        assert _snapshot(world) == before, "an input or an existing output changed"
    finally:
        _restore(world, before)
