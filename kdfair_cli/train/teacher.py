"""Where a distilled student's soft targets come from: a live teacher or a cached logits file.

Online, the frozen teacher (eval mode, no gradients) sees the same augmented batch as the
student. Offline, the teacher's logits on the un-augmented training images are read from a
predictions file of the train split (`kdfair predict TEACHER --split train`), joined on
sample_id: the teacher runs once for a whole temperature sweep instead of once per
temperature. With augmentation on, the student then sees a cropped/flipped image while its
target is the teacher's output on the original image (the usual cached-soft-label
approximation); pass --no-augment for targets that match the inputs exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdfair_cli.data.base import DatasetInfo, Split
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_model_matches, check_same_source, rows_for_ids, source_of
from kdfair_cli.io.modeldir import sha256_file
from kdfair_cli.models.saved import load_model
from kdfair_cli.io.predictions import read_predictions
from kdfair_cli.train.config import TrainConfig
from kdfair_cli.train.loop import autocast

TeacherFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def live_teacher(cfg: TrainConfig, info: DatasetInfo, train: Split, device: torch.device) -> tuple[TeacherFn, dict]:
    """A frozen teacher model run on each (augmented) student batch."""
    model, meta = load_model(cfg.teacher, device)
    check_model_matches(f"teacher {cfg.teacher}", meta, info)
    for p in model.parameters():
        p.requires_grad_(False)
    own = getattr(model, "make_batches", None)
    if own is not None:
        # Text: the teacher reads the training posts through its own tokenizer (which may differ
        # from the student's); index holds positions in the same split, and there is no
        # augmentation, so teacher and student see the same posts.
        teacher_batches = own(train, device)

        def teacher_fn(index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad(), autocast(device, cfg.amp):
                return model(teacher_batches.get(index)).float()
    else:
        renorm = _renormaliser(info, meta.get("normalization"), device)

        def teacher_fn(index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad(), autocast(device, cfg.amp):
                return model(renorm(x)).float()

    provenance = {"mode": "online", "dir": str(Path(cfg.teacher).resolve()), "arch": meta["arch"],
                  "seed": meta.get("seed"), "weights_sha256": meta.get("weights_sha256")}
    return teacher_fn, provenance


def _renormaliser(info: DatasetInfo, norm: dict | None, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Map inputs normalised with the student's statistics to the teacher's, if they differ."""
    if not norm or (tuple(norm["mean"]) == tuple(info.mean) and tuple(norm["std"]) == tuple(info.std)):
        return lambda x: x

    def view(v) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    s_mean, s_std, t_mean, t_std = view(info.mean), view(info.std), view(norm["mean"]), view(norm["std"])
    return lambda x: (x * s_std + s_mean - t_mean) / t_std


def cached_teacher(cfg: TrainConfig, info: DatasetInfo, train: Split, device: torch.device) -> tuple[TeacherFn, dict]:
    """Teacher logits from a predictions file of the train split, aligned to the student's samples."""
    path = Path(cfg.teacher_logits)
    preds = read_predictions(path)
    meta = preds.meta or {}
    if preds.logits is None:
        raise KdfairError(f"{path} has no logits; the teacher cache needs `kdfair predict TEACHER --split train`")
    want = {"num_classes": info.num_classes, "split": "train", "fingerprint": info.fingerprint}
    check_same_source(f"the train split of {cfg.data}", want, str(path),
                      source_of(meta, preds.logits.shape[1]),
                      "; expected the train split (`kdfair predict TEACHER --split train`)")
    rows = rows_for_ids(preds.sample_id, train.sample_id, have=str(path),
                        want=f"the train split of {cfg.data}")
    if preds.label is not None and not np.array_equal(preds.label[rows], train.labels):
        raise KdfairError(f"{path}: labels differ from the training split's; was it made on another dataset?")
    aligned = torch.from_numpy(np.ascontiguousarray(preds.logits[rows], dtype=np.float32)).to(device)
    provenance: dict[str, Any] = {"mode": "offline", "logits_cache": str(path.resolve()),
                                  "cache_sha256": sha256_file(path), "model": meta.get("model")}
    return (lambda index, x: aligned[index]), provenance


def teacher_setup(cfg: TrainConfig, info: DatasetInfo, train: Split, device: torch.device) -> tuple[TeacherFn, dict]:
    return (live_teacher if cfg.teacher else cached_teacher)(cfg, info, train, device)
