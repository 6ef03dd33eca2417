"""The pair file (schema "kdfair.pairs/1"): the fixed pairs individual fairness is judged on.

Columns sample_id_a, sample_id_b (int64) and distance (float64); the `kdfair` metadata records
how the pairs were made (source, k or attribute, distance, representation, dataset fingerprint,
split) so that a score can always be traced to its pair set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_schema
from kdfair_cli.io.tables import read_table, with_meta, write_table

SCHEMA = "kdfair.pairs/1"
COLUMNS = ("sample_id_a", "sample_id_b", "distance")


@dataclass
class PairSet:
    path: str
    sample_id_a: np.ndarray
    sample_id_b: np.ndarray
    distance: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.distance.shape[0])


def write_pairs(path: str | Path, sample_id_a: np.ndarray, sample_id_b: np.ndarray,
                distance: np.ndarray, meta: dict) -> None:
    """Write a pair file atomically (Parquet)."""
    table = pa.table({"sample_id_a": pa.array(np.asarray(sample_id_a, dtype=np.int64)),
                      "sample_id_b": pa.array(np.asarray(sample_id_b, dtype=np.int64)),
                      "distance": pa.array(np.asarray(distance, dtype=np.float64))})
    write_table(path, with_meta(table, {**meta, "schema": SCHEMA, "n_pairs": len(table)}), "parquet")


def read_pairs(path: str | Path) -> PairSet:
    """Read and validate a pair file (Parquet or CSV with the three columns)."""
    table, meta, name = read_table(path)
    return pairs_from_table(table, meta, name)


def pairs_from_table(table: pa.Table, meta: dict, name: str) -> PairSet:
    """Validate an Arrow table of pairs (from a file, or a DataFrame in the Python API)."""
    check_schema(name, meta, SCHEMA)
    for col in COLUMNS:
        if col not in table.column_names:
            raise KdfairError(f"{name}: missing column '{col}' (a pair file has "
                              f"{', '.join(COLUMNS)}; make one with `kdfair pairs`)")
        if table.column(col).null_count:
            raise KdfairError(f"{name}: column '{col}' has missing values")
    a, b = (table.column(c).to_numpy().astype(np.int64) for c in COLUMNS[:2])
    d = table.column("distance").to_numpy().astype(np.float64)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise KdfairError(f"{name}: column 'distance' must be finite and >= 0")
    return PairSet(name, a, b, d, meta)
