"""Predictions from a file, a pandas DataFrame or a dict of arrays, validated once for every metric."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import pyarrow as pa

from kdfair_cli.errors import KdfairError
from kdfair_cli.io import predictions as io_predictions
from kdfair_cli.io.pairs_file import PairSet, pairs_from_table, read_pairs
from kdfair_cli.io.predictions import Predictions

#: What the API accepts as predictions: a path (Parquet/CSV), a pandas DataFrame, a dict of
#: column -> array (2-D arrays become list columns, e.g. logits), or already read Predictions.
PredictionsLike = Union[str, Path, Mapping[str, Any], Predictions, Any]


def _table(data: Any) -> pa.Table:
    """An Arrow table from a pandas DataFrame or a mapping of column -> array."""
    if isinstance(data, pa.Table):
        return data
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # a pandas DataFrame
        return pa.Table.from_pandas(data, preserve_index=False)
    cols: dict[str, pa.Array] = {}
    for key, values in data.items():
        arr = np.asarray(values)
        if arr.ndim == 2:
            cols[str(key)] = pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), arr.shape[1])
        elif arr.ndim == 1:
            cols[str(key)] = pa.array(arr)
        else:
            raise KdfairError(f"column '{key}' has {arr.ndim} dimensions; expected 1 (or 2 for logits)")
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise KdfairError(f"columns have different lengths: {sorted(lengths)}")
    return pa.table(cols)


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, Path))


def read_predictions(source: PredictionsLike, *, name: str | None = None, label_col: str = "label",
                     pred_col: str = "pred", logits_col: str = "logits", id_col: str = "sample_id",
                     attr_prefix: str = "attr_", with_logits: bool = True,
                     need_label: bool = False, meta: dict | None = None) -> Predictions:
    """Read and validate predictions; `need_label` refuses data without true labels.

    A DataFrame or dict is checked exactly like a file (columns label, pred or logits,
    sample_id, attr_*); `name` labels it in messages and results, and `meta` stands in for a
    file's metadata (e.g. {"split": "test", "class_names": [...]}).
    """
    if isinstance(source, Predictions):
        preds = source
    elif _is_path(source):
        preds = io_predictions.read_predictions(source, label_col=label_col, pred_col=pred_col,
                                                logits_col=logits_col, sample_id_col=id_col,
                                                attr_prefix=attr_prefix, with_logits=with_logits,
                                                with_features=False)
    else:
        preds = io_predictions.predictions_from_table(
            _table(source), dict(meta or {}), name or "<predictions>", label_col=label_col,
            pred_col=pred_col, logits_col=logits_col, sample_id_col=id_col,
            attr_prefix=attr_prefix, with_logits=with_logits, with_features=False)
    if need_label and preds.label is None:
        raise KdfairError(f"{preds.path}: column '{label_col}' has no values; this metric needs "
                          "true labels")
    return preds


def as_sources(sources: PredictionsLike | Sequence[PredictionsLike]) -> list[PredictionsLike]:
    """One source or a list of them (several = seeds), as a list."""
    if _is_path(sources) or isinstance(sources, Predictions) or not isinstance(sources, Sequence):
        return [sources]
    return list(sources)


def source_names(sources: list[PredictionsLike], read: list[Predictions]) -> list[str]:
    """How results name each source: the path as given, else the name it was read under."""
    return [str(s) if _is_path(s) else p.path for s, p in zip(sources, read)]


def read_many(sources: PredictionsLike | Sequence[PredictionsLike], what: str,
              **kwargs: Any) -> list[Predictions]:
    """One or several prediction sources (several = seeds); unnamed in-memory ones get `what[i]`."""
    sources = as_sources(sources)
    if not sources:
        raise KdfairError(f"{what}: no predictions given")
    return [read_predictions(s, name=f"{what}[{i}]", **kwargs) for i, s in enumerate(sources)]


def read_pair_set(source: str | Path | PairSet | Any, *, meta: dict | None = None) -> PairSet:
    """A pair set from a pair file, a PairSet, or a DataFrame/dict with sample_id_a, sample_id_b,
    distance."""
    if isinstance(source, PairSet):
        return source
    if _is_path(source):
        return read_pairs(source)
    return pairs_from_table(_table(source), dict(meta or {}), "<pairs>")
