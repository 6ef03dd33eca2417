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
from kdfair_cli.io.atomic import write_text_atomic
from kdfair_cli.sweep import analyses, llm_work
from kdfair_cli.sweep.cell import CellInterrupted, train_once
from kdfair_cli.sweep.cells import (
    CELL_JSON, LOCK, Cell, CellLock, build_cells, cell_status, is_done, read_record, write_record,
)
from kdfair_cli.sweep.llm_spec import LLMSweepSpec
from kdfair_cli.sweep.spec import SweepSpec

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


def _spec_record(spec: SweepSpec | LLMSweepSpec) -> dict[str, Any]:
    if isinstance(spec, LLMSweepSpec):
        return spec.record()
    return {"spec": str(spec.source), "name": spec.name, "seeds": spec.seeds, "temperatures": spec.temperatures,
            "alpha": spec.alpha, "t2_scaling": spec.t2_scaling, "distillation": spec.distillation,
            "dataset": spec.dataset, "data": str(spec.data_path), "roles": spec.roles,
            "group_attributes": spec.group_attributes, "pairs": spec.pairs}


def write_sweep_json(spec: SweepSpec | LLMSweepSpec, cells: list[Cell], sweep_dir: Path) -> None:
    """The resolved spec and the cell table, for status and report (same content from every run)."""
    doc = {
        "schema": "kdfair.sweep/1", **_spec_record(spec),
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


def prepare_data(spec: SweepSpec | LLMSweepSpec, log: Log) -> None:
    """Generate the spec's data folder (Trifeature, or the LLM toy) if it asks for it and it is missing."""
    if spec.generate is None:
        return
    if isinstance(spec, LLMSweepSpec):
        _generate_once(spec.data_path, lambda: llm_work.toy_made(spec), lambda: llm_work.make_toy(spec),
                       "the LLM toy", log)
        return
    from kdfair_cli.data.trifeature import generate_trifeature

    _generate_once(spec.data_path, lambda: (spec.data_path / "manifest.json").exists(),
                   lambda: generate_trifeature(spec.data_path, **spec.generate), "Trifeature", log)


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


def _model_work(spec: SweepSpec, cell: Cell, sweep_dir: Path, device: str, verbose: bool) -> dict[str, Any]:
    from kdfair_cli.inference import predict_split
    from kdfair_cli.io.modeldir import META

    d = cell.dir(sweep_dir)
    model_dir = d / "model"
    conf = cell.config
    cache = teacher = None
    if conf["role"] == "ds":
        dep = Path(sweep_dir).resolve() / "cells" / cell.deps[0]
        if conf.get("distillation") == "online":
            teacher = str(dep / "model")
        else:
            cache = str(dep / "train-logits.parquet")
    cfg = spec.train_config(conf["role"], conf["seed"], str(model_dir), temperature=conf.get("temperature"),
                            teacher_logits=cache, teacher=teacher)
    cfg.device = device
    train_once(cfg, verbose)
    res = predict_split(model_dir, split=spec.split, device=device)
    res.write(d / "preds.parquet")
    meta = json.loads((model_dir / META).read_text())
    acc = res.accuracy
    metrics = {"accuracy": acc, "n": int(len(res.label)), "split": spec.split, "role": conf["role"],
               "arch": meta["arch"], "seed": conf["seed"], "temperature": conf.get("temperature"),
               "val_acc": meta["final_metrics"]["val_acc"], "train_seconds": meta.get("train_seconds"),
               "parameters": meta.get("parameters")}
    write_text_atomic(d / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return {"accuracy": acc}


def _cache_work(spec: SweepSpec, cell: Cell, sweep_dir: Path, device: str) -> dict[str, Any]:
    from kdfair_cli.inference import predict_split

    teacher = Path(sweep_dir) / "cells" / cell.deps[0] / "model"
    res = predict_split(teacher, split="train", device=device)
    res.write(cell.dir(sweep_dir) / "train-logits.parquet")
    return {"n": int(len(res.label))}


def _fair_work(spec: SweepSpec, cell: Cell, sweep_dir: Path) -> dict[str, Any]:
    cells_dir = Path(sweep_dir) / "cells"
    preds = cells_dir / cell.deps[0] / "preds.parquet"
    out: dict[str, Any] = {"model": cell.deps[0]}
    if spec.group_attributes:
        out["group"] = analyses.group_fairness(preds, spec.group_attributes, cell.config["tests"])
    if spec.pairs != "none":
        out["individual"] = analyses.individual_fairness(preds, cells_dir / "pairs" / "pairs.parquet",
                                                         cell.config["tests"])
    write_text_atomic(cell.dir(sweep_dir) / "metrics.json", json.dumps(out, indent=2) + "\n")
    return out


def _classes_work(spec: SweepSpec, cell: Cell, sweep_dir: Path) -> dict[str, Any]:
    cells_dir = Path(sweep_dir) / "cells"

    def preds(prefix: str) -> list[Path]:
        return [cells_dir / d / "preds.parquet" for d in cell.deps if d.startswith(prefix)]

    ds = preds("ds-")
    tc = analyses.compare_classes(preds("teacher-"), ds)
    sc = analyses.compare_classes(preds("nds-"), ds)
    out = {"temperature": cell.config["temperature"], "n_tc": tc["n_significant"], "n_sc": sc["n_significant"],
           "n_classes": tc["n_classes"], "test": tc.get("test"), "teacher_vs_ds": tc, "nds_vs_ds": sc}
    write_text_atomic(cell.dir(sweep_dir) / "metrics.json", json.dumps(out, indent=2) + "\n")
    return out


def _pairs_work(spec: SweepSpec, cell: Cell, sweep_dir: Path) -> dict[str, Any]:
    analyses.make_pairs(cell.dir(sweep_dir) / "pairs.parquet", dataset=spec.dataset, data=spec.data_path,
                        split=spec.split, source=spec.pairs, k=spec.pairs_k, attribute=spec.pairs_attribute)
    return {}


def run_cell(spec: SweepSpec | LLMSweepSpec, cell: Cell, sweep_dir: Path, by_id: dict[str, Cell], *, device: str,
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
            if cell.kind == "train":
                result = _model_work(spec, cell, sweep_dir, device, verbose)
            elif cell.kind == "cache":
                result = _cache_work(spec, cell, sweep_dir, device)
            elif cell.kind == "fair":
                result = _fair_work(spec, cell, sweep_dir)
            elif cell.kind == "classes":
                result = _classes_work(spec, cell, sweep_dir)
            elif cell.kind == "pairs":
                result = _pairs_work(spec, cell, sweep_dir)
            elif cell.kind == "lm-train":
                result = llm_work.lm_train_work(spec, cell, sweep_dir, device, verbose)
            elif cell.kind == "lm-cache":
                result = llm_work.lm_cache_work(spec, cell, sweep_dir, device, verbose)
            elif cell.kind == "audit":
                result = llm_work.audit_work(spec, cell, sweep_dir, device)
            elif cell.kind == "compare":
                result = llm_work.compare_work(spec, cell, sweep_dir)
            else:  # pragma: no cover
                raise RuntimeError(f"unknown cell kind {cell.kind}")
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
                         "outputs": cell.outputs, "result": result})
        log(f"[{cell.index}] {cell.id}: done in {seconds:.1f}s")
        return "ran"
    finally:
        lock.release()


# ------------------------------------------------------------------------------ whole sweep

def index_from_env(index: int | None) -> int | None:
    """--index, else SLURM_ARRAY_TASK_ID when set."""
    return index if index is not None else env_int("SLURM_ARRAY_TASK_ID")


def run_sweep(spec: SweepSpec | LLMSweepSpec, sweep_dir: str | Path, *, index: int | None = None, stage: str | None = None,
              device: str | None = None, verbose: bool = False, log: Log = print) -> RunSummary:
    """Run every cell not yet done (in order), or only cell `index`, or only one stage."""
    sweep_dir = Path(sweep_dir)
    cells = build_cells(spec)
    if index is not None and not 0 <= index < len(cells):
        raise KdfairError(f"--index {index} is out of range: this sweep has cells 0..{len(cells) - 1}")
    spec.check_runnable(device)
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


def sweep_status(sweep_dir: str | Path, spec: SweepSpec | LLMSweepSpec | None = None) -> list[dict[str, Any]]:
    """One row per cell: index, id, stage, status (done/running/missing/failed), note."""
    sweep_dir = Path(sweep_dir)
    cells = build_cells(spec) if spec is not None else cells_from_json(read_sweep_json(sweep_dir))
    rows = []
    for c in cells:
        status, note = cell_status(c, sweep_dir)
        rows.append({"index": c.index, "id": c.id, "stage": c.stage, "status": status, "note": note})
    return rows
