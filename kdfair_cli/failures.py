"""What a failure means to the user: one line in kdfair's words, and the exit code.

The CLI's guard turns every exception into one `kdfair: error:` line. KdfairError is bad input
(exit 2). Operating-system and library errors that a user causes and can fix (a full disk, a
path too long, a file where a folder belongs, pickled code in a weights file, a damaged Parquet
file, an input too large for memory) are bad input too, said without the library's words.
Anything else is a failed run (exit 1). KDFAIR_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import errno
import pickle
import sys

from kdfair_cli.errors import KdfairError, RunFailed, first_line

BAD_INPUT = 2
RUN_FAILED = 1


def _name(exc: OSError) -> str:
    name = str(exc.filename) if exc.filename is not None else ""
    return name if len(name) <= 120 else name[:60] + "..." + name[-40:]


def _os_error(exc: OSError) -> str | None:
    name = _name(exc)
    at = f" ({name})" if name else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device{at}; free some space and rerun"
    if exc.errno == errno.ENAMETOOLONG:
        return f"file name too long for the file system: {name or 'a path'}"
    if isinstance(exc, NotADirectoryError):
        return f"{name or 'a path'}: a file stands where a folder is expected"
    if isinstance(exc, FileExistsError):
        return f"{name or 'a path'} exists and is not a folder; choose another output"
    if isinstance(exc, IsADirectoryError):
        return f"{name or 'a path'} is a folder; expected a file"
    if isinstance(exc, PermissionError):
        return f"permission denied: {name or first_line(exc)}"
    if isinstance(exc, FileNotFoundError):
        return f"{name or 'a path'}: no such file or folder"
    if exc.errno == errno.EROFS:
        return f"read-only file system{at}"
    return None


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an exception that ended a command."""
    if isinstance(exc, KdfairError):
        return BAD_INPUT, first_line(exc, limit=800)
    if isinstance(exc, RunFailed):
        return RUN_FAILED, first_line(exc, limit=800)
    if isinstance(exc, OSError) and (msg := _os_error(exc)) is not None:
        return BAD_INPUT, msg
    if isinstance(exc, MemoryError):
        return BAD_INPUT, ("out of memory: an input or option asks for more memory than this machine "
                           "has (KDFAIR_DEBUG=1 shows where)")
    if isinstance(exc, pickle.UnpicklingError):
        return BAD_INPUT, ("a weights file holds pickled Python objects, not plain tensors; kdfair "
                           "loads tensors only (KDFAIR_DEBUG=1 for the detail)")
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(exc, pa.ArrowException):
        return BAD_INPUT, f"a Parquet/Arrow input is damaged or malformed ({first_line(exc, 120)})"
    return RUN_FAILED, (f"run failed: {type(exc).__name__}: {first_line(exc)} "
                        "(KDFAIR_DEBUG=1 for a traceback)")
