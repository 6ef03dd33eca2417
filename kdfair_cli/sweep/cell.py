"""One cell of a sweep: its id, stage, configuration, dependencies, outputs and hash.

Shared by the cell grids of every kind of sweep (kdfair_cli.sweep.cells for classifiers,
kdfair_cli.llm.sweep.cells for causal LMs), so both are numbered and hashed the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Bump when the meaning of a cell's outputs changes: every cell reruns.
CELL_FORMAT = 1
#: Stages in run order; each is a contiguous index range (a SLURM array). `audit` exists in LLM
#: sweeps only.
STAGES = ("train", "cache", "distill", "audit", "analyses")


class CellInterrupted(Exception):
    """SIGTERM/SIGINT while a cell trained: its state is saved and a rerun resumes it."""


def train_once(cfg: Any, verbose: bool) -> None:
    """Train a model cell's model (a TrainConfig) unless its model.json exists; resume a state a
    SIGTERM saved. CellInterrupted when interrupted again (the state is saved)."""
    from kdfair_cli.io.modeldir import META, STATE
    from kdfair_cli.train.loop import Interrupted
    from kdfair_cli.train.runner import train_model

    out = Path(cfg.out)
    if (out / META).exists():
        return
    resume = (out / STATE).exists()
    try:
        train_model(cfg, resume=resume, force=not resume, verbose=verbose)
    except Interrupted as exc:
        raise CellInterrupted(str(exc)) from None


def fmt_t(t: float) -> str:
    return f"{t:g}"


@dataclass
class Cell:
    id: str
    kind: str  # classifier: pairs | train | cache | fair | classes; llm: lm-train | lm-cache | audit | compare
    stage: str
    config: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    hash: str = ""
    index: int = -1

    def dir(self, sweep_dir: Path) -> Path:
        return Path(sweep_dir) / "cells" / self.id


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def number(cells: list[Cell]) -> list[Cell]:
    """Give cells (listed in stage order, each after its dependencies) their indices and hashes:
    a hash covers the cell's configuration and the hashes of the cells it needs."""
    by_id: dict[str, Cell] = {}
    for i, cell in enumerate(cells):
        cell.index = i
        cell.hash = _hash({"format": CELL_FORMAT, "id": cell.id, "kind": cell.kind, "config": cell.config,
                           "deps": {d: by_id[d].hash for d in cell.deps}})
        by_id[cell.id] = cell
    return cells
