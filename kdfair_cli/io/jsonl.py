"""JSON Lines input, read one way: BBQ items, lm-eval samples and text corpora all come as JSONL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdfair_cli.errors import KdfairError


def json_lines(path: str | Path) -> Iterator[tuple[str, Any]]:
    """(where, value) of every non-blank line, where = 'PATH:LINE' for error messages; a line that
    is not JSON, or a file that is not UTF-8, is a KdfairError naming the place."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise KdfairError(f"{where}: not valid JSON ({exc.msg})") from None
                yield where, value
        except UnicodeDecodeError as exc:  # raised per buffered block: no reliable line number
            raise KdfairError(f"{path}: not UTF-8 text ({exc.reason})") from None
