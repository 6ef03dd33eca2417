"""What every subcommand shares: the error guard, stderr console, JSON output."""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from kdfair_cli.console import console
from kdfair_cli.errors import KdfairError
from kdfair_cli.jsonable import jsonable

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["console", "error_exit", "guarded", "print_json"]


def error_exit(message: str, code: int = 2) -> None:
    """Print one `kdfair: error:` line to stderr and exit."""
    print(f"kdfair: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def guarded(func: F) -> F:
    """Turn KdfairError into one line and exit 2, other failures into one line and exit 1.

    KDFAIR_DEBUG=1 re-raises so the full traceback shows.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KdfairError as exc:
            if os.environ.get("KDFAIR_DEBUG"):
                traceback.print_exc()
            error_exit(str(exc), 2)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a failed run: say what, not where
            if os.environ.get("KDFAIR_DEBUG"):
                raise
            error_exit(f"run failed: {type(exc).__name__}: {exc} (KDFAIR_DEBUG=1 for a traceback)", 1)

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout (machine-readable output)."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def not_implemented(name: str) -> None:
    error_exit(f"'{name}' is not implemented yet", 2)
