"""Tiny files in the exact on-disk formats of CIFAR-10/100, SVHN, CelebA and an ImageFolder tree."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np

CELEBA_ATTRS = ["5_o_Clock_Shadow", "Eyeglasses", "Male", "Smiling", "Young"]


def _pattern(rng: np.random.Generator, y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images [N, 3, H, W] whose brightest channel is the class (mod 3): learnable."""
    img = rng.integers(0, 80, (len(y), *shape)).astype(np.uint8)
    for i, c in enumerate(y):
        img[i, int(c) % 3] += 150
    return img


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def make_cifar10(root: Path, per_batch: int = 8, n_test: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(d / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_vis": 3072,
                               b"num_cases_per_batch": per_batch})
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        y = rng.integers(0, 10, n)
        x = _pattern(rng, y, (3, 32, 32)).reshape(n, 3072)
        _dump(d / name, {b"batch_label": name.encode(), b"labels": [int(v) for v in y], b"data": x,
                         b"filenames": [f"img_{i}.png".encode() for i in range(n)]})
    return root


def make_cifar100(root: Path, n_train: int = 24, n_test: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    _dump(d / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                       b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        x = _pattern(rng, fine, (3, 32, 32)).reshape(n, 3072)
        _dump(d / name, {b"filenames": [b"x.png"] * n, b"batch_label": name.encode(),
                         b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) // 5 for v in fine],
                         b"data": x})
    return root


def make_svhn(root: Path, n_train: int = 24, n_test: int = 10, seed: int = 0) -> Path:
    import scipy.io

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        digits = rng.integers(0, 10, n)
        x = np.transpose(_pattern(rng, digits, (3, 32, 32)), (2, 3, 1, 0))  # [32, 32, 3, N]
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(str(root / name), {"X": x, "y": y})
    return root


def make_celeba(root: Path, n: int = 30, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A CelebA folder (JPEG 22x26 images); returns it and the -1/1 attribute table."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "img_align_celeba").mkdir(parents=True)
    table = np.where(rng.random((n, len(CELEBA_ATTRS))) < 0.5, 1, -1)
    table[:, CELEBA_ATTRS.index("Smiling")] = np.where(np.arange(n) % 3 == 0, 1, -1)  # 1/3 smiling
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, f in enumerate(files):
        smiling = table[i, CELEBA_ATTRS.index("Smiling")] > 0
        img = rng.integers(0, 60, (26, 22, 3)).astype(np.uint8)
        img[..., 0 if smiling else 2] += 180
        Image.fromarray(img).save(root / "img_align_celeba" / f, quality=95)
    lines = [str(n), " ".join(CELEBA_ATTRS) + " "]
    lines += [f"{f} " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, table)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    part = np.where(np.arange(n) < n * 0.6, 0, np.where(np.arange(n) < n * 0.8, 1, 2))
    (root / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, part)))
    return root, table


def make_imagefolder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), per_class: int = 4,
                     splits: tuple[str, ...] = ("train", "val"), size: int = 20, seed: int = 0) -> Path:
    """root/<split>/<class>/<i>.png and root/attributes.csv (path, skin: light/dark alternating)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = []
    for split in splits:
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                img[..., c % 3] += 180
                rel = f"{split}/{cls}/{i}.png"
                Image.fromarray(img).save(root / rel)
                rows.append((rel, "light" if i % 2 else "dark"))
    with open(root / "attributes.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "skin"])
        w.writerows(rows)
    return root
