"""train-teacher / distill on the in-memory blobs dataset: determinism, resume, errors."""

import json
import signal

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.modeldir import STATE
from kdfair_cli.train import runner
from kdfair_cli.train.config import TrainConfig, lr_at
from kdfair_cli.train.loop import Interrupted
from kdfair_cli.train.runner import train_model

cli = CliRunner()


def _cfg(data: str, out, **kw) -> TrainConfig:
    base = dict(dataset="blobs", data=data, arch="lenet5", out=str(out), epochs=3, batch_size=32, device="cpu")
    return TrainConfig(**{**base, **kw})


def _weights(path) -> dict:
    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_differs(blobs, tmp_path) -> None:
    train_model(_cfg(blobs, tmp_path / "a"), verbose=False)
    train_model(_cfg(blobs, tmp_path / "b"), verbose=False)
    train_model(_cfg(blobs, tmp_path / "c", seed=1), verbose=False)
    a, b, c = (_weights(tmp_path / x) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow
def test_model_dir_contents(blobs, tmp_path) -> None:
    meta = train_model(_cfg(blobs, tmp_path / "m", epochs=4, lr=0.05), verbose=False)
    written = json.loads((tmp_path / "m" / "model.json").read_text())
    assert written == meta
    assert meta["selection"]["kept"] == "last" and meta["selection"]["validation"] == "val split"
    assert meta["final_metrics"]["val_acc"] > 0.9  # blobs are easy
    assert not (tmp_path / "m" / STATE).exists()
    import pandas as pd

    hist = pd.read_parquet(tmp_path / "m" / "history.parquet")
    assert list(hist["epoch"]) == [0, 1, 2, 3]


@pytest.mark.slow
def test_sigterm_then_resume_gives_the_uninterrupted_weights(blobs, tmp_path, monkeypatch) -> None:
    train_model(_cfg(blobs, tmp_path / "full", arch="resnet20"), verbose=False)
    steps = {"n": 0}
    plain = runner.hard_label_objective

    def killing_objective(cfg):
        inner = plain(cfg)

        def objective(*args):
            steps["n"] += 1
            if steps["n"] == 12:  # in epoch 2 of 3 (8 steps per epoch)
                signal.raise_signal(signal.SIGTERM)
            return inner(*args)

        return objective

    monkeypatch.setattr(runner, "hard_label_objective", killing_objective)
    with pytest.raises(Interrupted) as info:
        train_model(_cfg(blobs, tmp_path / "cut", arch="resnet20"), verbose=False)
    assert info.value.epochs_done == 1
    assert (tmp_path / "cut" / STATE).exists() and not (tmp_path / "cut" / "model.json").exists()
    with pytest.raises(KdfairError, match="--resume"):
        train_model(_cfg(blobs, tmp_path / "cut", arch="resnet20"), verbose=False)
    monkeypatch.setattr(runner, "hard_label_objective", plain)
    train_model(_cfg(blobs, tmp_path / "cut", arch="resnet20"), resume=True, verbose=False)
    full, cut = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)


@pytest.mark.slow
def test_resume_refuses_other_settings(blobs, tmp_path) -> None:
    train_model(_cfg(blobs, tmp_path / "r", epochs=1), verbose=False)
    (tmp_path / "r" / "model.json").unlink()
    from kdfair_cli.train.loop import _save_state  # a state written by other settings

    model = torch.nn.Linear(2, 2)
    _save_state(tmp_path / "r" / STATE, model, torch.optim.SGD(model.parameters(), lr=0.1), 1, [], None, "other",
                {})
    with pytest.raises(KdfairError, match="other settings"):
        train_model(_cfg(blobs, tmp_path / "r", epochs=1), resume=True, verbose=False)


@pytest.mark.slow
def test_holdout_validation_when_no_val_split(blobs, tmp_path) -> None:
    meta = train_model(_cfg(blobs, tmp_path / "h", dataset="blobs-noval", epochs=1, val_fraction=0.25),
                       verbose=False)
    assert meta["selection"]["validation"] == "25% of train"


@pytest.mark.slow
def test_best_selection_records_epoch(blobs, tmp_path) -> None:
    meta = train_model(_cfg(blobs, tmp_path / "b", select="best", epochs=3), verbose=False)
    hist = [r["val_acc"] for r in __import__("pandas").read_parquet(tmp_path / "b" / "history.parquet").to_dict("records")]
    assert meta["selection"]["epoch"] == int(max(range(3), key=lambda i: (hist[i], -i)))
    assert meta["final_metrics"]["val_acc"] == pytest.approx(max(hist))


def test_lr_schedules() -> None:
    cfg = TrainConfig("d", "x", "lenet5", "o", epochs=4, lr=0.1, warmup_epochs=1)
    assert lr_at(cfg, 0, 10) == pytest.approx(0.01)
    assert lr_at(cfg, 9, 10) == pytest.approx(0.1)
    assert lr_at(cfg, 10, 10) == pytest.approx(0.1)
    assert lr_at(cfg, 25, 10) == pytest.approx(0.05)  # half way through the cosine
    step = TrainConfig("d", "x", "lenet5", "o", epochs=4, lr=0.1, schedule="step")
    assert [round(lr_at(step, s, 1), 6) for s in range(4)] == [0.1, 0.1, 0.01, 0.001]


def test_ds_without_teacher_source_is_an_error(blobs, tmp_path) -> None:
    with pytest.raises(KdfairError, match="give exactly one of --teacher DIR and --teacher-logits"):
        train_model(_cfg(blobs, tmp_path / "ds", role="ds", temperature=4.0, alpha=0.8), verbose=False)


@pytest.mark.slow
def test_online_distillation_records_teacher(blobs, tmp_path) -> None:
    train_model(_cfg(blobs, tmp_path / "t", arch="resnet20", epochs=2), verbose=False)
    meta = train_model(_cfg(blobs, tmp_path / "ds", role="ds", temperature=4.0, alpha=0.8,
                            teacher=str(tmp_path / "t")), verbose=False)
    assert meta["temperature"] == 4.0 and meta["alpha"] == 0.8 and meta["kd_scale_t2"] is True
    teacher_meta = json.loads((tmp_path / "t" / "model.json").read_text())
    assert meta["teacher"]["weights_sha256"] == teacher_meta["weights_sha256"]


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "--epochs must be positive"),
    (["--batch-size", "-1"], "--batch-size must be positive"),
    (["--arch", "vgg99"], "unknown arch 'vgg99'"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--device", "tpu"], "--device 'tpu'"),
])
def test_train_teacher_bad_input_one_line_exit_2(blobs, tmp_path, args, message) -> None:
    base = ["train-teacher", "--dataset", "blobs", "--data", blobs, "--arch", "lenet5", "-o", str(tmp_path / "o")]
    result = cli.invoke(app, base + args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"kdfair: error: {lines[0][len('kdfair: error: '):]}"] and message in lines[0]
    assert not (tmp_path / "o" / "model.json").exists()


def test_distill_bad_input(blobs, tmp_path) -> None:
    base = ["distill", "--dataset", "blobs", "--data", blobs, "--arch", "lenet5", "-o", str(tmp_path / "o")]
    for extra, message in [(["-T", "0", "--teacher", str(tmp_path)], "--temperature must be positive"),
                           (["-T", "4", "--alpha", "1.5", "--teacher", str(tmp_path)], "--alpha must be in [0, 1]"),
                           (["-T", "4"], "exactly one of --teacher"),
                           (["-T", "4", "--teacher", str(tmp_path / "missing")], "does not exist")]:
        result = cli.invoke(app, base + extra)
        assert result.exit_code == 2 and message in result.output, (extra, result.output)


@pytest.mark.slow
def test_refuses_to_overwrite_without_force(blobs, tmp_path) -> None:
    args = ["train-teacher", "--dataset", "blobs", "--data", blobs, "--arch", "lenet5", "-o", str(tmp_path / "o"),
            "--epochs", "1", "-q"]
    assert cli.invoke(app, args).exit_code == 0
    before = (tmp_path / "o" / "model.safetensors").read_bytes()
    result = cli.invoke(app, args)
    assert result.exit_code == 2 and "--force" in result.output
    assert (tmp_path / "o" / "model.safetensors").read_bytes() == before
    assert cli.invoke(app, args + ["--force", "--seed", "5"]).exit_code == 0
    assert (tmp_path / "o" / "model.safetensors").read_bytes() != before
