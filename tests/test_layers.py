"""The layer rule (docs/design.md), checked with import-linter's contracts in pyproject.toml.

Imports inside functions count: grimp reads every import statement, not only the import-time ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow  # a copy of the package and a lint-imports run per case
@pytest.mark.parametrize("module, line, broken", [
    ("metrics/multiple_testing.py", "from kdfair_cli.sweep.runner import run_sweep",
     "kdfair_cli.metrics.multiple_testing -> kdfair_cli.sweep.runner"),
    ("train/runner.py", "from kdfair_cli.llm.trainee import build_trainee",
     "kdfair_cli.train.runner -> kdfair_cli.llm.trainee"),
    ("classifier/analyses.py", "from kdfair_cli import api", "kdfair_cli.classifier.analyses -> kdfair_cli.api"),
    ("api/group.py", "import torch", "kdfair_cli.api.group -> torch"),
    ("llm/sweep/report.py", "from kdfair_cli.classifier.report import summarise",
     "kdfair_cli.llm.sweep.report -> kdfair_cli.classifier.report"),
])
def test_an_upward_import_breaks_them(tmp_path: Path, module: str, line: str, broken: str) -> None:
    """A lazy (function-level) import that breaks the rule, added to a copy, fails the contracts."""
    shutil.copytree(ROOT / "kdfair_cli", tmp_path / "kdfair_cli",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "kdfair_cli" / module
    target.write_text(target.read_text() + f"\n\ndef _upward() -> None:\n    {line}  # noqa: F401\n")
    res = _lint(tmp_path)
    assert res.returncode != 0
    assert broken in res.stdout, res.stdout
