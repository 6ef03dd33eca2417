"""timm architectures (`--arch timm:<name>`): train-teacher, distill online and offline, predict,
a sweep, and `--pretrained` with timm-saved weights, all offline.

The models are timm's own test variants (test_vit, test_efficientnet: a few hundred thousand
parameters) and TinyViT built with small dimensions through --model-config, at 32 px. Every test
runs with sockets closed, so any attempt to reach the Hugging Face hub fails loudly.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.predictions import read_predictions
from tests.fakes import Blobs
from tests.test_sweep import tiny_spec
from tests.vision_fakes import make_imagefolder

timm = pytest.importorskip("timm")
cli = CliRunner()
FAST = ["--epochs", "1", "--batch-size", "32", "--device", "cpu", "-q", "--lr", "0.01"]
BLOBS = ["--dataset", "blobs", "-O", "size=32", "-O", "n=64"]
TINY_VIT = json.dumps({"embed_dims": [16, 24, 32, 40], "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2],
                       "window_sizes": [7, 7, 7, 7]})


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: HF_HUB_OFFLINE and sockets that refuse to connect."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*_args, **_kwargs):
        raise OSError("network access attempted during a timm test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def run(*args, code: int = 0) -> str:
    res = cli.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res.output


def _timm_logits(name: str, kwargs: dict, weights: Path, images: np.ndarray, mean, std) -> np.ndarray:
    """timm's own model with those weights, on images normalised by hand."""
    from safetensors.torch import load_file

    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    model.load_state_dict(load_file(str(weights)))
    x = torch.from_numpy(images).float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x).numpy()


@pytest.mark.slow
def test_tinyvit_and_vit_through_train_distill_and_predict(blobs, tmp_path) -> None:
    data = blobs
    run("train-teacher", *BLOBS, "--data", data, "--arch", "timm:test_vit", "-o", tmp_path / "t", *FAST)
    meta = json.loads((tmp_path / "t" / "model.json").read_text())
    vit_cfg = timm.models.get_pretrained_cfg("test_vit")
    assert meta["arch"] == "timm:test_vit" and meta["arch_options"] == {}
    assert meta["normalization"] == {"mean": list(vit_cfg.mean), "std": list(vit_cfg.std)}  # not the data's 0.3
    assert meta["timm"]["version"] == timm.__version__
    run("predict", tmp_path / "t", "--split", "train", "-o", tmp_path / "t-train.parquet", "--device", "cpu")

    student = ["--arch", "timm:tiny_vit_5m_224", "--model-config", TINY_VIT, "-T", "4", *BLOBS, "--data", data]
    run("distill", *student, "--teacher-logits", tmp_path / "t-train.parquet", "-o", tmp_path / "off", *FAST)
    run("distill", *student, "--teacher", tmp_path / "t", "-o", tmp_path / "on", *FAST)
    for mode in ("off", "on"):
        meta = json.loads((tmp_path / mode / "model.json").read_text())
        assert meta["arch_options"] == json.loads(TINY_VIT)
        assert meta["teacher"]["mode"] == {"off": "offline", "on": "online"}[mode]
        run("predict", tmp_path / mode, "--split", "test", "-o", tmp_path / f"{mode}.parquet", "--device", "cpu")

    # predict rebuilt the TinyViT from model.json alone: its logits are timm's own model's.
    preds = read_predictions(tmp_path / "off.parquet")
    test = Blobs(None, size=32, n=64).split("test")
    assert preds.sample_id.tolist() == test.sample_id.tolist()
    tv_cfg = timm.models.get_pretrained_cfg("tiny_vit_5m_224")
    expected = _timm_logits("tiny_vit_5m_224", {"num_classes": 4, **json.loads(TINY_VIT)},
                            tmp_path / "off" / "model.safetensors", test.images, tv_cfg.mean, tv_cfg.std)
    np.testing.assert_allclose(preds.logits, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(read_predictions(tmp_path / "on.parquet").logits, preds.logits)


def test_pretrained_timm_directory_gives_timms_logits(blobs, tmp_path) -> None:
    """Weights saved by timm (save_for_hf: model.safetensors + config.json) load unchanged: with a
    vanishing learning rate, kdfair's predictions are timm's model's logits with the directory's
    own normalisation."""
    source = timm.create_model("test_vit", pretrained=False, num_classes=4, img_size=32).eval()
    mean, std = (0.2, 0.3, 0.4), (0.6, 0.5, 0.4)
    source.pretrained_cfg = {**source.pretrained_cfg, "mean": mean, "std": std}
    timm.models.save_for_hf(source, str(tmp_path / "hf"), model_args={"img_size": 32}, safe_serialization=True)
    run("train-teacher", *BLOBS, "--data", blobs, "--arch", "timm:test_vit", "--pretrained", tmp_path / "hf",
        "-o", tmp_path / "m", *FAST[:-2], "--lr", "1e-30", "--no-augment")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["normalization"] == {"mean": list(mean), "std": list(std)}
    assert meta["pretrained"]["dropped"] == [] and meta["pretrained"]["missing"] == []
    run("predict", tmp_path / "m", "--split", "test", "-o", tmp_path / "p.parquet", "--device", "cpu")
    test = Blobs(None, size=32, n=64).split("test")
    expected = _timm_logits("test_vit", {"num_classes": 4, "img_size": 32}, tmp_path / "hf" / "model.safetensors",
                            test.images, mean, std)
    np.testing.assert_allclose(read_predictions(tmp_path / "p.parquet").logits, expected, rtol=1e-4, atol=1e-5)


def test_pretrained_file_with_another_head_is_dropped_with_a_notice(tmp_path) -> None:
    from safetensors.torch import save_file

    from kdfair_cli.models.registry import build_model
    from kdfair_cli.models.weights import load_pretrained

    source = timm.create_model("test_efficientnet", pretrained=False, num_classes=1000)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    model = build_model("timm:test_efficientnet", 7, (3, 32, 32))
    report = load_pretrained(model, tmp_path / "w.safetensors")
    assert report["dropped"] == ["classifier.bias", "classifier.weight"]
    kept = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept.items())
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_names_options_and_errors(tmp_path) -> None:
    from kdfair_cli.models.registry import arch_options, build_model, check_arch

    check_arch("timm:tiny_vit_5m_224")
    with pytest.raises(KdfairError, match="timm .* has no model 'tiny_vit_9000'"):
        check_arch("timm:tiny_vit_9000")
    with pytest.raises(KdfairError, match="--model-config applies to timm"):
        arch_options("lenet5", "depth=3", None)
    assert arch_options("timm:test_vit", "drop_path_rate=0.1", None) == {"drop_path_rate": 0.1}
    with pytest.raises(KdfairError, match="test_vit"):
        build_model("timm:test_vit", 3, (3, 32, 32), {"no_such_argument": 1})
    gray = build_model("timm:test_convnext", 3, (1, 64, 64)).eval()  # in_chans from the data
    with torch.no_grad():
        assert gray(torch.zeros(1, 1, 64, 64)).shape == (1, 3)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
    with pytest.raises(KdfairError, match="config.json is for 'resnet18', not 'test_vit'"):
        arch_options("timm:test_vit", None, str(tmp_path / "d"))


@pytest.mark.slow
def test_imagefolder_size_comes_from_the_models_config(tmp_path) -> None:
    data = make_imagefolder(tmp_path / "if", size=40)
    run("train-teacher", "--dataset", "imagefolder", "--data", data, "--arch", "timm:test_efficientnet",
        "--workers", "0", "-o", tmp_path / "m", *FAST[:2], "--batch-size", "4", *FAST[4:])
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    size = timm.models.get_pretrained_cfg("test_efficientnet").input_size
    assert meta["dataset"]["open_options"]["image_size"] == size[-1] == 160
    assert meta["input_shape"] == list(size)


@pytest.mark.slow
def test_sweep_with_timm_teacher_and_students(blobs, tmp_path) -> None:
    from kdfair_cli.sweep.runner import run_sweep
    from kdfair_cli.sweep.spec import load_spec

    path = tiny_spec(tmp_path / "s.toml", seeds=(0,), temps=(2,), analyses=False)
    text = path.read_text().replace('[teacher]\narch = "lenet5"', '[teacher]\narch = "timm:test_vit"')
    path.write_text(text.replace('[nds]\narch = "lenet5"', '[nds]\narch = "timm:test_efficientnet"'))
    summary = run_sweep(load_spec(path), tmp_path / "sw", log=lambda _m: None)
    assert summary.ok and sorted(summary.ran) == ["cache-teacher-s0", "ds-T2-s0", "nds-s0", "teacher-s0"]
    meta = json.loads((tmp_path / "sw" / "cells" / "ds-T2-s0" / "model" / "model.json").read_text())
    assert meta["arch"] == "timm:test_efficientnet" and meta["teacher"]["mode"] == "offline"
    path.write_text(text.replace('arch = "timm:test_vit"', 'arch = "timm:no_such_model"'))
    with pytest.raises(KdfairError, match="teacher.arch: arch 'timm:no_such_model'"):
        load_spec(path)
