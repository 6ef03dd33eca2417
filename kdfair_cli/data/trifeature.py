"""The Trifeature dataset: generate it to a folder, open it as a Dataset (docs/trifeature.md).

Every (shape, colour, texture) combination appears in every split, `per_combination` times.
Samples are stored in combination order: shape-major, then colour, texture, replicate.

Counterfactual twins: in val and test, for each (shape, texture, replicate) the 10 colours are
randomly split into groups of `twin_group_size` (default 2); a group shares one pose (shape
rotation, position, texture angle, offset and noise), recorded as `pose_id`. Two samples with
the same pose_id differ only in colour. Train draws every pose independently (pose_id unique).

Spurious correlation: in train only, with probability `spurious` a sample's colour is
replaced by the colour with its shape's index (flagged in the `spurious` column).

On disk: `<split>_images.npy` (uint8 [N, 3, S, S]), `<split>.parquet` (one row per sample) and
`manifest.json` (options, checksums, normalisation, names). Same options -> identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kdfair_cli import __version__
from kdfair_cli.data.base import Attribute, DatasetInfo, Split, check_labels
from kdfair_cli.data.trifeature_render import (
    CANVAS, COLOR_NAMES, COLORS, SHAPES, TEXTURES, Pose, draw_poses, render_image,
)
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import atomic_dir, check_replaceable, register_input

FORMAT = "kdfair.trifeature/1"
MANIFEST = "manifest.json"
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Per-combination counts. Train 8 and val 1 as in the paper's 10,000-image set; test 10 (10,000
#: test images, 100 per (colour, shape) cell) so that the noise floor of colour EOD lies well
#: below the differences the study looks for (docs/trifeature.md, "Noise floor").
DEFAULT_PER_COMBINATION: dict[str, int] = {"train": 8, "val": 1, "test": 10}
#: Splits whose poses are shared by groups of colours (counterfactual colour twins).
TWIN_SPLITS = frozenset({"val", "test"})
TABLE_COLUMNS: tuple[str, ...] = (
    "sample_id", "label", "color", "texture", "pose_id", "spurious",
    "angle", "pos_y", "pos_x", "texture_angle", "offset_u", "offset_v", "noise_seed",
)
N_SHAPES, N_COLORS, N_TEXTURES = len(SHAPES), len(COLOR_NAMES), len(TEXTURES)
#: Allowed twin group sizes: divisors of the number of colours.
TWIN_GROUP_SIZES = (1, 2, 5, 10)

Progress = Callable[[int, int], None]


@dataclass
class _Plan:
    """What to render for one split: per-sample codes and the pose of each sample."""

    shape: np.ndarray
    color: np.ndarray
    texture: np.ndarray
    pose_id: np.ndarray
    spurious: np.ndarray
    poses: list[Pose]

    def __len__(self) -> int:
        return int(self.shape.shape[0])


# ---- generation -----------------------------------------------------------------------------

def _validate_options(image_size: int, counts: dict[str, int], spurious: float) -> None:
    if not 8 <= image_size <= CANVAS:
        raise KdfairError(f"--image-size {image_size} is out of range; expected 8 to {CANVAS}")
    for split, n in counts.items():
        if n < 1:
            raise KdfairError(f"--{split}-per-combination {n} is out of range; expected at least 1")
    if not (math.isfinite(spurious) and 0.0 <= spurious <= 1.0):
        raise KdfairError(f"--spurious {spurious} is out of range; expected a probability in [0, 1]")


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise KdfairError(f"--seed {seed} is out of range; expected an integer >= 0")


def _check_space(out: Path, image_size: int, counts: dict[str, int]) -> None:
    """Refuse a dataset the disk cannot hold before planning it: an absurd count would otherwise
    end in MemoryError, or SIGBUS when the memory-mapped images meet a full disk."""
    per_image = 3 * image_size * image_size + 64  # pixels, plus a generous table row
    need = sum(counts.values()) * N_SHAPES * N_COLORS * N_TEXTURES * per_image
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if need > free:
        raise KdfairError(f"Trifeature with {', '.join(f'{n} {s}' for s, n in counts.items())} per combination "
                          f"needs about {need / 1e9:.3g} GB but {parent} has {free / 1e9:.3g} GB free; "
                          "lower --train-per-combination (or --image-size)")


def _is_trifeature_folder(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST).read_text()).get("format", "").startswith("kdfair.trifeature/")
    except (OSError, ValueError, AttributeError):
        return False


def _plan_split(split: int, n: int, seed: int, spurious: float, twin_group: int | None) -> _Plan:
    """Codes and poses of one split; each split has its own random streams, so changing one
    split's count or the spurious rate leaves the other draws unchanged."""
    shape, color, texture, rep = (a.ravel() for a in np.meshgrid(
        np.arange(N_SHAPES), np.arange(N_COLORS), np.arange(N_TEXTURES), np.arange(n), indexing="ij"))
    pose_rng = np.random.default_rng([seed, split, 0])
    if twin_group:
        pose_id = _twin_pose_ids(shape, color, texture, rep, n, twin_group, np.random.default_rng([seed, split, 2]))
        poses = draw_poses(pose_rng, int(pose_id.max()) + 1)
    else:
        poses = draw_poses(pose_rng, shape.size)
        pose_id = np.arange(shape.size)
    flip = np.random.default_rng([seed, split, 1]).random(shape.size) < spurious
    color = np.where(flip, shape, color)
    return _Plan(shape.astype(np.int64), color.astype(np.int64), texture.astype(np.int64),
                 pose_id.astype(np.int64), flip, [poses[i] for i in pose_id])


def _twin_pose_ids(shape: np.ndarray, color: np.ndarray, texture: np.ndarray, rep: np.ndarray, n: int,
                   group: int, rng: np.random.Generator) -> np.ndarray:
    """Pose ids shared by `group` randomly chosen colours of each (shape, texture, replicate)."""
    cells = N_SHAPES * N_TEXTURES * n
    order = rng.permuted(np.tile(np.arange(N_COLORS), (cells, 1)), axis=1)
    slot = np.argsort(order, axis=1)  # slot[cell, c] = position of colour c in the cell's order
    cell = (shape * N_TEXTURES + texture) * n + rep
    return cell * (N_COLORS // group) + slot[cell, color] // group


def _render_split(plan: _Plan, path: Path, image_size: int, tick: Callable[[], None]) -> None:
    """Render straight into a memory-mapped .npy, so even 224 px sets need little memory."""
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8,
                                       shape=(len(plan), 3, image_size, image_size))
    for i in range(len(plan)):
        images[i] = render_image(int(plan.shape[i]), int(plan.color[i]), int(plan.texture[i]),
                                 plan.poses[i], image_size)
        tick()
    images.flush()
    del images


def _write_table(plan: _Plan, path: Path) -> None:
    """One row per sample; fixed writer settings so the bytes depend only on the data."""
    poses = plan.poses
    columns = {
        "sample_id": pa.array(np.arange(len(plan), dtype=np.int64)),
        "label": pa.array(plan.shape),
        "color": pa.array(plan.color),
        "texture": pa.array(plan.texture),
        "pose_id": pa.array(plan.pose_id),
        "spurious": pa.array(plan.spurious),
        "angle": pa.array([p.angle for p in poses], pa.int16()),
        "pos_y": pa.array([p.pos_y for p in poses], pa.float64()),
        "pos_x": pa.array([p.pos_x for p in poses], pa.float64()),
        "texture_angle": pa.array([p.texture_angle for p in poses], pa.int16()),
        "offset_u": pa.array([p.offset_u for p in poses], pa.float64()),
        "offset_v": pa.array([p.offset_v for p in poses], pa.float64()),
        "noise_seed": pa.array([p.noise_seed for p in poses], pa.int64()),
    }
    pq.write_table(pa.table(columns), path, compression="zstd", compression_level=3,
                   use_dictionary=False, write_statistics=False, version="2.6")


def _channel_stats(images: np.ndarray, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images on [0, 1], accumulated exactly in integers."""
    total = np.zeros(3, dtype=np.float64)
    squares = np.zeros(3, dtype=np.float64)
    for start in range(0, images.shape[0], chunk):
        block = np.asarray(images[start:start + chunk], dtype=np.int64)
        total += block.sum(axis=(0, 2, 3))
        squares += (block * block).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count / 255.0
    std = np.sqrt(np.maximum(squares / count / 255.0**2 - mean**2, 0.0))
    return [round(float(m), 8) for m in mean], [round(float(s), 8) for s in std]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(files: dict[str, dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def generate_trifeature(
    out_dir: str | Path,
    *,
    image_size: int = 32,
    train_per_combination: int = DEFAULT_PER_COMBINATION["train"],
    val_per_combination: int = DEFAULT_PER_COMBINATION["val"],
    test_per_combination: int = DEFAULT_PER_COMBINATION["test"],
    seed: int = 0,
    spurious: float = 0.0,
    twin_group_size: int = 2,
    progress: Progress | None = None,
) -> Path:
    """Generate Trifeature into `out_dir` (written atomically) and return its path.

    progress(done, total) is called after every image.
    """
    counts = {"train": train_per_combination, "val": val_per_combination, "test": test_per_combination}
    _validate_options(image_size, counts, spurious)
    _check_seed(seed)
    if twin_group_size not in TWIN_GROUP_SIZES:
        raise KdfairError(f"--twin-group-size {twin_group_size} is not allowed; expected one of "
                          f"{', '.join(map(str, TWIN_GROUP_SIZES))} (divisors of the 10 colours)")
    out = Path(out_dir)
    check_replaceable(out, _is_trifeature_folder, f"Trifeature {MANIFEST}")
    _check_space(out, image_size, counts)
    options = {"image_size": image_size, **{f"{s}_per_combination": n for s, n in counts.items()},
               "seed": seed, "spurious": float(spurious), "twin_group_size": twin_group_size}
    total = sum(n * N_SHAPES * N_COLORS * N_TEXTURES for n in counts.values())
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    with atomic_dir(out.resolve()) as tmp:
        files: dict[str, dict[str, Any]] = {}
        split_entries: dict[str, dict[str, Any]] = {}
        for index, split in enumerate(SPLITS):
            plan = _plan_split(index, counts[split], seed, spurious if split == "train" else 0.0,
                               twin_group=twin_group_size if split in TWIN_SPLITS else None)
            images_name, table_name = f"{split}_images.npy", f"{split}.parquet"
            _render_split(plan, tmp / images_name, image_size, tick)
            _write_table(plan, tmp / table_name)
            for name in (images_name, table_name):
                files[name] = {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
            split_entries[split] = {"images": images_name, "table": table_name, "num_samples": len(plan),
                                    "per_combination": counts[split], "twins": split in TWIN_SPLITS}
        mean, std = _channel_stats(np.load(tmp / "train_images.npy", mmap_mode="r"))
        manifest = _manifest(options, split_entries, files, mean, std)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _manifest(options: dict[str, Any], splits: dict[str, Any], files: dict[str, Any],
              mean: list[float], std: list[float]) -> dict[str, Any]:
    size = options["image_size"]
    return {
        "format": FORMAT,
        "kdfair_version": __version__,
        "name": "trifeature",
        "options": options,
        "num_classes": N_SHAPES,
        "class_names": list(SHAPES),
        "attributes": {"color": list(COLOR_NAMES), "texture": list(TEXTURES)},
        "colors_rgb": {name: list(rgb) for name, rgb in COLORS.items()},
        "input_shape": [3, size, size],
        "mean": mean,
        "std": std,
        "splits": splits,
        "files": files,
        "fingerprint": _fingerprint(files),
    }


# ---- loading --------------------------------------------------------------------------------

class TrifeatureDataset:
    """A generated Trifeature folder; splits are checked against the manifest when loaded."""

    def __init__(self, path: Path, manifest: dict[str, Any], *, verify: bool, mmap: bool) -> None:
        self.path = path
        self.manifest = manifest
        self.verify = verify
        self.mmap = mmap
        self.info = DatasetInfo(
            name="trifeature",
            num_classes=int(manifest["num_classes"]),
            class_names=tuple(manifest["class_names"]),
            attributes=tuple(Attribute(name, tuple(values)) for name, values in manifest["attributes"].items()),
            input_shape=tuple(manifest["input_shape"]),
            mean=tuple(manifest["mean"]),
            std=tuple(manifest["std"]),
            splits=tuple(manifest["splits"]),
            fingerprint=manifest["fingerprint"],
            options=dict(manifest["options"]),
        )

    def split(self, name: str) -> Split:
        """Load one split: images as uint8 [N, 3, S, S], codes as int64."""
        entry = self.manifest["splits"].get(name)
        if entry is None:
            raise KdfairError(f"{self.path / MANIFEST} has no split '{name}'; expected one of: "
                              f"{', '.join(self.manifest['splits'])}")
        n = int(entry["num_samples"])
        images = self._load_images(self.path / entry["images"], n)
        table = self._load_table(self.path / entry["table"], n)
        split = Split(
            name=name,
            images=images,
            labels=table["label"],
            sample_id=table["sample_id"],
            attrs={"color": table["color"], "texture": table["texture"]},
            extra={"pose_id": table["pose_id"], "spurious": table["spurious"]},
        )
        check_labels(split, self.info.num_classes, str(self.path / MANIFEST))
        return split

    def _check_file(self, path: Path) -> None:
        if not path.is_file():
            raise KdfairError(f"Trifeature file {path} is missing; regenerate with `kdfair data trifeature`")
        register_input(path)
        if self.verify:
            expected = self.manifest["files"][path.name]["sha256"]
            if _sha256(path) != expected:
                raise KdfairError(f"checksum mismatch for {path}: expected sha256 {expected} as in "
                                  f"{MANIFEST}; the file is corrupted or was changed")

    def _load_images(self, path: Path, n: int) -> np.ndarray:
        self._check_file(path)
        try:
            images = np.load(path, mmap_mode="r" if self.mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise KdfairError(f"cannot read {path} as a .npy array: {exc}") from exc
        expected = (n, *self.info.input_shape)
        if images.shape != expected or images.dtype != np.uint8:
            raise KdfairError(f"{path} holds {images.dtype} {list(images.shape)}; "
                              f"expected uint8 {list(expected)}")
        return images

    def _load_table(self, path: Path, n: int) -> dict[str, np.ndarray]:
        self._check_file(path)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise KdfairError(f"cannot read {path} as Parquet: {exc}") from exc
        missing = [c for c in ("sample_id", "label", "color", "texture", "pose_id", "spurious")
                   if c not in table.column_names]
        if missing or table.num_rows != n:
            raise KdfairError(f"{path} has {table.num_rows} rows and lacks columns {missing}; "
                              f"expected {n} rows with {', '.join(TABLE_COLUMNS)}")
        # copies: Arrow's zero-copy arrays are read-only, which torch.from_numpy warns about
        columns = {c: np.array(table.column(c).to_numpy(), dtype=np.int64)
                   for c in ("sample_id", "label", "color", "texture", "pose_id")}
        columns["spurious"] = np.array(table.column("spurious").to_numpy(zero_copy_only=False), dtype=bool)
        return columns


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise KdfairError(f"Trifeature folder {path} does not exist; create it with `kdfair data trifeature -o {path}`")
    if not manifest_path.is_file():
        raise KdfairError(f"{manifest_path} is missing; expected a folder made by `kdfair data trifeature`")
    register_input(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise KdfairError(f"cannot read {manifest_path} as JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise KdfairError(f"{manifest_path} has format {found!r}; expected {FORMAT!r}")
    required = ("options", "class_names", "attributes", "input_shape", "mean", "std", "splits", "files")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise KdfairError(f"{manifest_path} lacks keys {missing}")
    if manifest.get("fingerprint") != _fingerprint(manifest["files"]):
        raise KdfairError(f"{manifest_path} fingerprint does not match its file checksums; the manifest was edited")
    return manifest


def open_trifeature(path: str | Path, *, verify: bool = True, mmap: bool = False) -> TrifeatureDataset:
    """Open a generated Trifeature folder; KdfairError names the file at fault.

    verify: check each split file's sha256 when it is loaded. mmap: memory-map images
    (read-only) instead of reading them into memory.
    """
    path = Path(path)
    manifest = _read_manifest(path)
    for name in manifest["files"]:
        if not (path / name).is_file():
            raise KdfairError(f"Trifeature file {path / name} is missing; regenerate with `kdfair data trifeature`")
    return TrifeatureDataset(path, manifest, verify=verify, mmap=mmap)
