"""Helpers the readers of real datasets share: required files and a cheap fingerprint.

A fingerprint identifies the data on disk without reading every image: sha256 over the sorted
(relative name, size) of the data files plus the full bytes of the small metadata files
(label lists, attribute tables). It changes when a file is added, removed, resized or when a
metadata file is edited; it does not read the pixel bytes of large files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kdfair_cli.data.base import DatasetInfo, Split
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file, else KdfairError naming it and what it should be."""
    if not path.is_file():
        raise KdfairError(f"{what}: file {path} is missing")
    register_input(path)
    return path


def fingerprint(root: Path, files: Iterable[Path], small: Iterable[Path] = (), options: dict[str, Any] | None = None,
                sizes: Iterable[tuple[str, int]] | None = None) -> str:
    """sha256 of (name, size) of `files` (or the given `sizes`), the bytes of `small`, and `options`."""
    digest = hashlib.sha256()
    entries = sorted(sizes) if sizes is not None else sorted(
        (str(p.relative_to(root)), p.stat().st_size) for p in files)
    for name, size in entries:
        digest.update(f"{name}\0{size}\n".encode())
    for path in sorted(small):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
    digest.update(json.dumps(options or {}, sort_keys=True).encode())
    return digest.hexdigest()


class InMemoryDataset:
    """A dataset whose splits are loaded on first use by `loader(name)` and then kept."""

    def __init__(self, info: DatasetInfo, loader: Callable[[str], Split]) -> None:
        self.info = info
        self._loader = loader
        self._cache: dict[str, Split] = {}

    def split(self, name: str) -> Split:
        if name not in self.info.splits:
            raise KdfairError(f"dataset {self.info.name} has no split '{name}'; it has: {', '.join(self.info.splits)}")
        if name not in self._cache:
            self._cache[name] = self._loader(name)
        return self._cache[name]
