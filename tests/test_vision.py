"""Real-dataset readers (CIFAR-10/100, SVHN, CelebA, ImageFolder) and torchvision models.

Each test builds a few images in the dataset's exact on-disk format and runs train-teacher,
distill and predict through the CLI for an epoch; predictions must carry the right labels and
attributes. Broken folders must fail with one line naming the file (exit 2).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.data.options import parse_dataset_options
from kdfair_cli.data.registry import open_dataset
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.predictions import read_predictions
from tests.vision_fakes import (
    CELEBA_ATTRS, make_celeba, make_cifar10, make_cifar100, make_imagefolder, make_svhn,
)

cli = CliRunner()
FAST = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "-q", "--lr", "0.01"]


def run(*args: str, code: int = 0):
    res = cli.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res


def train(dataset: str, data: Path, out: Path, arch: str = "lenet5", *extra: str):
    return run("train-teacher", "--dataset", dataset, "--data", data, "--arch", arch, "-o", out, *FAST, *extra)


def predict(model: Path, out: Path, split: str = "test", *extra: str):
    run("predict", model, "--split", split, "-o", out, "--device", "cpu", *extra)
    return read_predictions(out)


def test_dataset_option_parsing() -> None:
    opts = parse_dataset_options(["image-size=64", "balance=false", "attributes=Young,Male", "scale=0.5"])
    assert opts == {"image_size": 64, "balance": False, "attributes": "Young,Male", "scale": 0.5}
    with pytest.raises(KdfairError, match="KEY=VALUE"):
        parse_dataset_options(["oops"])


@pytest.mark.slow
def test_cifar10_train_distill_predict(tmp_path) -> None:
    data = make_cifar10(tmp_path / "c10")
    train("cifar10", data, tmp_path / "t", "resnet20")
    cache = predict(tmp_path / "t", tmp_path / "t-train.parquet", "train")
    assert len(cache.sample_id) == 40
    run("distill", "--dataset", "cifar10", "--data", data, "--arch", "lenet5", "-T", "4",
        "--teacher-logits", tmp_path / "t-train.parquet", "-o", tmp_path / "ds", *FAST)
    preds = predict(tmp_path / "ds", tmp_path / "ds.parquet")
    with open(data / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        truth = pickle.load(fh, encoding="latin1")[b"labels"]
    assert preds.label.tolist() == truth
    assert preds.meta["class_names"][0] == "airplane" and preds.meta["dataset"] == "cifar10"


@pytest.mark.slow
def test_cifar100_coarse_label_and_fine_attribute(tmp_path) -> None:
    data = make_cifar100(tmp_path / "c100")
    train("cifar100", data / "cifar-100-python", tmp_path / "m", "lenet5", "-O", "label=coarse")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["num_classes"] == 20 and meta["dataset"]["open_options"] == {"label": "coarse"}
    preds = predict(tmp_path / "m", tmp_path / "p.parquet")  # reopened with label=coarse from model.json
    with open(data / "cifar-100-python" / "test", "rb") as fh:
        truth = pickle.load(fh, encoding="latin1")
    assert preds.label.tolist() == truth[b"coarse_labels"]
    assert preds.attrs["fine"].tolist() == truth[b"fine_labels"]


@pytest.mark.slow
def test_svhn_online_distillation(tmp_path) -> None:
    import scipy.io

    data = make_svhn(tmp_path / "svhn")
    train("svhn", data, tmp_path / "t", "resnet20")
    run("distill", "--dataset", "svhn", "--data", data, "--arch", "lenet5", "-T", "2",
        "--teacher", tmp_path / "t", "-o", tmp_path / "ds", *FAST)
    preds = predict(tmp_path / "ds", tmp_path / "p.parquet")
    y = scipy.io.loadmat(str(data / "test_32x32.mat"))["y"].reshape(-1) % 10  # 10 means digit 0
    assert preds.label.tolist() == y.tolist()
    assert json.loads((tmp_path / "ds" / "model.json").read_text())["teacher"]["mode"] == "online"


@pytest.mark.slow
def test_celeba_labels_attributes_and_balance(tmp_path) -> None:
    data, table = make_celeba(tmp_path / "celeba")
    train("celeba", data, tmp_path / "t", "resnet20", "-O", "image_size=16")
    preds = predict(tmp_path / "t", tmp_path / "p.parquet")
    test_rows = np.arange(24, 30)  # partition 2 of the 30 fake images
    col = CELEBA_ATTRS.index
    assert preds.label.tolist() == (table[test_rows, col("Smiling")] > 0).astype(int).tolist()
    assert preds.attrs["Young"].tolist() == (table[test_rows, col("Young")] > 0).astype(int).tolist()
    assert preds.attrs["Male"].tolist() == (table[test_rows, col("Male")] > 0).astype(int).tolist()
    assert preds.meta["class_names"] == ["not Smiling", "Smiling"]
    balanced = open_dataset("celeba", data, image_size=16).split("train")
    assert np.bincount(balanced.labels).tolist() == [6, 6]  # 18 train images, 6 smiling
    full = open_dataset("celeba", data, image_size=16, balance=False).split("train")
    assert len(full) == 18
    other = open_dataset("celeba", data, image_size=16, label="Eyeglasses", attributes="Male").info
    assert other.class_names == ("not Eyeglasses", "Eyeglasses") and [a.name for a in other.attributes] == ["Male"]


def test_celeba_cache_dir(tmp_path) -> None:
    data, _ = make_celeba(tmp_path / "celeba")
    first = open_dataset("celeba", data, image_size=16, cache_dir=str(tmp_path / "cache")).split("test")
    (data / "img_align_celeba" / "000025.jpg").unlink()  # the cache now serves the test split
    again = open_dataset("celeba", data, image_size=16, cache_dir=str(tmp_path / "cache")).split("test")
    assert np.array_equal(first.images, again.images)


@pytest.mark.slow
def test_imagefolder_streaming_with_attributes(tmp_path) -> None:
    data = make_imagefolder(tmp_path / "if")
    opts = ["-O", "image_size=16", "-O", "attributes_csv=attributes.csv", "--workers", "0"]
    train("imagefolder", data, tmp_path / "t", "resnet20", *opts)
    run("distill", "--dataset", "imagefolder", "--data", data, "--arch", "lenet5", "-T", "4",
        "--teacher", tmp_path / "t", "-o", tmp_path / "ds", *FAST, *opts)
    preds = predict(tmp_path / "ds", tmp_path / "p.parquet", "val", "--workers", "2")
    assert preds.label.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert preds.attrs["skin"].tolist() == [0, 1, 0, 1] * 3  # dark < light
    assert preds.meta["attributes"]["skin"] == ["dark", "light"]
    assert preds.meta["class_names"] == ["cat", "dog", "fox"]


@pytest.mark.slow
def test_imagefolder_holdout_and_augmentation_are_seeded(tmp_path) -> None:
    data = make_imagefolder(tmp_path / "if", splits=("train",), per_class=6)
    opts = ["-O", "image_size=16", "--workers", "0", "--val-fraction", "0.25"]
    train("imagefolder", data, tmp_path / "a", "lenet5", *opts)
    train("imagefolder", data, tmp_path / "b", "lenet5", *opts)
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / x / "model.safetensors")) for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    assert meta["selection"]["validation"] == "25% of train"


def test_streaming_order_and_workers_agree(tmp_path) -> None:
    from kdfair_cli.data.batches import augment_generator

    ds = open_dataset("imagefolder", make_imagefolder(tmp_path / "if"), image_size=16)
    split = ds.split("train")
    order = torch.tensor([5, 0, 11, 3, 7])
    outs = []
    for workers in (0, 2):
        ds.configure_loading(workers=workers)
        b = ds.make_batches(split, torch.device("cpu"), ds.info.mean, ds.info.std)
        got = list(b.epoch(order, 2, True, augment_generator(0, 0, torch.device("cpu"))))
        assert [i.tolist() for i, _ in got] == [[5, 0], [11, 3], [7]]
        outs.append(torch.cat([x for _, x in got]))
    assert torch.equal(outs[0], outs[1])


# ---- broken folders ---------------------------------------------------------------------------

def _error(dataset: str, data: Path, *extra: str) -> str:
    res = cli.invoke(app, ["train-teacher", "--dataset", dataset, "--data", str(data), "--arch", "lenet5",
                           "-o", str(data.parent / "never"), *FAST, *extra])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("kdfair: error:"), res.output
    return lines[0]


def test_missing_and_malformed_files_are_named(tmp_path) -> None:
    c10 = make_cifar10(tmp_path / "c10") / "cifar-10-batches-py"
    (c10 / "data_batch_3").unlink()
    assert "data_batch_3 is missing" in _error("cifar10", c10)
    (c10 / "data_batch_3").write_bytes(b"not a pickle")
    assert "data_batch_3 is not a CIFAR python pickle" in _error("cifar10", c10)
    with open(c10 / "data_batch_3", "wb") as fh:  # a pickle that would run code
        pickle.dump({b"data": np.zeros(3, np.uint8), b"f": print}, fh)
    assert "refusing to load" in _error("cifar10", c10)

    c100 = make_cifar100(tmp_path / "c100")
    (c100 / "cifar-100-python" / "meta").unlink()
    assert "meta is missing" in _error("cifar100", c100)

    svhn = make_svhn(tmp_path / "svhn")
    (svhn / "test_32x32.mat").unlink()
    assert "test_32x32.mat is missing" in _error("svhn", svhn)
    import scipy.io

    scipy.io.savemat(str(svhn / "test_32x32.mat"), {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(KdfairError, match="test_32x32.mat lacks the variables X and y"):
        open_dataset("svhn", svhn).split("test")

    celeba, _ = make_celeba(tmp_path / "celeba")
    (celeba / "list_eval_partition.txt").unlink()
    assert "list_eval_partition.txt is missing" in _error("celeba", celeba)
    celeba2, _ = make_celeba(tmp_path / "celeba2")
    attrs = celeba2 / "list_attr_celeba.txt"
    lines = attrs.read_text().splitlines()
    lines[5] = " ".join(lines[5].split()[:-1])  # image 000004 loses its last value
    attrs.write_text("\n".join(lines) + "\n")
    assert "list_attr_celeba.txt line 6" in _error("celeba", celeba2)
    celeba3, _ = make_celeba(tmp_path / "celeba3")
    (celeba3 / "img_align_celeba" / "000002.jpg").write_bytes(b"junk")
    assert "000002.jpg cannot be decoded" in _error("celeba", celeba3, "-O", "balance=false")
    assert "has no attribute 'Smile'" in _error("celeba", celeba3, "-O", "label=Smile")
    assert "has no option 'imagesize'" in _error("celeba", celeba3, "-O", "imagesize=3")

    folder = make_imagefolder(tmp_path / "if")
    csv = folder / "attributes.csv"
    csv.write_text("\n".join(csv.read_text().splitlines()[:-1]) + "\n")
    assert "has no row for val/fox/3.png" in _error("imagefolder", folder, "-O", "attributes_csv=attributes.csv")
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    assert "holds no images" in _error("imagefolder", empty)


# ---- torchvision models -------------------------------------------------------------------------

@pytest.mark.slow
def test_torchvision_resnet18_with_pretrained_file(tmp_path) -> None:
    from kdfair_cli.models.registry import build_model

    src = build_model("resnet18", 1000, (3, 224, 224))
    torch.save(src.state_dict(), tmp_path / "resnet18.pth")
    data = make_cifar10(tmp_path / "c10")
    res = train("cifar10", data, tmp_path / "m", "resnet18", "--pretrained", str(tmp_path / "resnet18.pth"))
    assert "fc.weight" in res.output and "dropped" in res.output
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["pretrained"]["dropped"] == ["fc.bias", "fc.weight"] and meta["num_classes"] == 10
    assert meta["hyperparameters"]["pretrained"] == str(tmp_path / "resnet18.pth")
    preds = predict(tmp_path / "m", tmp_path / "p.parquet")
    assert preds.logits.shape == (10, 10)
    (tmp_path / "bad.pth").write_bytes(b"\x80\x04junk")
    assert "not a readable state dict" in _error("cifar10", data, "--pretrained", str(tmp_path / "bad.pth"))


@pytest.mark.slow
def test_torchvision_names_build_for_the_class_count() -> None:
    from kdfair_cli.models.registry import build_model

    for arch, shape in (("densenet121", (3, 32, 32)), ("resnet34", (3, 32, 32)), ("vit_b_16", (3, 32, 32))):
        model = build_model(arch, 7, shape).eval()
        with torch.no_grad():
            assert model(torch.zeros(1, *shape)).shape == (1, 7), arch
    with pytest.raises(KdfairError, match="unknown arch 'resnet99'"):
        build_model("resnet99", 10, (3, 32, 32))
