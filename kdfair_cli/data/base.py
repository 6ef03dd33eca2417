"""The dataset interface every reader and generator implements.

A dataset gives its splits, classes, protected attributes with their value names, and input
normalisation. Small image sets are held in memory as uint8 NCHW numpy arrays: training moves
them to the device once and augments batch-wise there (kdfair_cli.data.batches), never per
sample in PIL. This module imports no torch, so metrics and `pairs` can read data without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kdfair_cli.errors import KdfairError


@dataclass(frozen=True)
class Attribute:
    """A protected or descriptive attribute; its codes index `values`."""

    name: str
    values: tuple[str, ...]


@dataclass
class Split:
    """One split held in memory.

    images: uint8 [N, C, H, W]; labels: int64 [N]; sample_id: int64 [N] (index in the split);
    attrs: attribute name -> int codes [N]; extra: other per-sample columns (e.g. pose_id).
    Text sets (modality "text") have images=None and the raw text in extra["text"] (object
    array of str); the model's tokenizer turns it into token ids (kdfair_cli.models.text).
    """

    name: str
    images: np.ndarray | None
    labels: np.ndarray
    sample_id: np.ndarray
    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a predictions file need to know about a dataset."""

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    attributes: tuple[Attribute, ...]
    input_shape: tuple[int, ...]  # (C, H, W); () for text
    mean: tuple[float, ...]  # per channel, on [0, 1] pixels
    std: tuple[float, ...]
    splits: tuple[str, ...]
    fingerprint: str  # identifies the data on disk (e.g. sha256 of its manifest)
    options: dict = field(default_factory=dict)
    modality: str = "image"  # "image" or "text"

    def attribute(self, name: str) -> Attribute:
        for attr in self.attributes:
            if attr.name == name:
                return attr
        raise KeyError(name)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "attributes": {a.name: list(a.values) for a in self.attributes},
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "splits": list(self.splits),
            "fingerprint": self.fingerprint,
            "options": self.options,
            "modality": self.modality,
        }


class Dataset(Protocol):
    """A dataset opened from disk."""

    info: DatasetInfo

    def split(self, name: str) -> Split:
        """Load one split; raise KdfairError naming the file if it is missing or malformed."""
        ...


def check_labels(split: Split, num_classes: int, where: str) -> None:
    """Labels must be class ids in [0, num_classes): a manifest edited by hand may disagree."""
    if split.labels.size and (split.labels.min() < 0 or split.labels.max() >= num_classes):
        bad = int(split.labels.min() if split.labels.min() < 0 else split.labels.max())
        raise KdfairError(f"{where}: split '{split.name}' has label {bad}, outside the {num_classes} "
                          f"classes (num_classes = {num_classes}) the manifest declares")
