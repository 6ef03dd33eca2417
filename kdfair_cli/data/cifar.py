"""CIFAR-10 and CIFAR-100 in the python pickle layout, read in place (never downloaded).

Layouts (the `--data` folder may be the batches folder itself or its parent):
  cifar-10-batches-py/   data_batch_1..5, test_batch, batches.meta
  cifar-100-python/      train, test, meta
Each batch is a pickled dict with b'data' (uint8 [N, 3072], RGB planes of 32x32) and
b'labels' (CIFAR-10) or b'fine_labels'/b'coarse_labels' (CIFAR-100). The pickles are read with
a restricted unpickler that builds only dicts, lists, strings and numpy arrays, so a foreign
file cannot run code. Splits: train, test (validation is a seeded holdout of train).
CIFAR-100: `label=fine` (default, 100 classes) or `coarse` (20 superclasses); the other
labelling is carried as the attribute `coarse` / `fine`.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli.data.base import Attribute, DatasetInfo, Split
from kdfair_cli.data.files import InMemoryDataset, fingerprint, require_file
from kdfair_cli.data.options import check_options
from kdfair_cli.errors import KdfairError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
#: The usual per-channel normalisation (mean/std of the training pixels on [0, 1]).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),  # bytes pickled by Python 3, protocol 2
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_pickle(path: Path) -> dict:
    """A CIFAR batch as a dict with str keys; KdfairError naming the file if it is not one."""
    try:
        with open(path, "rb") as fh:
            obj = _SafeUnpickler(io.BufferedReader(fh), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise KdfairError(f"CIFAR file {path} is not a CIFAR python pickle: {exc}") from exc
    if not isinstance(obj, dict):
        raise KdfairError(f"CIFAR file {path} is not a CIFAR python pickle (holds a {type(obj).__name__})")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _names(values: Any) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


def _images(batch: dict, path: Path) -> np.ndarray:
    data = batch.get("data")
    if data is None:
        raise KdfairError(f"CIFAR file {path} has no 'data' entry")
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise KdfairError(f"CIFAR file {path}: 'data' has shape {data.shape}, expected [N, 3072]")
    return np.ascontiguousarray(data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32))


def _labels(batch: dict, key: str, path: Path, n: int, num_classes: int) -> np.ndarray:
    if key not in batch:
        raise KdfairError(f"CIFAR file {path} has no '{key}' entry")
    y = np.asarray(batch[key], dtype=np.int64)
    if y.shape != (n,):
        raise KdfairError(f"CIFAR file {path}: '{key}' has {y.shape[0] if y.ndim else 0} entries for {n} images")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise KdfairError(f"CIFAR file {path}: '{key}' has values outside 0..{num_classes - 1}")
    return y


def _root(path: Path, folder: str) -> Path:
    return path / folder if (path / folder).is_dir() else path


def open_cifar10(path: str | Path, **options: Any) -> InMemoryDataset:
    check_options("cifar10", options, {})
    root = _root(Path(path), CIFAR10_DIR)
    files = {"train": [root / f for f in CIFAR10_TRAIN], "test": [root / "test_batch"]}
    meta_path = require_file(root / "batches.meta", f"CIFAR-10 folder {root} (expected {CIFAR10_DIR}/)")
    for f in files["train"] + files["test"]:
        require_file(f, f"CIFAR-10 folder {root}")
    meta = load_pickle(meta_path)
    names = _names(meta.get("label_names", ()))
    if len(names) != 10:
        raise KdfairError(f"CIFAR file {meta_path}: 'label_names' has {len(names)} names, expected 10")

    def load(split: str) -> Split:
        images, labels = [], []
        for f in files[split]:
            batch = load_pickle(f)
            x = _images(batch, f)
            images.append(x)
            labels.append(_labels(batch, "labels", f, len(x), 10))
        x, y = np.concatenate(images), np.concatenate(labels)
        return Split(split, x, y, np.arange(len(y), dtype=np.int64))

    info = DatasetInfo("cifar10", 10, names, (), (3, 32, 32), CIFAR10_MEAN, CIFAR10_STD, ("train", "test"),
                       fingerprint(root, files["train"] + files["test"], [meta_path]), {})
    return InMemoryDataset(info, load)


def open_cifar100(path: str | Path, **options: Any) -> InMemoryDataset:
    check_options("cifar100", options, {"label": str})
    label = options.get("label", "fine")
    if label not in ("fine", "coarse"):
        raise KdfairError(f"dataset cifar100 option label={label!r}: expected fine or coarse")
    other = "coarse" if label == "fine" else "fine"
    root = _root(Path(path), CIFAR100_DIR)
    meta_path = require_file(root / "meta", f"CIFAR-100 folder {root} (expected {CIFAR100_DIR}/)")
    files = {s: require_file(root / s, f"CIFAR-100 folder {root}") for s in ("train", "test")}
    meta = load_pickle(meta_path)
    fine, coarse = _names(meta.get("fine_label_names", ())), _names(meta.get("coarse_label_names", ()))
    if len(fine) != 100 or len(coarse) != 20:
        raise KdfairError(f"CIFAR file {meta_path}: expected 100 fine and 20 coarse label names, "
                          f"found {len(fine)} and {len(coarse)}")
    names = {"fine": fine, "coarse": coarse}

    def load(split: str) -> Split:
        f = files[split]
        batch = load_pickle(f)
        x = _images(batch, f)
        y = _labels(batch, f"{label}_labels", f, len(x), len(names[label]))
        a = _labels(batch, f"{other}_labels", f, len(x), len(names[other]))
        return Split(split, x, y, np.arange(len(y), dtype=np.int64), {other: a})

    info = DatasetInfo("cifar100", len(names[label]), names[label], (Attribute(other, names[other]),),
                       (3, 32, 32), CIFAR100_MEAN, CIFAR100_STD, ("train", "test"),
                       fingerprint(root, list(files.values()), [meta_path], {"label": label}), {"label": label})
    return InMemoryDataset(info, load)
