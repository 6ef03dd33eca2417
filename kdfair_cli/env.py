"""Integer settings read from the environment (torchrun's ranks, SLURM's array index)."""

from __future__ import annotations

import os
from typing import overload

from kdfair_cli.errors import KdfairError


@overload
def env_int(name: str, default: int) -> int: ...
@overload
def env_int(name: str, default: None = None) -> int | None: ...


def env_int(name: str, default: int | None = None) -> int | None:
    """The variable as an int; `default` when unset or empty; one-line KdfairError when not an int."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise KdfairError(f"environment variable {name}={value!r} is not an integer") from None
