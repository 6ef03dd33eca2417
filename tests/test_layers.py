"""The layer rule (docs/design.md), checked with import-linter's contracts in pyproject.toml.

Imports inside functions count: grimp reads every import statement, not only the import-time ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()", "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True)


def test_import_contracts_hold() -> None:
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_an_upward_import_breaks_them(tmp_path: Path) -> None:
    """A lazy import of the sweep from a metric module (a lower layer) fails the contracts."""
    shutil.copytree(ROOT / "kdfair_cli", tmp_path / "kdfair_cli",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "kdfair_cli" / "metrics" / "multiple_testing.py"
    target.write_text(target.read_text() + "\n\ndef _upward() -> None:\n"
                      "    from kdfair_cli.sweep.runner import run_sweep  # noqa: F401\n")
    res = _lint(tmp_path)
    assert res.returncode != 0
    assert "kdfair_cli.metrics.multiple_testing -> kdfair_cli.sweep.runner" in res.stdout
