"""Input representations for pairs: a features file (.npy, or Parquet with a `features` column)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input
from kdfair_cli.io.tables import read_table


def load_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Return (sample_id int64 [N], features float32 [N, D], file metadata).

    A .npy file holds [N, D] in split order (sample_id = row index). A Parquet file (a
    predictions file, or any table) holds a fixed- or variable-size list column `features` and
    optionally `sample_id`.
    """
    p = Path(path)
    if p.suffix.lower() == ".npy":
        if not p.exists():
            raise KdfairError(f"{p}: file does not exist")
        register_input(p)
        try:
            x = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise KdfairError(f"{p}: not a readable .npy array ({exc})") from None
        if x.ndim != 2 or x.shape[0] == 0:
            raise KdfairError(f"{p}: expected a 2-D array [N, D], got shape {x.shape}")
        ids, meta = np.arange(x.shape[0], dtype=np.int64), {}
    else:
        table, meta, name = read_table(path)
        if "features" not in table.column_names:
            raise KdfairError(f"{name}: missing column 'features' (a list of floats per sample)")
        col = table.column("features").combine_chunks()
        if not (pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type)):
            raise KdfairError(f"{name}: column 'features' must be a list of floats, found {col.type}")
        width = len(col[0]) if len(col) else 0
        flat = col.flatten().to_numpy(zero_copy_only=False)
        if flat.size != width * len(col):
            raise KdfairError(f"{name}: rows of column 'features' differ in length")
        x = flat.reshape(len(col), width)
        ids = (table.column("sample_id").to_numpy().astype(np.int64)
               if "sample_id" in table.column_names else np.arange(len(col), dtype=np.int64))
    if x.ndim != 2 or x.shape[1] == 0:
        raise KdfairError(f"{p}: features have width {x.shape[1] if x.ndim == 2 else x.shape}; "
                          "expected at least one value per sample")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise KdfairError(f"{p}: features contain NaN or infinite values")
    if np.unique(ids).size != ids.size:
        raise KdfairError(f"{p}: duplicate sample ids")
    return ids, x, meta


def array_digest(x: np.ndarray) -> str:
    """A short content hash of an array, recorded in pair metadata for provenance."""
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]
