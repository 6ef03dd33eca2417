"""Shared fixtures for the metric tests: prediction files and a fake in-memory dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.data.base import Attribute, DatasetInfo, Split
from kdfair_cli.io.predictions import write_predictions

runner = CliRunner()


def run(*args: str):
    """Invoke the kdfair app in-process; returns click's Result."""
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    """The stderr text of a failed invocation (click >= 8.2 keeps it separately)."""
    return getattr(result, "stderr", None) or result.output


def logits_for(label: np.ndarray, num_classes: int, accuracy: float,
               rng: np.random.Generator) -> np.ndarray:
    """Random logits whose argmax equals `label` on about `accuracy` of the rows."""
    n = label.size
    logits = rng.normal(size=(n, num_classes)).astype(np.float32)
    hit = rng.random(n) < accuracy
    logits[np.arange(n), label] += np.where(hit, 6.0, -6.0).astype(np.float32)
    return logits


def write_run(path: Path, label: np.ndarray, logits: np.ndarray, attrs: dict | None = None,
              meta: dict | None = None, sample_id: np.ndarray | None = None) -> Path:
    sample_id = np.arange(label.size) if sample_id is None else sample_id
    write_predictions(path, sample_id=sample_id, label=label, logits=logits, attrs=attrs or {},
                      meta=meta or {"split": "test"})
    return path


class FakeDataset:
    """Twelve 3x2x2 images: 2 poses x 3 colours x 2 textures, label = pose % 2."""

    def __init__(self, path: Path):
        pose = np.repeat(np.arange(2), 6)
        color = np.tile(np.repeat(np.arange(3), 2), 2)
        texture = np.tile(np.arange(2), 6)
        rng = np.random.default_rng(7)
        images = rng.integers(0, 256, size=(12, 3, 2, 2), dtype=np.uint8)
        self._split = Split("test", images, (pose % 2).astype(np.int64),
                            np.arange(100, 112, dtype=np.int64),
                            {"color": color, "texture": texture}, {"pose_id": pose})
        self.info = DatasetInfo("fake", 2, ("even", "odd"),
                                (Attribute("color", ("r", "g", "b")),
                                 Attribute("texture", ("solid", "dots"))),
                                (3, 2, 2), (0.5,) * 3, (0.25,) * 3, ("test",), "fp-fake")

    def split(self, name: str) -> Split:
        return self._split


def open_fake(path: Path, **options) -> FakeDataset:
    return FakeDataset(path)
