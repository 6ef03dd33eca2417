"""The predictions file (schema "kdfair.predictions/1"): one row per sample of one split.

`predict` and `distill` write it; every metric command reads it. Reading also accepts files made
by other tools (Parquet or CSV with `label` and `pred` or `logits` / `logit_<k>` columns and
`attr_*` columns, no metadata), and validates everything a metric relies on, so that metric code
can assume clean arrays. Conversion is columnar (pyarrow -> numpy, no Python loops over rows)
because a file may hold ten million rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_schema
from kdfair_cli.io.atomic import write_bytes_atomic
from kdfair_cli.io.tables import read_schema, read_table, table_bytes, with_meta, write_table

SCHEMA = "kdfair.predictions/1"
_LOGIT_K = re.compile(r"^logit_(\d+)$")
#: Most classes a file may imply without logits to back them: a stray label of 10^9 must be an
#: error, not a 10^9-class analysis that runs out of memory.
MAX_CLASSES_WITHOUT_LOGITS = 100_000
#: pred of an answer that could not be read (`kdfair generate`): allowed only in a file whose
#: metadata says so (generation.unparsed_pred = -1); it matches no label and no class.
UNPARSED = -1


@dataclass
class Predictions:
    """A validated predictions file, rows in file order."""

    path: str
    sample_id: np.ndarray  # int64 [N], unique
    label: np.ndarray | None  # int64 [N] or None (unlabelled)
    pred: np.ndarray  # int64 [N]
    logits: np.ndarray | None  # float [N, C] or None
    attrs: dict[str, np.ndarray] = field(default_factory=dict)  # name -> int codes or strings
    features: np.ndarray | None = None  # float32 [N, D] or None
    meta: dict = field(default_factory=dict)
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.pred.shape[0])

    def attribute_values(self, name: str) -> list[str] | None:
        """Value names of attribute `name` from the metadata, if the file has them."""
        values = (self.meta.get("attributes") or {}).get(name)
        return [str(v) for v in values] if isinstance(values, list) else None

    def sorted_by_id(self) -> Predictions:
        """The same predictions with rows ordered by sample_id (to align files of one split)."""
        order = np.argsort(self.sample_id, kind="stable")
        if np.array_equal(order, np.arange(order.size)):
            return self
        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[order]

        return Predictions(self.path, self.sample_id[order], take(self.label), self.pred[order],
                           take(self.logits), {k: v[order] for k, v in self.attrs.items()},
                           take(self.features), self.meta, self.num_classes, self.class_names)


def _fixed_list(values: np.ndarray, name: str) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, K], got shape {values.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_predictions(path: str | Path, *, sample_id: np.ndarray, label: np.ndarray | None,
                      logits: np.ndarray, attrs: dict[str, np.ndarray], meta: dict,
                      features: np.ndarray | None = None) -> None:
    """Write a predictions file atomically ('-' writes the Parquet bytes to stdout).

    pred is argmax(logits); `meta` is merged into the `kdfair` metadata with schema and
    num_classes.
    """
    logits = np.asarray(logits, dtype=np.float32)
    n, c = logits.shape
    sample_id = np.asarray(sample_id, dtype=np.int64)
    if sample_id.shape != (n,):
        raise ValueError(f"sample_id has shape {sample_id.shape}, expected ({n},)")
    cols: dict[str, pa.Array] = {"sample_id": pa.array(sample_id)}
    if label is None:
        cols["label"] = pa.nulls(n, pa.int32())
    else:
        cols["label"] = pa.array(np.asarray(label).astype(np.int32))
    cols["pred"] = pa.array(np.argmax(logits, axis=1).astype(np.int32))
    cols["logits"] = _fixed_list(logits, "logits")
    for name, values in attrs.items():
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"attribute {name} has shape {values.shape}, expected ({n},)")
        cols[f"attr_{name}"] = pa.array(values.astype(str) if values.dtype.kind in "OUS" else values)
    if features is not None:
        cols["features"] = _fixed_list(features, "features")
    table = with_meta(pa.table(cols), {**meta, "schema": SCHEMA, "num_classes": int(c)})
    if str(path) == "-":
        write_bytes_atomic("-", table_bytes(table, "parquet"))
    else:
        write_table(path, table, "parquet")


def _int_column(table: pa.Table, col: str, name: str, allow_null: bool) -> np.ndarray | None:
    """A column as int64; None if all null and allowed; KdfairError for anything else."""
    arr = table.column(col)
    if arr.null_count == len(arr):
        if allow_null:
            return None
        raise KdfairError(f"{name}: column '{col}' is empty (all values missing)")
    if arr.null_count:
        raise KdfairError(f"{name}: column '{col}' has {arr.null_count} missing values")
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_integer(arr.type):
        return arr.to_numpy().astype(np.int64, copy=False)
    if pa.types.is_floating(arr.type):
        values = arr.to_numpy()
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise KdfairError(f"{name}: column '{col}' must hold integer class ids, found "
                              "non-integer values")
        return values.astype(np.int64)
    raise KdfairError(f"{name}: column '{col}' must hold integer class ids, found type {arr.type}")


def _logits(table: pa.Table, name: str, logits_col: str) -> np.ndarray | None:
    """Logits as float [N, C] from a fixed/variable-size list column or `logit_<k>` columns."""
    if logits_col in table.column_names:
        col = table.column(logits_col).combine_chunks()
        if col.null_count:
            raise KdfairError(f"{name}: column '{logits_col}' has {col.null_count} missing rows")
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
        elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            lengths = col.value_lengths().to_numpy()
            width = int(lengths[0])
            if np.any(lengths != width):
                raise KdfairError(f"{name}: column '{logits_col}' has rows of different lengths")
        else:
            raise KdfairError(f"{name}: column '{logits_col}' must be a list of floats, found "
                              f"{col.type}")
        if width == 0:
            raise KdfairError(f"{name}: column '{logits_col}' holds empty lists; expected one logit "
                              "per class")
        if not (pa.types.is_floating(col.type.value_type) or pa.types.is_integer(col.type.value_type)):
            raise KdfairError(f"{name}: column '{logits_col}' must hold numbers, found "
                              f"{col.type.value_type}")
        flat = col.flatten()
        if flat.null_count:
            raise KdfairError(f"{name}: column '{logits_col}' has missing values (NaN logits)")
        values = flat.to_numpy(zero_copy_only=False).reshape(len(col), width)
    else:
        ks = sorted((int(m.group(1)), c) for c in table.column_names if (m := _LOGIT_K.match(c)))
        if not ks:
            return None
        if [k for k, _ in ks] != list(range(len(ks))):
            raise KdfairError(f"{name}: columns logit_<k> must be logit_0 .. logit_{len(ks) - 1} "
                              f"without gaps, found {', '.join(c for _, c in ks)}")
        for _, c in ks:
            kind = table.column(c).type
            if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
                raise KdfairError(f"{name}: column '{c}' must hold numbers (logits), found {kind}")
        values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for _, c in ks])
        logits_col = "logit_<k>"
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
    if not np.isfinite(values).all():
        rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
        raise KdfairError(f"{name}: column '{logits_col}' has NaN or infinite values in "
                          f"{rows.size} rows (first at row {rows[0]})")
    return values


def _features(table: pa.Table, name: str) -> np.ndarray | None:
    if "features" not in table.column_names:
        return None
    col = table.column("features").combine_chunks()
    if not pa.types.is_fixed_size_list(col.type) or col.null_count:
        raise KdfairError(f"{name}: column 'features' must be a fixed_size_list<float32> "
                          "without missing rows")
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(col), col.type.list_size)


def _check_ids(sample_id: np.ndarray, name: str, col: str) -> None:
    """Unique ids; the common sorted/arange case is checked in O(N) without a sort."""
    if sample_id.size < 2 or np.all(sample_id[1:] > sample_id[:-1]):
        return
    s = np.sort(sample_id)
    dup = np.flatnonzero(s[1:] == s[:-1])
    if dup.size:
        raise KdfairError(f"{name}: column '{col}' has duplicate values (e.g. {s[dup[0]]})")


def _check_range(values: np.ndarray, c: int, name: str, col: str) -> None:
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= c:
        bad = lo if lo < 0 else hi
        raise KdfairError(f"{name}: column '{col}' has value {bad} outside the class range "
                          f"[0, {c}) (num_classes = {c})")


def read_predictions(path: str | Path, *, label_col: str = "label", pred_col: str = "pred",
                     logits_col: str = "logits", sample_id_col: str = "sample_id",
                     attr_prefix: str = "attr_", with_logits: bool = True,
                     with_features: bool = True) -> Predictions:
    """Read and validate a predictions file (Parquet or CSV; '-' reads stdin).

    with_logits=False skips reading logits when a `pred` column exists (faster for metrics that
    only need predictions); with_features=False skips the optional `features` column.
    """
    columns = None
    if str(path) != "-" and not str(path).lower().endswith(".csv"):
        names, schema_meta = read_schema(path)
        skip = set()
        if not with_features:
            skip.add("features")
        if not with_logits and pred_col in names and "num_classes" in schema_meta:
            skip |= {logits_col} | {c for c in names if _LOGIT_K.match(c)}
        columns = [c for c in names if c not in skip]
    table, meta, name = read_table(path, columns)
    return predictions_from_table(table, meta, name, label_col=label_col, pred_col=pred_col,
                                  logits_col=logits_col, sample_id_col=sample_id_col,
                                  attr_prefix=attr_prefix, with_logits=with_logits,
                                  with_features=with_features)


def predictions_from_table(table: pa.Table, meta: dict, name: str, *, label_col: str = "label",
                           pred_col: str = "pred", logits_col: str = "logits",
                           sample_id_col: str = "sample_id", attr_prefix: str = "attr_",
                           with_logits: bool = True, with_features: bool = True) -> Predictions:
    """Validate an Arrow table of predictions (from a file, or a DataFrame in the Python API)."""
    check_schema(name, meta, SCHEMA)
    cols = table.column_names
    if label_col not in cols:
        raise KdfairError(f"{name}: missing column '{label_col}' (true class); columns are: "
                          f"{', '.join(cols)}")
    label = _int_column(table, label_col, name, allow_null=True)
    # without num_classes in the metadata, the logits' width is what bounds the class range
    need_logits = with_logits or pred_col not in cols or "num_classes" not in meta
    logits = _logits(table, name, logits_col) if need_logits else None
    if pred_col in cols:
        pred = _int_column(table, pred_col, name, allow_null=False)
    elif logits is not None:
        pred = np.argmax(logits, axis=1).astype(np.int64)
    else:
        raise KdfairError(f"{name}: missing column '{pred_col}' (and no '{logits_col}' or "
                          f"logit_<k> columns to derive it from); columns are: {', '.join(cols)}")
    n = table.num_rows
    if sample_id_col in cols:
        sample_id = _int_column(table, sample_id_col, name, allow_null=False)
        _check_ids(sample_id, name, sample_id_col)
    else:
        sample_id = np.arange(n, dtype=np.int64)

    if "num_classes" in meta:
        c = meta["num_classes"]
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise KdfairError(f"{name}: metadata num_classes must be a positive integer, found {c!r}")
        if logits is not None and logits.shape[1] != c:
            raise KdfairError(f"{name}: column '{logits_col}' has {logits.shape[1]} values per "
                              f"row but the metadata says num_classes = {c}")
    elif logits is not None:
        c = int(logits.shape[1])
    else:
        c = int(max(pred.max(), label.max() if label is not None else 0)) + 1
    if logits is None and c > MAX_CLASSES_WITHOUT_LOGITS:
        col = label_col if label is not None and label.max() + 1 == c else pred_col
        raise KdfairError(f"{name}: column '{col}' holds class id {c - 1}, which would make {c} classes; "
                          f"class ids must be 0 .. num_classes-1 (without logits at most "
                          f"{MAX_CLASSES_WITHOUT_LOGITS} classes)")
    unparsed = (meta.get("generation") or {}).get("unparsed_pred") == UNPARSED
    named = pred[pred != UNPARSED] if unparsed else pred
    if named.size:
        _check_range(named, c, name, pred_col)
    if label is not None:
        _check_range(label, c, name, label_col)
    if logits is not None and pred_col in cols:
        chosen = np.take_along_axis(logits, pred[:, None], axis=1)[:, 0]
        bad = np.flatnonzero(chosen < logits.max(axis=1))
        if bad.size:
            raise KdfairError(f"{name}: column '{pred_col}' disagrees with argmax of "
                              f"'{logits_col}' in {bad.size} rows (first at row {bad[0]})")

    attrs = {}
    for col in cols:
        if col.startswith(attr_prefix) and len(col) > len(attr_prefix):
            arr = table.column(col)
            if arr.null_count:
                raise KdfairError(f"{name}: column '{col}' has {arr.null_count} missing values")
            values = arr.to_numpy(zero_copy_only=False)
            attrs[col[len(attr_prefix):]] = values.astype(str) if values.dtype == object else values
    features = _features(table, name) if with_features else None
    names = meta.get("class_names")
    class_names = ([str(x) for x in names] if isinstance(names, list) and len(names) == c
                   else [str(k) for k in range(c)])
    return Predictions(name, sample_id, label, pred, logits, attrs, features, meta, c, class_names)


@dataclass
class SplitPredictions:
    sample_id: np.ndarray
    label: np.ndarray
    logits: np.ndarray
    attrs: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy at T = 1 (NaN for an empty split)."""
        return float((self.logits.argmax(1) == self.label).mean()) if len(self.label) else float("nan")

    def write(self, out: str | Path) -> None:
        """Write the predictions file (atomically; '-' for stdout)."""
        write_predictions(out, sample_id=self.sample_id, label=self.label, logits=self.logits,
                          attrs=self.attrs, meta=self.meta)
