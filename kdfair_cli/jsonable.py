"""JSON-safe plain values: what every `to_dict()` returns and what `--json` prints."""

from __future__ import annotations

import math
from typing import Any


def jsonable(value: Any) -> Any:
    """Make numpy scalars/arrays and NaN JSON-safe (NaN and inf become None), recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
