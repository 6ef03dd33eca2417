"""Atomic outputs: write to a temporary name in the same folder, then rename.

A killed or failed command never leaves a partial file under the final name, and an existing
file is only replaced once the new one is complete.

Outputs never destroy inputs: while a command runs (`guard_inputs`, entered by the CLI for
each command invocation), every reader registers what it read, and every writer here refuses
a target that is one of those files (same path or same inode), lies inside a model directory
that was read, or would replace a dataset folder that was read (whose files the dataset
readers register as they read them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kdfair_cli.errors import KdfairError

#: Inputs of the running command: None outside `guard_inputs` (library use registers nothing).
_inputs: dict[str, list[tuple[Path, str]]] | None = None
_STALE_SECONDS = 86400.0  # another host's temporary output older than this is abandoned


@contextlib.contextmanager
def guard_inputs() -> Iterator[None]:
    """Protect the inputs one command reads from its own outputs; a fresh registry per call."""
    global _inputs
    saved, _inputs = _inputs, {"file": [], "model": [], "data": [], "folder": [], "stdin": []}
    try:
        yield
    finally:
        _inputs = saved


def register_input(path: str | Path, kind: str = "file") -> None:
    """Record an input of the running command: a file, a model directory, a dataset folder (new
    files may go inside it) or a sealed folder (kind "folder", e.g. a teacher cache: nothing may)."""
    if _inputs is None or str(path) == "-":
        return
    _inputs[kind].append((Path(path).resolve(), str(path)))


def claim_stdin() -> None:
    """Note that this command reads stdin; KdfairError on a second reader ('-' given twice): stdin
    can be read once, and a second reader would see no data (or crash a native reader)."""
    if _inputs is None:
        return
    if _inputs["stdin"]:
        raise KdfairError("'-' (stdin) is given for two inputs: stdin can be read once; give a file "
                          "for one of them")
    _inputs["stdin"].append((Path("-"), "-"))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_input_target(path: str | Path) -> None:
    """KdfairError if writing `path` would overwrite or replace an input of this command."""
    if _inputs is None:
        return
    target = Path(path).resolve()
    for resolved, shown in _inputs["file"]:
        if target == resolved or _same_file(target, resolved):
            raise KdfairError(f"output {path} is the input file {shown}; refusing to overwrite "
                              "an input (choose another output name)")
        if resolved.is_relative_to(target) and target != resolved:
            raise KdfairError(f"output {path} would replace the folder holding the input {shown}")
    for resolved, shown in _inputs["model"]:
        if target == resolved or target.is_relative_to(resolved) or resolved.is_relative_to(target):
            raise KdfairError(f"output {path} lies in the input model directory {shown}; refusing "
                              "to write into a model that is being read")
    for resolved, shown in _inputs["folder"]:
        if target == resolved or target.is_relative_to(resolved) or resolved.is_relative_to(target):
            raise KdfairError(f"output {path} lies in the input folder {shown}; refusing to write "
                              "into a folder that is being read")
    for resolved, shown in _inputs["data"]:  # its files are registered one by one as they are read
        if resolved.is_relative_to(target):
            raise KdfairError(f"output {path} would replace the input dataset folder {shown}")


def _refuse_stdout_input() -> None:
    """`-o - >> input`: stdout redirected onto an input file."""
    if _inputs is None:
        return
    try:
        fd_stat = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return
    for resolved, shown in _inputs["file"]:
        try:
            st = os.stat(resolved)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (fd_stat.st_dev, fd_stat.st_ino):
            raise KdfairError(f"stdout is redirected to the input file {shown}; refusing to "
                              "overwrite an input")


def check_writable(path: str | Path) -> Path:
    """Fail early, before any work, if the file `path` cannot be created (missing or read-only
    folder) or would overwrite an input. Folders it had to create for the check are removed."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise KdfairError(f"output path {path} is a directory, expected a file name")
    refuse_input_target(path)
    _probe_folder(path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_replaceable(out: Path, ours: Callable[[Path], bool], what: str) -> None:
    """Before a generator replaces `out` (atomic_dir swaps it out): refuse a file, and a non-empty
    folder that `ours` does not recognise as an earlier output of the same generator."""
    if not out.exists():
        return
    if not out.is_dir():
        raise KdfairError(f"output {out} exists and is not a folder")
    if any(out.iterdir()) and not ours(out):
        raise KdfairError(f"refusing to replace {out}: it is not empty and holds no {what}")


def umask_modes(folder: Path) -> None:
    """Give every file under `folder` the mode of the umask: some writers (safetensors through
    save_pretrained) make private 0600 files, unlike every other output."""
    mode = 0o666 & ~_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def _temp_name(name: str) -> str:
    """NAME as temporaries carry it: a long name (up to NAME_MAX, 255) is shortened with a hash of
    it, so that the temporary's own name stays within the limit too."""
    if len(name.encode()) <= 120:
        return name
    import hashlib

    return name[:80] + "~" + hashlib.sha256(name.encode()).hexdigest()[:12]


def _temp_prefix(path: Path) -> str:
    """`.NAME.HOST-PID.`: a later run can tell a killed writer's leftovers from a live one's."""
    return f".{_temp_name(path.name)}.{socket.gethostname()[:40]}-{os.getpid()}."


def _is_stale(temp: Path, name: str) -> bool:
    owner = temp.name[len(name) + 2:-len(".tmp")].rsplit(".", 1)[0]
    host, _, pid = owner.rpartition("-")
    if host == socket.gethostname()[:40] and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    try:  # another host's (or an older kdfair's) temporary: only when clearly abandoned
        return time.time() - temp.lstat().st_mtime > _STALE_SECONDS
    except OSError:
        return False


def sweep_stale_temps(path: Path) -> None:
    """Remove temporary outputs for `path` left by a killed run (SIGKILL, power loss): those of
    a process on this host that no longer runs, or older than a day."""
    parent = path.parent if str(path.parent) else Path(".")
    name = _temp_name(path.name)
    escaped = "".join(f"[{c}]" if c in "*?[" else c for c in name)
    try:
        leftovers = list(parent.glob(f".{escaped}.*.tmp"))
    except OSError:
        return
    for stale in leftovers:
        if not _is_stale(stale, name):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _raise_if_disk_full(path: Path, exc: BaseException) -> None:
    """Say "disk full" (and where) for a failed write, whatever the library called it."""
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and isinstance(exc, (OSError, RuntimeError)):
        try:
            full = shutil.disk_usage(path.parent).free < (1 << 20)
        except OSError:
            full = False
    if full:
        raise KdfairError(f"no space left on the device writing {path}; free some space and rerun") from exc


def _probe_folder(path: Path) -> None:
    """Create path's folder and a temporary file in it: permission bits alone do not tell
    (root, read-only mounts, /proc)."""
    parent = path.parent if str(path.parent) else Path(".")
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{_temp_name(path.name)}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise KdfairError(f"cannot write output {path}: {exc.strerror or exc}") from exc
    finally:  # a check leaves nothing behind: the writer makes the folders it writes in
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes it 0600; the result gets the umask's mode
            tmp_path.chmod(0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException as exc:
        if not isinstance(exc, KdfairError) and isinstance(exc, Exception):
            try:
                _raise_if_disk_full(path, exc)
            finally:
                tmp_path.unlink(missing_ok=True)
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; swap it in as `path` if the block succeeds."""
    path = Path(path)
    refuse_input_target(path)
    _probe_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes a private (0700) folder; the result gets the usual mode
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{_temp_name(path.name)}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        if not isinstance(exc, KdfairError) and isinstance(exc, Exception):
            try:
                _raise_if_disk_full(path, exc)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes to `path` atomically, or to stdout when path is '-'."""
    if str(path) == "-":
        _refuse_stdout_input()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())
