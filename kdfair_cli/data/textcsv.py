"""`textcsv`: the user's own text data from CSV or Parquet.

`--data` is either one file (.csv, .parquet) with a `split` column (train / val / test; val is
optional), or a folder holding train.csv / val.csv / test.csv (or .parquet; val optional).
Columns: `text` (str), `label` (class ids 0..K-1, or class names, which are sorted to give the
ids), and any number of `attr_<name>` columns (protected attributes; values are sorted, as
strings, to give their codes). Other columns are ignored. Every split must have the same
attribute columns. Missing text, label or attribute values are refused, naming file and row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdfair_cli.data.base import Attribute, DatasetInfo
from kdfair_cli.data.text import TextDataset, all_splits, files_fingerprint, text_split
from kdfair_cli.errors import KdfairError

SPLIT_NAMES = ("train", "val", "test")
SUFFIXES = (".csv", ".parquet")


def _read(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise KdfairError(f"{path}: cannot read as {path.suffix[1:]}: {exc}") from exc


def _frames(path: Path) -> tuple[dict[str, tuple[pd.DataFrame, str]], list[Path]]:
    """split -> (rows, where to point errors), and the files read."""
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise KdfairError(f"{path}: expected a .csv or .parquet file")
        df = _read(path)
        if "split" not in df.columns:
            raise KdfairError(f"{path} has no 'split' column (or give a folder with train/test files)")
        bad = sorted(set(df["split"].astype(str)) - set(SPLIT_NAMES))
        if bad:
            raise KdfairError(f"{path}: unknown split {bad[0]!r}; expected train, val or test")
        out = {s: (df[df["split"].astype(str) == s].reset_index(drop=True), f"{path} (split {s})")
               for s in SPLIT_NAMES if (df["split"].astype(str) == s).any()}
        return out, [path]
    out, files = {}, []
    for s in SPLIT_NAMES:
        found = [path / f"{s}{suf}" for suf in SUFFIXES if (path / f"{s}{suf}").exists()]
        if found:
            out[s] = (_read(found[0]), str(found[0]))
            files.append(found[0])
    return out, files


def _codes(values: pd.Series, names: tuple[str, ...]) -> np.ndarray:
    lookup = {v: i for i, v in enumerate(names)}
    return np.asarray([lookup[v] for v in values.astype(str)], dtype=np.int64)


def open_textcsv(path: Path, **options: Any) -> TextDataset:
    path = Path(path)
    frames, files = _frames(path)
    for s in ("train", "test"):
        if s not in frames:
            raise KdfairError(f"{path}: no '{s}' split (rows with split={s}, or a {s}.csv/.parquet file)")
    attr_cols: list[str] | None = None
    for s, (df, where) in frames.items():
        for col in ("text", "label"):
            if col not in df.columns:
                raise KdfairError(f"{where} has no '{col}' column")
        cols = sorted(c for c in df.columns if c.startswith("attr_"))
        if attr_cols is None:
            attr_cols = cols
        elif cols != attr_cols:
            raise KdfairError(f"{where} has attribute columns {cols}, other splits have {attr_cols}")
        for col in ["text", "label", *cols]:
            missing = df[col].isna().to_numpy()
            if missing.any():
                raise KdfairError(f"{where}: column '{col}' is empty in row {int(np.argmax(missing))}")
    attr_cols = attr_cols or []
    labels_all = pd.concat([df["label"] for df, _ in frames.values()])
    if pd.api.types.is_integer_dtype(labels_all):
        if labels_all.min() < 0:
            raise KdfairError(f"{path}: integer labels must be >= 0, found {labels_all.min()}")
        class_names = tuple(str(i) for i in range(int(labels_all.max()) + 1))
    else:
        class_names = tuple(sorted(set(labels_all.astype(str))))
    if len(class_names) < 2:
        raise KdfairError(f"{path}: at least two classes are needed, found {list(class_names)}")
    attributes = []
    for col in attr_cols:
        values = pd.concat([df[col] for df, _ in frames.values()])
        if pd.api.types.is_integer_dtype(values):
            names = tuple(str(v) for v in sorted(set(values.tolist())))
        else:
            names = tuple(sorted(set(values.astype(str))))
        attributes.append(Attribute(col[len("attr_"):], names))
    splits = {}
    for s, (df, _) in frames.items():
        labels = _codes(df["label"], class_names)
        attrs = {a.name: _codes(df[f"attr_{a.name}"], a.values) for a in attributes}
        splits[s] = text_split(s, df["text"].astype(str).tolist(), labels, attrs)
    base = tuple(s for s in SPLIT_NAMES if s in splits)
    info = DatasetInfo(
        name="textcsv", num_classes=len(class_names), class_names=class_names,
        attributes=tuple(attributes), input_shape=(), mean=(), std=(), splits=all_splits(base),
        fingerprint=files_fingerprint(*files), options={"files": [str(f) for f in files]}, modality="text")
    return TextDataset(info, splits, str(path))
