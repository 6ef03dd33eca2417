"""Architecture families with their own build, objective, evaluation, saving, loading and
prediction, by "module:name": the trainer, the loader and predict reach them only through here.

Image classifiers (kdfair_cli.models.registry) are the trainer's own; a family registered here
replaces each step it has a hook for. Text classifiers (kdfair_cli.models.text_family) and
causal LMs (kdfair_cli.llm.family) are families.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdfair_cli.errors import KdfairError

#: model.json's arch_family -> "module:name" of its ArchFamily, in the order their fit is checked.
FAMILIES: dict[str, str] = {
    "causal-lm": "kdfair_cli.llm.family:FAMILY",
    "hf": "kdfair_cli.models.text_family:FAMILY",
}
#: --arch -> its family.
ARCH_FAMILIES: dict[str, str] = {"causal-lm": "causal-lm", "bert": "hf", "distilbert": "hf", "hf": "hf"}
#: dataset modality -> the family that trains on it.
MODALITY_FAMILIES: dict[str, str] = {"corpus": "causal-lm", "text": "hf"}


@dataclass(frozen=True)
class ArchFamily:
    """The steps of training, loading and predicting that a family does its own way."""

    #: model.json's arch_family.
    name: str
    #: What the fit check asks for: the data of its archs, the archs for its data.
    wants_data: str
    wants_arch: str
    #: build(cfg, info, train split) -> (model, the facts model.json records of it); the model
    #: loads --pretrained itself.
    build: Callable[[Any, Any, Any], tuple[Any, dict]]
    #: save(meta, model, train batches, val batches, facts) -> the weights writer; updates meta.
    save: Callable[..., Any]
    #: objective(cfg, model, train batches, val batches, train split, device, data fingerprint)
    #: -> (loop Objective, teacher provenance, validation Evaluator); None: the trainer's
    #: classification objective (hard labels, or KD for role ds).
    objective: Callable[..., tuple[Any, dict, Any]] | None = None
    #: load(model_dir, meta) -> the model of a finished model directory; None: not loadable as a
    #: classifier.
    load: Callable[[Path, dict], Any] | None = None
    #: predictor(model_dir) -> predict(model_dir, **options) when the directory is the family's
    #: and predicts its own way (without model.json), else None.
    predictor: Callable[[Path], Callable[..., Any] | None] | None = None
    #: Training settings only some families implement (TrainConfig refuses them elsewhere):
    #: "lora_rank", "lora_alpha", "grad_checkpointing", "fsdp".
    supports: frozenset[str] = frozenset()
    #: shard_units(model) -> the submodules FSDP shards one by one (its blocks), for "fsdp".
    shard_units: Callable[[Any], list[Any]] | None = None


def family(name: str) -> ArchFamily:
    module, attr = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), attr)


def arch_family(arch: str) -> ArchFamily | None:
    """The family of --arch, or None for the trainer's own image architectures."""
    return family(ARCH_FAMILIES[arch]) if arch in ARCH_FAMILIES else None


def saved_family(arch_family: str | None) -> ArchFamily | None:
    """The family of a model.json's arch_family, or None (an image model)."""
    return family(arch_family) if arch_family in FAMILIES else None


def predicting_families() -> list[ArchFamily]:
    """The families that predict model directories their own way."""
    return [f for f in map(family, FAMILIES) if f.predictor is not None]


def check_family_fits(arch: str, dataset: str, modality: str) -> None:
    """KdfairError when --arch belongs to a family and the dataset is not of its modality, or back."""
    for name in FAMILIES:
        arch_is = ARCH_FAMILIES.get(arch) == name
        if arch_is != (MODALITY_FAMILIES.get(modality) == name):
            fam = family(name)
            want = fam.wants_data if arch_is else fam.wants_arch
            raise KdfairError(f"arch '{arch}' does not fit dataset {dataset} ({modality}); expected {want}")
