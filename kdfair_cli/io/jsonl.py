"""JSON Lines input, read one way: BBQ items, lm-eval samples and text corpora all come as JSONL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input


#: The longest line read (characters): BBQ items and lm-eval samples are a few kB, a corpus line
#: is cut to --max-length tokens anyway; a longer line is refused before it is tokenised.
MAX_LINE_CHARS = 1 << 20


def json_lines(path: str | Path) -> Iterator[tuple[str, Any]]:
    """(where, value) of every non-blank line, where = 'PATH:LINE' for error messages; a line that
    is not JSON, nested too deeply, longer than MAX_LINE_CHARS, or a file that is not UTF-8, is a
    KdfairError naming the place. The file is registered as an input of the running command."""
    path = Path(path)
    register_input(path)
    with open(path, encoding="utf-8") as fh:
        try:
            lineno = 0
            while line := fh.readline(MAX_LINE_CHARS + 1):
                lineno += 1
                where = f"{path}:{lineno}"
                if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                    raise KdfairError(f"{where}: line longer than {MAX_LINE_CHARS} characters (the limit "
                                      "of a JSONL line; see docs/llm.md)")
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise KdfairError(f"{where}: not valid JSON ({exc.msg})") from None
                except RecursionError:
                    raise KdfairError(f"{where}: JSON nested too deeply") from None
                yield where, value
        except UnicodeDecodeError as exc:  # raised per buffered block: no reliable line number
            raise KdfairError(f"{path}: not UTF-8 text ({exc.reason})") from None
