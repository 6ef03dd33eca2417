"""Any class-per-folder image tree (ImageNet, Tiny ImageNet, your own), streamed from disk.

Layout: DIR/train/<class>/**/<image>, optionally DIR/val/<class>/... and DIR/test/<class>/...
(the classes are the sub-folders of train/, sorted). A split folder in the Tiny ImageNet form,
`val/images/*` + `val/val_annotations.txt` (file <tab> class ...), is read too; a split folder
without labels (Tiny ImageNet's test/) is ignored. Without a train/ folder, DIR itself is the
train split.

These sets do not fit in memory: a split holds file paths (Split.images is None,
Split.extra["path"]); training and predict decode each image in DataLoader workers (torchvision
transforms v2), send uint8 batches through pinned memory and normalise on the device.
Training transform: RandomResizedCrop(image_size, scale=(crop_scale, 1)) + horizontal flip,
with a per-sample seed drawn from the epoch's augmentation generator (same images whatever
the number of workers). Evaluation: Resize(resize) + CenterCrop(image_size).

Options (`--dataset-option KEY=VALUE`): image_size (224), resize (image_size * 8/7, 256 at 224),
crop_scale (0.08), mean / std (comma lists; ImageNet's by default), attributes_csv (a CSV with a
`path` column relative to DIR, e.g. `val/cat/001.jpg`, and one column per attribute; every image
needs a row; values become codes in sorted order of their text).
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli.data.base import Attribute, DatasetInfo, Split
from kdfair_cli.data.files import fingerprint, require_file
from kdfair_cli.data.options import check_options
from kdfair_cli.errors import KdfairError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
OPTIONS = {"image_size": int, "resize": int, "crop_scale": float, "mean": str, "std": str,
           "attributes_csv": str}


def _is_image(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS)


def _scan_classes(folder: Path) -> list[tuple[str, str]]:
    """(relative file path, class name) of a class-per-folder tree, sorted."""
    out = []
    for cls in sorted(d.name for d in os.scandir(folder) if d.is_dir()):
        for dirpath, dirnames, filenames in os.walk(folder / cls, followlinks=True):
            dirnames.sort()
            for name in sorted(filenames):
                if _is_image(name):
                    out.append((os.path.join(dirpath, name), cls))
    return out


def _scan_annotated(folder: Path, annotations: Path) -> list[tuple[str, str]]:
    out = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t") if "\t" in line else line.split()
        if not fields or not fields[0].strip():
            continue
        if len(fields) < 2:
            raise KdfairError(f"annotation file {annotations} line {number}: expected '<file> <class> ...'")
        out.append((str(folder / "images" / fields[0].strip()), fields[1].strip()))
    return out


def scan_split(folder: Path, split: str) -> list[tuple[str, str]] | None:
    """The labelled images of one split folder, or None if it has no labels."""
    annotations = folder / f"{split}_annotations.txt"
    if (folder / "images").is_dir() and annotations.is_file():
        return _scan_annotated(folder, annotations)
    if (folder / "images").is_dir() and not any(d.is_dir() and d.name != "images" for d in os.scandir(folder)):
        return None
    return _scan_classes(folder)


def _floats(text: str, key: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3:
        raise KdfairError(f"dataset imagefolder option {key}={text!r}: expected three comma-separated numbers")
    return vals  # type: ignore[return-value]


def _read_attributes(csv_path: Path, root: Path, rel_paths: set[str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """path -> {attribute: value} and the attribute names of the CSV."""
    require_file(csv_path, "imagefolder option attributes_csv")
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "path" not in fields:
            raise KdfairError(f"attributes CSV {csv_path} has no 'path' column (columns: {', '.join(fields)})")
        names = [f for f in fields if f != "path"]
        if not names:
            raise KdfairError(f"attributes CSV {csv_path} has no attribute columns besides 'path'")
        rows: dict[str, dict[str, str]] = {}
        for row in reader:
            key = row["path"].strip().replace("\\", "/").lstrip("./") if row["path"] else ""
            rows[key] = {n: (row[n] or "").strip() for n in names}
    missing = sorted(rel_paths - rows.keys())
    if missing:
        raise KdfairError(f"attributes CSV {csv_path} has no row for {missing[0]} ({len(missing)} images lack one)")
    return rows, names


class ImageFolderDataset:
    """Splits of file paths; batches are decoded by a streaming DataLoader (make_batches)."""

    def __init__(self, info: DatasetInfo, splits: dict[str, Split], image_size: int, resize: int,
                 crop_scale: float) -> None:
        self.info = info
        self._splits = splits
        self.image_size, self.resize, self.crop_scale = image_size, resize, crop_scale
        self.workers = min(8, os.cpu_count() or 1)

    def configure_loading(self, workers: int | None = None) -> None:
        """Set the number of DataLoader worker processes (--workers)."""
        if workers is not None:
            self.workers = max(0, int(workers))

    def split(self, name: str) -> Split:
        if name not in self._splits:
            raise KdfairError(f"dataset imagefolder has no split '{name}'; it has: {', '.join(self.info.splits)}")
        return self._splits[name]

    def make_batches(self, split: Split, device: Any, mean: tuple[float, ...], std: tuple[float, ...]):
        from kdfair_cli.data.streaming import StreamingBatches

        return StreamingBatches(list(split.extra["path"]), device, mean, std, self.image_size, self.resize,
                                self.crop_scale, self.workers)


def open_imagefolder(path: str | Path, **options: Any) -> ImageFolderDataset:
    check_options("imagefolder", options, OPTIONS)
    root = Path(path)
    size = int(options.get("image_size", 224))
    resize = int(options.get("resize", round(size * 8 / 7)))
    crop_scale = float(options.get("crop_scale", 0.08))
    if not 8 <= size <= 4096 or resize < size:
        raise KdfairError(f"dataset imagefolder: need 8 <= image_size <= 4096 and resize >= image_size "
                          f"(got {size} and {resize})")
    if not 0 < crop_scale <= 1:
        raise KdfairError(f"dataset imagefolder option crop_scale={crop_scale}: expected a value in (0, 1]")
    mean = _floats(options["mean"], "mean") if "mean" in options else IMAGENET_MEAN
    std = _floats(options["std"], "std") if "std" in options else IMAGENET_STD
    if (root / "train").is_dir():
        folders = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    else:
        folders = {"train": root}
    scans: dict[str, list[tuple[str, str]]] = {}
    for split, folder in folders.items():
        found = scan_split(folder, split)
        if found is not None:
            scans[split] = found
    if "train" not in scans or not scans["train"]:
        raise KdfairError(f"image folder {folders['train']} holds no images in class sub-folders "
                          f"(expected {folders['train']}/<class>/<image>)")
    class_names = sorted({c for _, c in scans["train"]})
    index = {c: i for i, c in enumerate(class_names)}
    for split, items in scans.items():
        unknown = sorted({c for _, c in items} - index.keys())
        if unknown:
            raise KdfairError(f"image folder {folders[split]}: class '{unknown[0]}' is not among the train classes")
    rel = {s: [os.path.relpath(p, root).replace(os.sep, "/") for p, _ in items] for s, items in scans.items()}
    small = []
    attr_rows, attr_names = None, []
    if "attributes_csv" in options:
        csv_path = Path(options["attributes_csv"])
        csv_path = csv_path if csv_path.is_absolute() or csv_path.exists() else root / csv_path
        attr_rows, attr_names = _read_attributes(csv_path, root, {r for rs in rel.values() for r in rs})
        small.append(csv_path)
    attributes = []
    values: dict[str, dict[str, int]] = {}
    for name in attr_names:
        vals = sorted({row[name] for row in attr_rows.values()})  # type: ignore[union-attr]
        values[name] = {v: i for i, v in enumerate(vals)}
        attributes.append(Attribute(name, tuple(vals)))
    splits = {}
    sizes = []
    for split, items in scans.items():
        for (p, _), r in zip(items, rel[split]):
            sizes.append((r, os.stat(p).st_size))
        attrs = {n: np.array([values[n][attr_rows[r][n]] for r in rel[split]], dtype=np.int64)  # type: ignore[index]
                 for n in attr_names}
        labels = np.array([index[c] for _, c in items], dtype=np.int64)
        paths = np.array([p for p, _ in items], dtype=object)
        splits[split] = Split(split, None, labels, np.arange(len(items), dtype=np.int64), attrs,  # type: ignore[arg-type]
                              {"path": paths})
    opts: dict[str, Any] = {"image_size": size, "resize": resize, "crop_scale": crop_scale,
                            "mean": list(mean), "std": list(std)}
    if "attributes_csv" in options:
        opts["attributes_csv"] = str(options["attributes_csv"])
    csv_hash = hashlib.sha256(small[0].read_bytes()).hexdigest() if small else None
    fp = fingerprint(root, (), (), {**opts, "attributes_sha256": csv_hash}, sizes=sizes)
    info = DatasetInfo("imagefolder", len(class_names), tuple(class_names), tuple(attributes), (3, size, size),
                       tuple(mean), tuple(std), tuple(s for s in ("train", "val", "test") if s in splits), fp, opts)
    return ImageFolderDataset(info, splits, size, resize, crop_scale)

