"""A tiny in-memory dataset (no rendering) for fast training-loop tests."""

from __future__ import annotations

import numpy as np

from kdfair_cli.data.base import Attribute, DatasetInfo, Split


class Blobs:
    """Class c lights up channel c % 3 in band c // 3; learnable in a few epochs."""

    def __init__(self, path, n: int = 256, size: int = 16, classes: int = 4, with_val: bool = True) -> None:
        rng = np.random.default_rng(0)
        names = ("train", "val", "test") if with_val else ("train", "test")
        self.data = {}
        for split in names:
            m = n if split == "train" else n // 4
            y = rng.integers(0, classes, m)
            img = rng.integers(0, 60, (m, 3, size, size)).astype(np.uint8)
            for c in range(classes):
                img[y == c, c % 3, (c // 3) * 4:(c // 3) * 4 + 6, :] += 150
            self.data[split] = Split(split, img, y.astype(np.int64), np.arange(m, dtype=np.int64),
                                     {"color": rng.integers(0, 3, m)})
        self.info = DatasetInfo("blobs", classes, tuple(f"c{i}" for i in range(classes)),
                                (Attribute("color", ("r", "g", "b")),), (3, size, size), (0.3,) * 3,
                                (0.3,) * 3, names, "blobs-fingerprint")

    def split(self, name: str) -> Split:
        return self.data[name]


def open_blobs(path, **options) -> Blobs:
    return Blobs(path, **options)


def open_blobs_noval(path, **options) -> Blobs:
    return Blobs(path, with_val=False)
