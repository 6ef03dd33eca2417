"""Architecture families with their own build, objective, evaluation, saving and prediction, by
"module:name": the trainer and predict reach them only through here, never by import.

Image classifiers (kdfair_cli.models.registry) and text classifiers (kdfair_cli.models.text)
are the trainer's own; a family registered here replaces each of its steps with a hook. The
causal LMs (kdfair_cli.llm.family) are one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: --arch -> "module:name" of its ArchFamily.
ARCH_FAMILIES: dict[str, str] = {"causal-lm": "kdfair_cli.llm.family:FAMILY"}
#: dataset modality -> the --arch that trains on it (a family of its own).
MODALITY_ARCHS: dict[str, str] = {"corpus": "causal-lm"}


@dataclass(frozen=True)
class ArchFamily:
    """The steps of training and predicting that a family does its own way."""

    #: model.json's arch_family.
    name: str
    #: The dataset modality it trains on.
    modality: str
    #: build(cfg, info, train split) -> (model, the facts model.json records of it).
    build: Callable[[Any, Any, Any], tuple[Any, dict]]
    #: objective(cfg, model, train batches, val batches, train split, device, data fingerprint)
    #: -> (loop Objective, teacher provenance, validation Evaluator).
    objective: Callable[..., tuple[Any, dict, Any]]
    #: save(meta, model, train batches, val batches, facts) -> the weights writer; updates meta.
    save: Callable[..., Any]
    #: predictor(model_dir) -> predict(model_dir, **options) when the directory is the family's,
    #: else None (KdfairError for a directory no family can read).
    predictor: Callable[[Path], Callable[..., Any] | None]


def _load(ref: str) -> ArchFamily:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def arch_family(arch: str) -> ArchFamily | None:
    """The family of --arch, or None for the trainer's own image and text architectures."""
    return _load(ARCH_FAMILIES[arch]) if arch in ARCH_FAMILIES else None


def families() -> list[ArchFamily]:
    return [_load(ref) for ref in ARCH_FAMILIES.values()]


def check_family_fits(arch: str, dataset: str, modality: str) -> None:
    """KdfairError when --arch belongs to a family and the dataset is not of its modality, or back."""
    from kdfair_cli.errors import KdfairError

    want_arch = MODALITY_ARCHS.get(modality)
    if arch in ARCH_FAMILIES or want_arch is not None:
        if want_arch == arch:
            return
        want = (f"--dataset {next(m for m, a in MODALITY_ARCHS.items() if a == arch)}"
                if arch in ARCH_FAMILIES else f"--arch {want_arch}")
        raise KdfairError(f"arch '{arch}' does not fit dataset {dataset} ({modality}); expected {want}")
