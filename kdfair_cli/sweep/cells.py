"""The cells of a sweep: built by its kind; their records, locks and status.

A cell is one unit of work with its own folder `SWEEP_DIR/cells/<id>/` holding `cell.json`
(id, hash, status, timings) and its declared outputs. A kind lists its cells in stage order
(kdfair_cli.sweep.cell.STAGES), so the cells of one stage have contiguous indices (what a SLURM
array needs): kdfair_cli.classifier.cells, kdfair_cli.llm.sweep.cells.

A cell's hash covers its resolved configuration and the hashes of the cells it depends on, so
a changed spec changes exactly the cells downstream of the change.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from kdfair_cli.sweep.cell import Cell
from kdfair_cli.sweep.kinds import kind_of

CELL_JSON = "cell.json"
LOCK = ".lock"


def build_cells(spec: Any) -> list[Cell]:
    """Every cell of the spec in stage order, with indices and hashes (its kind builds them)."""
    return kind_of(spec).build_cells(spec)


def stage_ranges(cells: list[Cell]) -> dict[str, tuple[int, int]]:
    """stage -> (first index, last index) of its cells; stages without cells are left out."""
    out: dict[str, tuple[int, int]] = {}
    for cell in cells:
        lo, _ = out.get(cell.stage, (cell.index, cell.index))
        out[cell.stage] = (lo, cell.index)
    return out


# ----------------------------------------------------------------------------- cell records

def read_record(cell_dir: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads((cell_dir / CELL_JSON).read_text())
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def write_record(cell_dir: Path, record: dict[str, Any]) -> None:
    from kdfair_cli.io.atomic import write_text_atomic

    write_text_atomic(cell_dir / CELL_JSON, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


#: sha256 of files already hashed by this process, keyed on (path, inode, size, mtime): a sweep
#: checks a done cell several times (run, its dependants, report) and a model's weights are large.
_HASHED: dict[tuple[str, int, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def output_hashes(cell_dir: Path) -> dict[str, str]:
    """sha256 of every file a finished cell holds (weights, caches, predictions, metrics), by path
    relative to the cell folder; its record, lock and hidden temporaries left out."""
    out = {}
    for path in sorted(cell_dir.rglob("*")):
        rel = path.relative_to(cell_dir)
        if path.is_file() and not path.is_symlink() and str(rel) != CELL_JSON and \
                not any(part.startswith(".") for part in rel.parts):
            out[str(rel)] = _sha256(path)
    return out


def damaged_output(cell: Cell, sweep_dir: Path) -> str | None:
    """Why a cell's outputs cannot be used, or None: a declared output missing, a JSON output that
    does not parse, or a file whose sha256 differs from the one recorded when the cell finished
    (truncated weights, a damaged predictions or flips file)."""
    d = cell.dir(sweep_dir)
    for o in cell.outputs:
        path = d / o
        if not path.exists():
            return f"{o} is missing"
        if path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                return f"{o} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    rec = read_record(d)
    recorded = rec.get("files") if isinstance(rec, dict) else None
    if isinstance(recorded, dict):  # cells finished by an older kdfair recorded none
        for name, digest in recorded.items():
            path = d / name
            if not path.is_file():
                return f"{name} is missing"
            if _sha256(path) != digest:
                return f"{name} changed since the cell finished (sha256 differs: damaged or replaced)"
    return None


def outputs_complete(cell: Cell, sweep_dir: Path) -> bool:
    return damaged_output(cell, sweep_dir) is None


def is_done(cell: Cell, sweep_dir: Path) -> bool:
    rec = read_record(cell.dir(sweep_dir))
    return bool(rec and rec.get("status") == "done" and rec.get("hash") == cell.hash
                and outputs_complete(cell, sweep_dir))


class CellLock:
    """An exclusive, non-blocking flock on cells/<id>/.lock, held while the cell runs.

    The kernel drops it when the process dies, so a killed cell never looks 'running'.
    """

    def __init__(self, cell_dir: Path) -> None:
        self.path = cell_dir / LOCK
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def is_locked(cell_dir: Path) -> bool:
    if not (cell_dir / LOCK).exists():
        return False
    lock = CellLock(cell_dir)
    if lock.acquire():
        lock.release()
        return False
    return True


def cell_status(cell: Cell, sweep_dir: Path) -> tuple[str, str]:
    """(done | running | missing | failed, a short note)."""
    d = cell.dir(sweep_dir)
    if is_locked(d):
        return "running", ""
    rec = read_record(d)
    if rec is None:
        return "missing", ""
    if rec.get("hash") != cell.hash:
        return "missing", "spec changed"
    status = rec.get("status")
    if status == "done":
        damage = damaged_output(cell, sweep_dir)
        if damage is None:
            return "done", f"{rec.get('seconds', 0):.0f}s"
        return "missing", f"{damage}; reruns"
    if status == "failed":
        return "failed", str(rec.get("error", ""))[:120]
    return "missing", "interrupted; resumes"  # status running/interrupted but no lock held
