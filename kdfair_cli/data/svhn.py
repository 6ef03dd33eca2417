"""SVHN (cropped digits) from the .mat files, read in place (never downloaded).

Layout: train_32x32.mat, test_32x32.mat (and extra_32x32.mat, added to train with
`extra=true`). Each file holds X (uint8 [32, 32, 3, N]) and y ([N, 1], digits 1..10 where 10
means 0). Held in memory as uint8 NCHW (73,257 + 26,032 images: 300 MB; with extra 1.9 GB).
Splits: train, test (validation is a seeded holdout of train).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli.data.base import DatasetInfo, Split
from kdfair_cli.data.files import InMemoryDataset, fingerprint, require_file
from kdfair_cli.data.options import check_options
from kdfair_cli.errors import KdfairError

SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def load_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NCHW images, int64 labels 0..9) of one SVHN .mat file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except Exception as exc:  # scipy raises several types for a non-.mat file
        raise KdfairError(f"SVHN file {path} is not a readable .mat file: {exc}") from exc
    if "X" not in mat or "y" not in mat:
        raise KdfairError(f"SVHN file {path} lacks the variables X and y")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[2] != 3:
        raise KdfairError(f"SVHN file {path}: X has shape {x.shape}, expected [32, 32, 3, N]")
    if x.shape[3] != y.shape[0]:
        raise KdfairError(f"SVHN file {path}: {x.shape[3]} images but {y.shape[0]} labels")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise KdfairError(f"SVHN file {path}: labels outside 1..10")
    y[y == 10] = 0
    images = np.ascontiguousarray(np.transpose(x.astype(np.uint8, copy=False), (3, 2, 0, 1)))
    return images, y


def open_svhn(path: str | Path, **options: Any) -> InMemoryDataset:
    check_options("svhn", options, {"extra": bool})
    extra = bool(options.get("extra", False))
    root = Path(path)
    files = {s: require_file(root / FILES[s], f"SVHN folder {root}") for s in ("train", "test")}
    train_files = [files["train"]] + ([require_file(root / FILES["extra"], f"SVHN folder {root} (extra=true)")]
                                      if extra else [])

    def load(split: str) -> Split:
        parts = [load_mat(f) for f in (train_files if split == "train" else [files["test"]])]
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return Split(split, x, y, np.arange(len(y), dtype=np.int64))

    opts = {"extra": extra}
    info = DatasetInfo("svhn", 10, tuple(str(d) for d in range(10)), (), (3, 32, 32), SVHN_MEAN, SVHN_STD,
                       ("train", "test"), fingerprint(root, train_files + [files["test"]], (), opts), opts)
    return InMemoryDataset(info, load)
