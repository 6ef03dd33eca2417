"""Run the cells of a sweep: all of them in dependency order, or one by index (SLURM arrays).

Each cell writes only inside its own folder, holds an flock on it while it runs, writes its
outputs atomically and `cell.json` last; the aggregates (report) are computed from the cell
folders afterwards. So processes running different cells of one sweep folder at the same time
never touch each other's files, and a killed cell leaves no output that looks finished.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdfair_cli.env import env_int
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import refuse_input_target, write_text_atomic
from kdfair_cli.sweep.cell import CellInterrupted
from kdfair_cli.sweep.cells import (
    CELL_JSON, LOCK, Cell, CellLock, build_cells, cell_status, is_done, read_record, write_record, output_hashes,
)
from kdfair_cli.sweep.kinds import kind_of

SWEEP_JSON = "sweep.json"
Log = Callable[[str], None]


@dataclass
class RunSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.blocked or self.busy)


def write_sweep_json(spec: Any, cells: list[Cell], sweep_dir: Path) -> None:
    """The resolved spec and the cell table, for status and report (same content from every run)."""
    doc = {
        "schema": "kdfair.sweep/1", **kind_of(spec).record(spec),
        "cells": [{"index": c.index, "id": c.id, "kind": c.kind, "stage": c.stage, "hash": c.hash,
                   "deps": c.deps, "outputs": c.outputs, "config": c.config} for c in cells],
    }
    text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
    path = Path(sweep_dir) / SWEEP_JSON
    if not path.exists() or path.read_text() != text:
        write_text_atomic(path, text)


def read_sweep_json(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / SWEEP_JSON
    if not path.exists():
        raise KdfairError(f"{path} is missing: {sweep_dir} is not a sweep folder (run `kdfair sweep run` first)")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KdfairError(f"{path} is damaged ({exc}); `kdfair sweep run SPEC -o {sweep_dir}` "
                          "writes it again") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list):
        raise KdfairError(f"{path} is not a kdfair sweep record (no cell table)")
    return doc


def cells_from_json(doc: dict[str, Any]) -> list[Cell]:
    return [Cell(c["id"], c["kind"], c["stage"], c["config"], c["deps"], c["outputs"], c["hash"], c["index"])
            for c in doc["cells"]]


def _generate_once(path: Path, made: Callable[[], bool], make: Callable[[], Any], what: str, log: Log) -> None:
    """Make generated data at `path` once: a second process waits on the lock, then finds it made."""
    if made():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / f".{path.name}.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if not made():
            log(f"generating {what} into {path} ...")
            t0 = time.time()
            make()
            log(f"generated {what} in {time.time() - t0:.0f}s")


def prepare_data(spec: Any, log: Log) -> None:
    """Generate the spec's data folder (its kind knows how) if it asks for it and it is missing."""
    if spec.generate is None:
        return
    kind_of(spec).prepare_data(spec, _generate_once, log)


# --------------------------------------------------------------------------------- one cell

def _clear_cell_dir(d: Path) -> None:
    """Remove a cell's old outputs (another configuration) but keep its lock file."""
    for child in d.iterdir():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def run_cell(spec: Any, cell: Cell, sweep_dir: Path, by_id: dict[str, Cell], *, device: str,
             verbose: bool, log: Log) -> str:
    """Run one cell unless done; returns done | ran | busy | blocked | failed.

    Raises CellInterrupted (state saved, cell resumable) on SIGTERM during training.
    """
    sweep_dir = Path(sweep_dir)
    if is_done(cell, sweep_dir):
        return "done"
    missing = [d for d in cell.deps if not is_done(by_id[d], sweep_dir)]
    if missing:
        log(f"[{cell.index}] {cell.id}: waiting for {', '.join(missing)} (not done)")
        return "blocked"
    d = cell.dir(sweep_dir)
    lock = CellLock(d)
    if not lock.acquire():
        log(f"[{cell.index}] {cell.id}: running in another process; skipped")
        return "busy"
    try:
        if is_done(cell, sweep_dir):  # finished by another process meanwhile
            return "done"
        old = read_record(d)
        if old is not None and old.get("hash") != cell.hash:
            log(f"[{cell.index}] {cell.id}: configuration changed; starting over")
            _clear_cell_dir(d)
        elif old is None and any(p.name not in (LOCK, CELL_JSON) for p in d.iterdir()):
            _clear_cell_dir(d)  # leftovers without a record: unknown configuration
        started = time.time()
        record = {"id": cell.id, "index": cell.index, "kind": cell.kind, "hash": cell.hash, "config": cell.config,
                  "deps": cell.deps, "status": "running", "host": socket.gethostname(), "pid": os.getpid(),
                  "started": started}
        write_record(d, record)
        log(f"[{cell.index}] {cell.id}: running")
        try:
            work = kind_of(spec).work.get(cell.kind)
            if work is None:  # pragma: no cover
                raise RuntimeError(f"unknown cell kind {cell.kind}")
            result = work(spec, cell, sweep_dir, device, verbose)
        except CellInterrupted:
            write_record(d, {**record, "status": "interrupted", "finished": time.time()})
            raise
        except KeyboardInterrupt:
            write_record(d, {**record, "status": "interrupted", "finished": time.time()})
            raise
        except Exception as exc:  # a failed cell: recorded, the sweep goes on with the others
            if os.environ.get("KDFAIR_DEBUG"):
                import traceback

                traceback.print_exc()
            msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, KdfairError) else str(exc)
            write_record(d, {**record, "status": "failed", "error": msg, "finished": time.time()})
            log(f"[{cell.index}] {cell.id}: FAILED: {msg}")
            return "failed"
        seconds = time.time() - started
        write_record(d, {**record, "status": "done", "finished": time.time(), "seconds": seconds,
                         "outputs": cell.outputs, "result": result, "files": output_hashes(d)})
        log(f"[{cell.index}] {cell.id}: done in {seconds:.1f}s")
        return "ran"
    finally:
        lock.release()


# ------------------------------------------------------------------------------ whole sweep

def index_from_env(index: int | None) -> int | None:
    """--index, else SLURM_ARRAY_TASK_ID when set."""
    return index if index is not None else env_int("SLURM_ARRAY_TASK_ID")


def run_sweep(spec: Any, sweep_dir: str | Path, *, index: int | None = None, stage: str | None = None,
              device: str | None = None, verbose: bool = False, log: Log = print) -> RunSummary:
    """Run every cell not yet done (in order), or only cell `index`, or only one stage."""
    sweep_dir = Path(sweep_dir)
    cells = build_cells(spec)
    if index is not None and not 0 <= index < len(cells):
        raise KdfairError(f"--index {index} is out of range: this sweep has cells 0..{len(cells) - 1}")
    spec.check_runnable(device)
    refuse_input_target(sweep_dir)  # the spec's inputs are registered: no sweep inside a model it reads
    (sweep_dir / "cells").mkdir(parents=True, exist_ok=True)
    write_sweep_json(spec, cells, sweep_dir)
    prepare_data(spec, log)
    by_id = {c.id: c for c in cells}
    todo = [cells[index]] if index is not None else [c for c in cells if stage is None or c.stage == stage]
    summary = RunSummary()
    dev = device or spec.device
    for cell in todo:
        outcome = run_cell(spec, cell, sweep_dir, by_id, device=dev, verbose=verbose, log=log)
        {"done": summary.skipped, "ran": summary.ran, "busy": summary.busy, "blocked": summary.blocked,
         "failed": summary.failed}[outcome].append(cell.id)
    return summary


def sweep_status(sweep_dir: str | Path, spec: Any = None) -> list[dict[str, Any]]:
    """One row per cell: index, id, stage, status (done/running/missing/failed), note."""
    sweep_dir = Path(sweep_dir)
    cells = build_cells(spec) if spec is not None else cells_from_json(read_sweep_json(sweep_dir))
    rows = []
    for c in cells:
        status, note = cell_status(c, sweep_dir)
        rows.append({"index": c.index, "id": c.id, "stage": c.stage, "status": status, "note": note})
    return rows
