"""Run a trained model over a dataset split: the logits behind every predictions file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdfair_cli import __version__
from kdfair_cli.data.registry import open_dataset
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_model_matches
from kdfair_cli.models.saved import load_model
from kdfair_cli.io.predictions import SplitPredictions
from kdfair_cli.data.batches import Batches, make_batches
from kdfair_cli.train import distributed
from kdfair_cli.train.loop import autocast


def _forward(model: torch.nn.Module, batches: Iterator[tuple[torch.Tensor, Any]],
             amp: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(positions, float32 logits) of the (index, input) batches; logits None when there were none."""
    model.eval()
    pos, chunks = [], []
    with torch.no_grad():
        for index, x in batches:
            with autocast(x.device, amp):
                chunks.append(model(x).float().cpu())
            pos.append(index.cpu())
    if not chunks:
        return np.zeros(0, np.int64), None
    return torch.cat(pos).numpy(), torch.cat(chunks).numpy()


def _sharded_logits(model: torch.nn.Module, batches: Batches, batch_size: int, amp: bool,
                    env: distributed.DistEnv) -> np.ndarray | None:
    """Each rank runs positions rank, rank + W, ...; rank 0 gathers and returns all logits."""
    n = len(batches)
    order = torch.arange(env.rank, n, env.world)
    parts = distributed.gather_objects(_forward(model, batches.epoch(order, batch_size, False, None), amp), env)
    if not env.main:
        return None
    width = next(p[1].shape[1] for p in parts if p[1] is not None)
    out = np.zeros((n, width), dtype=np.float32)
    for index, logits in parts:
        if logits is not None:
            out[index] = logits
    return out


def compute_logits(model: torch.nn.Module, batches: Batches, batch_size: int, amp: bool = False) -> np.ndarray:
    """Logits at T = 1 for every sample, in order, without augmentation."""
    _, logits = _forward(model, batches.sequential(batch_size), amp)
    return logits if logits is not None else np.zeros((0, 0), np.float32)


def predict_split(model_dir: str | Path, *, split: str = "test", data: str | None = None,
                  dataset: str | None = None, device: str = "auto", batch_size: int | None = None,
                  amp: bool = False, dataset_options: dict[str, Any] | None = None,
                  workers: int | None = None, lm_options: dict[str, Any] | None = None
                  ) -> SplitPredictions | None:
    """Predict one split of the dataset the model was trained on (or of `dataset` at `data`).

    The dataset is reopened with the --dataset-option values recorded in model.json (when the
    dataset is the same), updated by `dataset_options`. Under torchrun each rank predicts every
    W-th sample and rank 0 gathers them; the other ranks return None. A plain transformers
    causal-LM directory (no model.json) scores multiple-choice items instead (its family's
    predictor, kdfair_cli.models.families; `lm_options` are its options); batch_size defaults
    to 512 samples, or 16 items for a causal LM.
    """
    from kdfair_cli.models.families import predicting_families

    for family in predicting_families():  # a directory of a family of its own (a causal LM) predicts its way
        predict = family.predictor(Path(model_dir))
        if predict is not None:
            return predict(model_dir, dataset=dataset, data=data, split=split, device=device,
                           batch_size=batch_size, dataset_options=dataset_options, lm_options=lm_options)
    batch_size = batch_size or 512
    if batch_size <= 0:
        raise KdfairError(f"--batch-size must be positive, got {batch_size}")
    env, dev = distributed.setup(device)
    try:
        result = _predict(model_dir, split, data, dataset, dev, batch_size, amp, dataset_options, workers, env)
        distributed.barrier(env)
        return result
    finally:
        distributed.teardown(env)


def _predict(model_dir, split, data, dataset, dev, batch_size, amp, dataset_options, workers,
             env: distributed.DistEnv) -> SplitPredictions | None:
    model, meta = load_model(model_dir, dev)
    trained_on = meta.get("dataset", {})
    name = dataset or trained_on.get("name")
    path = data or trained_on.get("path")
    if not name or not path:
        raise KdfairError(f"{model_dir}: model.json names no dataset; give --dataset and --data")
    options = dict(trained_on.get("open_options") or {}) if name == trained_on.get("name") else {}
    options.update(dataset_options or {})
    ds = open_dataset(name, path, **options)
    if workers is not None and hasattr(ds, "configure_loading"):
        ds.configure_loading(workers=workers)
    info = ds.info
    if split not in info.splits:
        raise KdfairError(f"dataset {name} at {path} has no split '{split}'; it has: {', '.join(info.splits)}")
    check_model_matches(f"model {model_dir}", meta, info)
    part = ds.split(split)
    norm = meta.get("normalization", {"mean": info.mean, "std": info.std})
    batches = make_batches(ds, part, dev, tuple(norm["mean"]), tuple(norm["std"]), model=model)
    if env.active:
        logits = _sharded_logits(model, batches, batch_size, amp, env)
        if logits is None:
            return None
    else:
        logits = compute_logits(model, batches, batch_size, amp)
    out_meta = {
        "kdfair_version": __version__,
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "attributes": {a.name: list(a.values) for a in info.attributes},
        "dataset": info.name,
        "dataset_fingerprint": info.fingerprint,
        "split": split,
        "model": {k: meta.get(k) for k in ("arch", "role", "seed", "temperature", "alpha", "kd_scale_t2",
                                           "weights_sha256", "parameters")}
        | {"dir": str(Path(model_dir).resolve()), "teacher": meta.get("teacher")},
    }
    return SplitPredictions(part.sample_id.astype(np.int64), part.labels.astype(np.int64), logits,
                            dict(part.attrs), out_meta)
