"""SIGTERM/SIGINT as a flag that training checks between batches (torch-free, so the training
commands install it before their slow set-up: importing torch, loading data and teachers).

Nested uses share one flag: a signal that arrives during set-up stops the loop at its first
batch with the usual exit code 143, instead of killing the process silently.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

_flag = {"stop": False}
_depth = 0


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict]:
    """Turn SIGTERM/SIGINT into `flag["stop"] = True` while the block runs."""
    global _depth
    previous = {}
    if _depth == 0:
        _flag["stop"] = False

        def handler(signum, frame):  # noqa: ARG001
            _flag["stop"] = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
    _depth += 1
    try:
        yield _flag
    finally:
        _depth -= 1
        for sig, old in previous.items():
            signal.signal(sig, old)
