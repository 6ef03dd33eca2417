"""CelebA from its standard folder, read in place (never downloaded).

Layout: img_align_celeba/ (000001.jpg ...), list_attr_celeba.txt (line 1: count; line 2: the
40 attribute names; then `file v1 .. v40` with values -1/1), list_eval_partition.txt
(`file 0|1|2` for train/val/test).

Options (`--dataset-option KEY=VALUE`):
  label=Smiling          the binary attribute predicted (classes "not X", "X")
  attributes=Young,Male  protected attributes carried into predictions as attr_* columns
  balance=true           undersample the over-represented label in the TRAIN split to equal
                         counts (the paper's setting), seeded by balance_seed (default 0)
  image_size=64          images are centre-cropped to a square and resized to this size
  cache_dir=DIR          keep the resized uint8 arrays there as .npy (keyed by the dataset
                         fingerprint and size) so later runs skip the JPEG decoding
  threads=N              decoding threads (default: min(8, CPUs))

Images are held in memory as uint8 NCHW: 202,599 x 3 x S x S bytes, 2.5 GB at S = 64,
10 GB at S = 128. sample_id is the row of the image in its partition (stable whether or not
train is balanced).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli.data.base import Attribute, DatasetInfo, Split
from kdfair_cli.data.files import InMemoryDataset, fingerprint, require_file
from kdfair_cli.data.options import check_options
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import atomic_path

IMAGES, ATTRS, PARTITION = "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"
SPLITS = ("train", "val", "test")
#: Per-channel statistics of aligned CelebA images on [0, 1].
CELEBA_MEAN, CELEBA_STD = (0.5063, 0.4258, 0.3832), (0.3106, 0.2904, 0.2897)
OPTIONS = {"label": str, "attributes": str, "balance": bool, "balance_seed": int, "image_size": int,
           "cache_dir": str, "threads": int}


def read_attr_table(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(attribute names, file names, int8 values in {0, 1}) of list_attr_celeba.txt."""
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise KdfairError(f"CelebA file {path} is malformed: expected a count line and a header line")
    names = lines[1].split()
    files, rows = [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise KdfairError(f"CelebA file {path} line {number}: {len(fields) - 1} values for {len(names)} attributes")
        try:
            values = [int(v) for v in fields[1:]]
        except ValueError:
            raise KdfairError(f"CelebA file {path} line {number}: values must be -1 or 1") from None
        if any(v not in (-1, 1) for v in values):
            raise KdfairError(f"CelebA file {path} line {number}: values must be -1 or 1")
        files.append(fields[0])
        rows.append(values)
    table = (np.array(rows, dtype=np.int8).reshape(-1, len(names)) > 0).astype(np.int8)
    return names, files, table


def read_partition(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise KdfairError(f"CelebA file {path} line {number}: expected '<file> 0|1|2'")
        out[fields[0]] = int(fields[1])
    return out


def load_image(path: Path, size: int) -> np.ndarray:
    """Centre-crop to a square, resize to size x size; uint8 [3, size, size]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it can
            img = img.convert("RGB")
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except FileNotFoundError:
        raise KdfairError(f"CelebA image {path} is missing") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise KdfairError(f"CelebA image {path} cannot be decoded: {exc}") from exc


def open_celeba(path: str | Path, **options: Any) -> InMemoryDataset:
    check_options("celeba", options, OPTIONS)
    root = Path(path)
    label = options.get("label", "Smiling")
    attributes = [a.strip() for a in str(options.get("attributes", "Young,Male")).split(",") if a.strip()]
    balance = bool(options.get("balance", True))
    seed = int(options.get("balance_seed", 0))
    size = int(options.get("image_size", 64))
    threads = int(options.get("threads", min(8, os.cpu_count() or 1)))
    cache_dir = options.get("cache_dir")
    if not 8 <= size <= 1024:
        raise KdfairError(f"dataset celeba option image_size={size}: expected 8 to 1024")
    attr_path = require_file(root / ATTRS, f"CelebA folder {root}")
    part_path = require_file(root / PARTITION, f"CelebA folder {root}")
    image_dir = root / IMAGES
    if not image_dir.is_dir():
        raise KdfairError(f"CelebA folder {root}: folder {image_dir} is missing")
    names, files, table = read_attr_table(attr_path)
    for name in [label, *attributes]:
        if name not in names:
            raise KdfairError(f"CelebA file {attr_path} has no attribute '{name}'; it has: {', '.join(names)}")
    partition = read_partition(part_path)
    missing = [f for f in files if f not in partition]
    if missing:
        raise KdfairError(f"CelebA file {part_path} has no partition for {missing[0]} ({len(missing)} images)")
    part = np.array([partition[f] for f in files], dtype=np.int8)
    opts = {"label": label, "attributes": ",".join(attributes), "balance": balance, "balance_seed": seed,
            "image_size": size}
    fp = fingerprint(root, (), [attr_path, part_path], opts, sizes=[(f, 0) for f in files])
    col = {n: i for i, n in enumerate(names)}

    def pixels(split: str, rows: np.ndarray) -> np.ndarray:
        cache = Path(cache_dir) / f"celeba-{fp[:16]}-{split}.npy" if cache_dir else None
        if cache is not None and cache.is_file():
            arr = np.load(cache, mmap_mode="r")
            if arr.shape == (len(rows), 3, size, size):
                return np.asarray(arr)
        out = np.empty((len(rows), 3, size, size), dtype=np.uint8)

        def fill(i: int) -> None:
            out[i] = load_image(image_dir / files[rows[i]], size)

        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(fill, range(len(rows))))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, out)
        return out

    def load(split: str) -> Split:
        rows = np.flatnonzero(part == SPLITS.index(split))
        y = table[rows, col[label]].astype(np.int64)
        keep = np.arange(len(rows))
        if split == "train" and balance and len(rows):
            counts = np.bincount(y, minlength=2)
            major = int(np.argmax(counts))
            excess = int(counts[major] - counts[1 - major])
            drop = np.random.default_rng(seed).permutation(np.flatnonzero(y == major))[:excess]
            keep = np.setdiff1d(keep, drop)
        attrs = {a: table[rows[keep], col[a]].astype(np.int64) for a in attributes}
        return Split(split, pixels(split, rows[keep]), y[keep], keep.astype(np.int64), attrs)

    info = DatasetInfo("celeba", 2, (f"not {label}", label), tuple(Attribute(a, ("no", "yes")) for a in attributes),
                       (3, size, size), CELEBA_MEAN, CELEBA_STD, SPLITS, fp, opts)
    return InMemoryDataset(info, load)
