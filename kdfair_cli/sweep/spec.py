"""Reading a sweep spec: the TOML file, then the parser of its [sweep] kind (kdfair_cli.sweep.kinds).

Every error names the spec file and the key at fault and is a KdfairError (one line, exit 2).
See docs/sweep.md for the format.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input
from kdfair_cli.sweep.kinds import sweep_kind
from kdfair_cli.sweep.spec_common import spec_kind


def load_spec(path: str | Path) -> Any:
    """Read and validate a spec file; KdfairError names the key at fault."""
    source = Path(path)
    if not source.is_file():
        raise KdfairError(f"sweep spec {source} does not exist")
    register_input(source)
    try:
        doc = tomllib.loads(source.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise KdfairError(f"{source}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise KdfairError(f"{source}: not a text file") from None
    return parse_spec(doc, source)


def parse_spec(doc: dict[str, Any], source: Path) -> Any:
    """The spec of its [sweep] kind (classifier when not given)."""
    source = Path(source)
    return sweep_kind(spec_kind(source, doc)).parse(doc, source)
