"""Aligning files that must describe the same samples: one join, one source check, one schema check.

Predictions, pair files and teacher-logit caches are joined on sample_id and must come from the
same dataset, split and class count. Every reader that combines two of them goes through these
functions, so a mismatch always gives the same one-line error naming both sides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from kdfair_cli.errors import KdfairError

#: Keys of a source description, in the order they are checked.
SOURCE_KEYS = ("num_classes", "dataset", "split", "fingerprint")
_SCHEMA = re.compile(r"^(kdfair\.[a-z_]+)/(\d+)$")


def rows_for_ids(ids: np.ndarray, wanted: np.ndarray, *, have: str, want: str) -> np.ndarray:
    """Positions in `ids` (unique) of each value of `wanted`, in the order of `wanted`.

    `have` names what holds `ids` and `want` what asks for them; a missing id is a KdfairError
    that names both, how many are missing and the first of them.
    """
    ids, wanted = np.asarray(ids), np.asarray(wanted)
    order = np.argsort(ids, kind="stable")
    if ids.size == 0:
        found = np.zeros(wanted.shape, dtype=bool)
        pos = np.zeros(wanted.shape, dtype=np.int64)
    else:
        pos = np.clip(np.searchsorted(ids[order], wanted), 0, ids.size - 1)
        found = ids[order][pos] == wanted
    if not found.all():
        missing = ~found
        raise KdfairError(f"{want}: {int(missing.sum())} of {wanted.size} sample ids (e.g. "
                          f"{wanted[missing][0]}) are not sample ids of {have}; they must come "
                          "from the same split")
    return order[pos] if ids.size else pos


def same_samples(ref_ids: np.ndarray, other_ids: np.ndarray, *, ref: str, other: str) -> np.ndarray:
    """Rows of `other` in the order of `ref`'s sample ids; both must hold exactly the same samples.

    A paired comparison needs every sample on both sides: missing or extra ids are a KdfairError.
    """
    if np.asarray(other_ids).size != np.asarray(ref_ids).size:
        raise KdfairError(f"{other} has {np.asarray(other_ids).size} samples but {ref} has "
                          f"{np.asarray(ref_ids).size}; a paired comparison needs the same samples "
                          "(the same split)")
    return rows_for_ids(other_ids, ref_ids, have=other, want=ref)


def source_of(meta: Mapping[str, Any], num_classes: int | None = None) -> dict[str, Any]:
    """Dataset name, split, fingerprint (and class count) recorded in a file's metadata.

    Files made by other tools carry no metadata; absent keys are simply not compared.
    """
    dataset = meta.get("dataset")
    fingerprint = meta.get("dataset_fingerprint") or meta.get("fingerprint")
    if isinstance(dataset, Mapping):
        fingerprint = fingerprint or dataset.get("fingerprint")
        dataset = dataset.get("name")
    split = meta.get("split")
    return {"num_classes": num_classes,
            "dataset": dataset if isinstance(dataset, str) else None,
            "split": split if isinstance(split, str) else None,
            "fingerprint": fingerprint if isinstance(fingerprint, str) else None}


def check_same_source(ref_name: str, ref: Mapping[str, Any], other_name: str,
                      other: Mapping[str, Any], hint: str | Mapping[str, str] = "") -> None:
    """Refuse `other` when its class count, dataset, split or fingerprint differs from `ref`'s.

    Both are `source_of` dicts; a key missing on either side is not compared. `hint` is appended
    to the message (e.g. what to do instead), or hint[key] when it is a mapping.
    """
    for key in SOURCE_KEYS:
        a, b = ref.get(key), other.get(key)
        if a is None or b is None or a == b:
            continue
        if isinstance(hint, Mapping):
            hint = hint.get(key, "")
        if key == "num_classes":
            raise KdfairError(f"{other_name} has {b} classes but {ref_name} has {a}{hint}")
        if key == "fingerprint":
            a, b, key = a[:12], b[:12], "dataset fingerprint"
        raise KdfairError(f"{other_name} is from {key} '{b}' but {ref_name} is from {key} '{a}'{hint}")


def check_model_matches(model_name: str, meta: Mapping[str, Any], info: Any) -> None:
    """Refuse a model whose class count or input shape differs from the dataset's (a DatasetInfo)."""
    if int(meta["num_classes"]) != info.num_classes:
        raise KdfairError(f"{model_name} has {meta['num_classes']} classes, dataset {info.name} has "
                          f"{info.num_classes}")
    if tuple(meta["input_shape"]) != tuple(info.input_shape):
        raise KdfairError(f"{model_name} expects input {tuple(meta['input_shape'])}, dataset "
                          f"{info.name} gives {tuple(info.input_shape)}")


def check_schema(name: str, meta: Mapping[str, Any], expected: str) -> None:
    """Refuse a file of another kind or of a newer major version than `expected` ('kdfair.X/N').

    Files without a schema (made by other tools) pass; older versions are read as they are.
    """
    found = meta.get("schema")
    if found is None:
        return
    want = _SCHEMA.match(expected)
    got = _SCHEMA.match(str(found))
    if want is None:
        raise ValueError(f"bad expected schema {expected!r}")
    if got is None or got.group(1) != want.group(1):
        raise KdfairError(f"{name}: schema '{found}' is not a {want.group(1)} file")
    if int(got.group(2)) > int(want.group(2)):
        raise KdfairError(f"{name}: schema '{found}' is newer than this kdfair reads "
                          f"({expected}); upgrade kdfair")
