"""`--dataset-option KEY=VALUE` (repeatable) -> keyword options for `open_dataset`.

Values are typed by their look: true/false/yes/no -> bool, integers -> int, decimals -> float,
anything else stays a string (a comma-separated list stays a string too; readers split it).
Keys may use dashes or underscores (`image-size` == `image_size`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from kdfair_cli.errors import KdfairError

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if _INT.fullmatch(text.strip()):
        return int(text)
    if _FLOAT.fullmatch(text.strip()):
        return float(text)
    return text


def parse_dataset_options(items: Iterable[str] | None) -> dict[str, Any]:
    """Parse KEY=VALUE strings; KdfairError for an item without '=' or a repeated key."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise KdfairError(f"--dataset-option '{item}': expected KEY=VALUE, e.g. image_size=64")
        if key in out:
            raise KdfairError(f"--dataset-option '{key}' is given twice")
        out[key] = parse_value(value)
    return out


def check_options(dataset: str, options: dict[str, Any], allowed: dict[str, type | tuple[type, ...]]) -> None:
    """Refuse unknown option names and values of the wrong type, naming what is accepted."""
    for key, value in options.items():
        if key not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise KdfairError(f"dataset {dataset} has no option '{key}'; it accepts: {names}")
        want = allowed[key]
        types = want if isinstance(want, tuple) else (want,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            names = "/".join(t.__name__ for t in types)
            raise KdfairError(f"dataset {dataset} option '{key}'={value!r}: expected {names}")
