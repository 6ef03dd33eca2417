"""`kdfair pairs`: build the fixed pair set that individual fairness is judged on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer

from kdfair_cli.cli.common import console, print_json
from kdfair_cli.cli.metric_options import (JsonFlag, reflow)
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import check_writable
from kdfair_cli.io.features import array_digest, load_features
from kdfair_cli.io.pairs_file import SCHEMA, write_pairs
from kdfair_cli.metrics.pairs import knn_pairs, pair_distances, twin_pairs


def _pixels(split) -> np.ndarray:
    """Images scaled to [0, 1] and flattened: the default model-independent representation."""
    images = np.asarray(split.images)
    return (images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)


def _align(ids: np.ndarray, x: np.ndarray, want: np.ndarray, name: str) -> np.ndarray:
    """Rows of x (indexed by ids) in the order of `want`; every wanted id must be present."""
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], want), 0, ids.size - 1)
    missing = ids[order][pos] != want
    if missing.any():
        raise KdfairError(f"{name}: {int(missing.sum())} sample ids of the split (e.g. "
                          f"{want[missing][0]}) have no features")
    return x[order[pos]]


def _knn(x, k: int, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's k nearest neighbours as pairs (pixels or TF-IDF rows); records k in meta."""
    if not 1 <= k < x.shape[0]:
        raise KdfairError(f"--k must be in [1, {x.shape[0] - 1}] for {x.shape[0]} samples, got {k}")
    meta.update(k=k)
    return knn_pairs(x, k)


def command(
    out: Annotated[Path, typer.Option("-o", "--out", help="Pair file to write (Parquet).")],
    dataset: Annotated[str | None, typer.Option(help="Dataset name (pixels, twins).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder.")] = None,
    split: Annotated[str, typer.Option(help="Split to pair.")] = "test",
    source: Annotated[
        Literal["knn", "twins", "tfidf-knn", "identity-swap"],
        typer.Option(help="knn: k nearest neighbours in the representation; twins: counterfactual "
                     "twins differing only in --attribute (generated Trifeature); tfidf-knn: k nearest "
                     "neighbours in TF-IDF (text); identity-swap: each post paired with its copy with "
                     "identity terms swapped, in the derived split SPLIT+swap (text).")] = "knn",
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours per sample (knn).")] = 5,
    attribute: Annotated[str | None, typer.Option(help="Attribute the twins differ in "
                                                  "(twins).")] = None,
    features: Annotated[Path | None, typer.Option(help="Representation instead of pixels: .npy "
                                                  "[N, D] or Parquet with a 'features' column "
                                                  "(e.g. a predictions file).")] = None,
    distance: Annotated[
        Literal["auto", "rms", "euclidean", "unit", "cosine"],
        typer.Option(help="d(x, x'): rms = Euclidean / sqrt(D) (RMS pixel difference), euclidean, "
                     "unit (d = 1), or cosine (1 - cos). auto: cosine for tfidf-knn, unit for "
                     "identity-swap, else rms.")] = "auto",
    max_features: Annotated[int, typer.Option(help="TF-IDF vocabulary size (text sources; fitted "
                                              "on the train split).")] = 5000,
    json_out: JsonFlag = False,
) -> None:
    """Build a pair set once per split so every model is judged on the same pairs.

    knn pairs each sample with its k nearest neighbours (exact search, undirected, unique) in a
    fixed input representation: pixels scaled to [0, 1] (from --dataset/--data/--split) or a
    --features file. Text: tfidf-knn does the same in a TF-IDF representation fitted on the train
    split; identity-swap pairs each post holding an identity term (docs/text.md) with its swapped
    copy in the derived split SPLIT+swap. twins pairs generated Trifeature samples that share pose_id and every other
    attribute and differ only in --attribute. Distances are recorded in the file.

    Example:

        kdfair pairs --dataset trifeature --data data/trifeature --split test -k 5 -o pairs/test-knn.parquet
        kdfair pairs --dataset trifeature --data data/trifeature --split test --source twins --attribute color -o pairs/test-color-twins.parquet
        kdfair pairs --dataset hatexplain --data data/hatexplain --split test --source tfidf-knn -k 5 -o pairs/hx-test-tfidf.parquet
        kdfair pairs --dataset hatexplain --data data/hatexplain --split test --source identity-swap -o pairs/hx-test-swap.parquet  (judge `kdfair predict M --split test+swap`)
    """
    check_writable(out)
    started = time.perf_counter()
    if distance == "auto":
        distance = {"tfidf-knn": "cosine", "identity-swap": "unit"}.get(source, "rms")
    if source in ("tfidf-knn", "identity-swap"):
        _text_pairs(out, dataset, data, split, source, k, distance, max_features, features, json_out, started)
        return
    ds = sp = None
    if dataset is not None or data is not None:
        if dataset is None or data is None:
            raise KdfairError("--dataset and --data go together")
        from kdfair_cli.data.registry import open_dataset

        ds = open_dataset(dataset, data)
        sp = ds.split(split)
    meta: dict = {"schema": SCHEMA, "source": source, "distance": distance, "split": split}
    if ds is not None:
        meta.update(dataset=ds.info.name, dataset_fingerprint=ds.info.fingerprint)
    if features is not None:
        ids, x, fmeta = load_features(features)
        meta.update(representation=f"features:{features}", features_sha256=array_digest(x))
        if sp is not None:
            x = _align(ids, x, np.asarray(sp.sample_id, dtype=np.int64), str(features))
            ids = np.asarray(sp.sample_id, dtype=np.int64)
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
    _write(out, x, ids, a, b, distance, meta, started, json_out,
           f"{x.shape[0]} samples of dimension {x.shape[1]}")


def _text_pairs(out: Path, dataset: str | None, data: Path | None, split: str, source: str, k: int,
                distance: str, max_features: int, features: Path | None, json_out: bool, started: float) -> None:
    """tfidf-knn and identity-swap pairs of a text dataset split."""
    from kdfair_cli.data.registry import open_dataset
    from kdfair_cli.data.text import SWAP_SUFFIX
    from kdfair_cli.data.text_features import fit_tfidf

    if dataset is None or data is None:
        raise KdfairError(f"--source {source} needs --dataset and --data (a text dataset)")
    if features is not None:
        raise KdfairError(f"--source {source} builds its own TF-IDF representation; drop --features")
    if max_features < 1:
        raise KdfairError(f"--max-features must be positive, got {max_features}")
    ds = open_dataset(dataset, data)
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
    _write(out, x, ids, a, b, distance, meta, started, json_out,
           f"{x.shape[0]} samples of split {pair_split}, TF-IDF dimension {x.shape[1]}")


def _write(out: Path, x, ids: np.ndarray, a: np.ndarray, b: np.ndarray, distance: str, meta: dict,
           started: float, json_out: bool, over: str) -> None:
    """Distances of the pairs, the pair file, and the summary line (and --json)."""
    d = pair_distances(x, a, b, distance)
    write_pairs(out, ids[a], ids[b], d, meta)
    summary = {**meta, "n_pairs": int(a.size), "n_zero_distance": int((d == 0).sum()),
               "mean_distance": float(d.mean()) if d.size else None,
               "seconds": round(time.perf_counter() - started, 3), "out": str(out)}
    console.print(f"wrote {out}: {a.size} pairs ({meta['source']}, distance {distance}) over {over}")
    if json_out:
        print_json(summary)


command.__doc__ = reflow(command.__doc__)
