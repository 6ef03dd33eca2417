"""The kinds of sweep, by name: the engine reaches a kind's spec, cells, work and report only here.

A kind is a `SweepKind` object named by a "module:name" string, so the engine (spec loading,
cell records, running, SLURM scripts) never imports a kind: image and text classifiers
(kdfair_cli.classifier) and causal LMs (kdfair_cli.llm.sweep). A new kind is one more entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdfair_cli.errors import KdfairError

#: kind name ([sweep] kind) -> "module:name" of its SweepKind; the first is the default.
SWEEP_KINDS: dict[str, str] = {
    "classifier": "kdfair_cli.classifier.kind:KIND",
    "llm": "kdfair_cli.llm.sweep.kind:KIND",
}
KINDS = tuple(SWEEP_KINDS)
DEFAULT_KIND = KINDS[0]

#: work(spec, cell, sweep_dir, device, verbose) -> the summary a cell records in cell.json.
Work = Callable[[Any, Any, Path, str, bool], dict[str, Any]]


@dataclass(frozen=True)
class SweepKind:
    """What makes a kind of sweep: its spec, its cells, the work of each cell kind, its report."""

    name: str
    #: parse(doc, source) -> the validated spec (an object with .kind == name, .source,
    #: .generate, .device and check_runnable(device)).
    parse: Callable[[dict[str, Any], Path], Any]
    #: The commented spec `kdfair sweep init --kind NAME` writes.
    example: str
    build_cells: Callable[[Any], list[Any]]
    #: cell.kind -> its work.
    work: dict[str, Work]
    #: Generate the spec's data folder when it asks for it (called with a make-once helper).
    prepare_data: Callable[[Any, Callable[..., None], Callable[[str], None]], None]
    #: The resolved spec as sweep.json records it.
    record: Callable[[Any], dict[str, Any]]
    #: report(sweep_dir, out) -> the kind's Report (pandas and matplotlib load only here).
    report: Callable[[Path, Path | None], Any]
    #: What its analyses stage computes, for the SLURM script's comment.
    analyses: str


def sweep_kind(name: str) -> SweepKind:
    """The registered kind `name`; KdfairError for an unknown one."""
    if name not in SWEEP_KINDS:
        raise KdfairError(f"unknown sweep kind '{name}'; expected {'|'.join(KINDS)}")
    module, attr = SWEEP_KINDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def kind_of(spec: Any) -> SweepKind:
    return sweep_kind(spec.kind)
