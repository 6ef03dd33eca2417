"""What every subcommand shares: the error guard, stderr console, JSON output."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from kdfair_cli.console import console
from kdfair_cli.errors import KdfairError
from kdfair_cli.failures import explain
from kdfair_cli.io.atomic import guard_inputs
from kdfair_cli.jsonable import jsonable

try:  # recent typer vendors click as typer._click; its exceptions are not click's classes
    from typer._click import exceptions as click_exceptions
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - typer that uses click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]
    from click import get_current_context  # type: ignore[no-redef]

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["console", "error_exit", "guarded", "print_json"]


def error_exit(message: str, code: int = 2) -> None:
    """Print one `kdfair: error:` line to stderr and exit."""
    print(f"kdfair: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _refuse_nonfinite(kwargs: dict[str, Any]) -> None:
    """No kdfair option means anything at NaN or infinity: refuse them for every command."""
    ctx = get_current_context(silent=True)
    for name, value in kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            opts = [p.opts for p in (ctx.command.params if ctx else []) if p.name == name]
            flag = opts[0][0] if opts and opts[0] else f"--{name.replace('_', '-')}"
            raise KdfairError(f"{flag} {value}: expected a finite number")


def guarded(func: F) -> F:
    """Run one command invocation: its inputs protected from its outputs (guard_inputs), every
    failure one line (kdfair_cli.failures): exit 2 for bad input, 1 for a failed run.

    KDFAIR_DEBUG=1 shows the full traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with guard_inputs():
                _refuse_nonfinite(kwargs)
                return func(*args, **kwargs)
        except typer.Exit:
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # say what, not where
            code, message = explain(exc)
            if os.environ.get("KDFAIR_DEBUG"):
                if not isinstance(exc, KdfairError):
                    raise
                traceback.print_exc()
            error_exit(message, code)

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout (machine-readable output)."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()
