"""Pair sets for individual fairness: kNN in pixels/features/TF-IDF, counterfactual twins, identity swaps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli.data.registry import open_dataset
from kdfair_cli.data.text import SWAP_SUFFIX
from kdfair_cli.data.text_features import fit_tfidf
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import rows_for_ids
from kdfair_cli.io.features import array_digest, load_features
from kdfair_cli.io.pairs_file import SCHEMA, PairSet, write_pairs
from kdfair_cli.jsonable import jsonable
from kdfair_cli.metrics.pairs import knn_pairs, pair_distances, twin_pairs

SOURCES = ("knn", "twins", "tfidf-knn", "identity-swap")


@dataclass
class PairsResult:
    """A built pair set (sample ids, distances, provenance); `write` saves it as a pair file."""

    sample_id_a: np.ndarray
    sample_id_b: np.ndarray
    distance: np.ndarray
    meta: dict[str, Any]
    over: str  # what was paired, for the summary line
    started: float = field(default_factory=time.perf_counter, repr=False)
    out: str | None = None
    seconds: float | None = None

    def __len__(self) -> int:
        return int(self.distance.size)

    def pair_set(self) -> PairSet:
        """The pairs as the PairSet that individual_fairness takes."""
        return PairSet(self.out or "<pairs>", self.sample_id_a, self.sample_id_b, self.distance,
                       {**self.meta, "schema": SCHEMA, "n_pairs": len(self)})

    def write(self, out: str | Path) -> None:
        """Write the pair file (atomically) and record where."""
        write_pairs(out, self.sample_id_a, self.sample_id_b, self.distance, self.meta)
        self.out = str(out)
        self.seconds = round(time.perf_counter() - self.started, 3)

    def to_dict(self) -> dict[str, Any]:
        """What `kdfair pairs --json` prints: the provenance and a summary of the distances."""
        d = self.distance
        seconds = self.seconds if self.seconds is not None else round(time.perf_counter() - self.started, 3)
        return jsonable({**self.meta, "n_pairs": len(self), "n_zero_distance": int((d == 0).sum()),
                         "mean_distance": float(d.mean()) if d.size else None,
                         "seconds": seconds, "out": self.out})


def _pixels(split: Any) -> np.ndarray:
    """Images scaled to [0, 1] and flattened: the default model-independent representation."""
    images = np.asarray(split.images)
    return images.reshape(images.shape[0], -1).astype(np.float32) / 255.0


def _knn(x: Any, k: int, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's k nearest neighbours as pairs (pixels or TF-IDF rows); records k in meta."""
    if not 1 <= k < x.shape[0]:
        raise KdfairError(f"--k must be in [1, {x.shape[0] - 1}] for {x.shape[0]} samples, got {k}")
    meta.update(k=k)
    return knn_pairs(x, k)


def _built(x: Any, ids: np.ndarray, a: np.ndarray, b: np.ndarray, distance: str, meta: dict,
           started: float, over: str) -> PairsResult:
    return PairsResult(ids[a], ids[b], pair_distances(x, a, b, distance), meta, over, started)


def pairs(*, dataset: str | None = None, data: str | Path | None = None, split: str = "test",
          source: str = "knn", k: int = 5, attribute: str | None = None,
          features: str | Path | None = None, distance: str = "auto",
          max_features: int = 5000) -> PairsResult:
    """Build the fixed pair set a split's individual fairness is judged on (see `kdfair pairs`)."""
    started = time.perf_counter()
    if source not in SOURCES:
        raise KdfairError(f"--source '{source}': expected {'|'.join(SOURCES)}")
    if distance == "auto":
        distance = {"tfidf-knn": "cosine", "identity-swap": "unit"}.get(source, "rms")
    if source in ("tfidf-knn", "identity-swap"):
        return _text_pairs(dataset, data, split, source, k, distance, max_features, features, started)
    ds = sp = None
    if dataset is not None or data is not None:
        if dataset is None or data is None:
            raise KdfairError("--dataset and --data go together")
        ds = open_dataset(dataset, Path(data))
        sp = ds.split(split)
    meta: dict = {"schema": SCHEMA, "source": source, "distance": distance, "split": split}
    if ds is not None:
        meta.update(dataset=ds.info.name, dataset_fingerprint=ds.info.fingerprint)
    if features is not None:
        ids, x, fmeta = load_features(features)
        meta.update(representation=f"features:{features}", features_sha256=array_digest(x))
        if sp is not None:
            want = np.asarray(sp.sample_id, dtype=np.int64)
            x = x[rows_for_ids(ids, want, have=f"{features} (features)", want=f"split {split}")]
            ids = want
        elif isinstance(fmeta.get("split"), str):
            meta["split"] = fmeta["split"]
    elif sp is not None:
        if sp.images is None:
            raise KdfairError(f"dataset {dataset} is text: use --source tfidf-knn or identity-swap, "
                              "or give --features")
        x, ids = _pixels(sp), np.asarray(sp.sample_id, dtype=np.int64)
        meta["representation"] = "pixels scaled to [0, 1], flattened"
    else:
        raise KdfairError("give --dataset and --data (pixels), or --features")
    meta.update(n_samples=int(x.shape[0]), dim=int(x.shape[1]))

    if source == "knn":
        a, b = _knn(x, k, meta)
    else:
        if sp is None:
            raise KdfairError("--source twins needs --dataset and --data (pose_id and attributes)")
        if attribute is None:
            raise KdfairError("--source twins needs --attribute (the attribute twins differ in)")
        if attribute not in sp.attrs:
            raise KdfairError(f"dataset {dataset} split {split} has no attribute '{attribute}'; "
                              f"attributes: {', '.join(sorted(sp.attrs)) or 'none'}")
        if "pose_id" not in sp.extra:
            raise KdfairError(f"dataset {dataset} split {split} has no pose_id, so twins cannot be "
                              "formed (generate Trifeature with twins in val/test)")
        others = [v for n, v in sorted(sp.attrs.items()) if n != attribute] + [sp.labels]
        a, b = twin_pairs(np.asarray(sp.extra["pose_id"]), sp.attrs[attribute], others)
        meta.update(attribute=attribute)
        if a.size == 0:
            raise KdfairError(f"no twins differing only in '{attribute}' in split {split}")
    return _built(x, ids, a, b, distance, meta, started,
                  f"{x.shape[0]} samples of dimension {x.shape[1]}")


def _text_pairs(dataset: str | None, data: str | Path | None, split: str, source: str, k: int,
                distance: str, max_features: int, features: str | Path | None,
                started: float) -> PairsResult:
    """tfidf-knn and identity-swap pairs of a text dataset split."""
    if dataset is None or data is None:
        raise KdfairError(f"--source {source} needs --dataset and --data (a text dataset)")
    if features is not None:
        raise KdfairError(f"--source {source} builds its own TF-IDF representation; drop --features")
    if max_features < 1:
        raise KdfairError(f"--max-features must be positive, got {max_features}")
    ds = open_dataset(dataset, Path(data))
    if ds.info.modality != "text":
        raise KdfairError(f"--source {source} needs a text dataset; {dataset} is {ds.info.modality}")
    if split.endswith(SWAP_SUFFIX):
        raise KdfairError(f"--split {split}: give the base split (e.g. test); identity-swap pairs "
                          f"live in its derived split {split}")
    tfidf = fit_tfidf(list(ds.split("train").extra["text"]), max_features=max_features)
    if not tfidf.vocabulary:
        raise KdfairError(f"{data}: the train split has no term in two posts; TF-IDF is empty")
    pair_split = split + SWAP_SUFFIX if source == "identity-swap" else split
    sp = ds.split(pair_split)
    x = tfidf.transform(list(sp.extra["text"]))
    ids = np.asarray(sp.sample_id, dtype=np.int64)
    meta: dict = {"schema": SCHEMA, "source": source, "distance": distance, "split": pair_split,
                  "dataset": ds.info.name, "dataset_fingerprint": ds.info.fingerprint,
                  "representation": f"tfidf (vocabulary {len(tfidf.vocabulary)} terms of the train split, "
                                    "sublinear tf, smoothed idf, unit L2 rows)",
                  "n_samples": int(x.shape[0]), "dim": int(x.shape[1])}
    if source == "tfidf-knn":
        a, b = _knn(x, k, meta)
    else:
        copies = np.flatnonzero(np.asarray(sp.extra["swap_of"]) >= 0)
        if copies.size == 0:
            raise KdfairError(f"no post of split {split} contains an identity term of the swap list")
        a, b = np.asarray(sp.extra["swap_of"])[copies].astype(np.int64), copies.astype(np.int64)
        meta.update(word_list="kdfair_cli.data.text.IDENTITY_SWAPS",
                    predict_split=f"predictions must come from `kdfair predict --split {pair_split}`")
    return _built(x, ids, a, b, distance, meta, started,
                  f"{x.shape[0]} samples of split {pair_split}, TF-IDF dimension {x.shape[1]}")
