"""The one stderr console that every layer (CLI, training progress, sweep) prints to.

Progress, tables and messages go to stderr so that stdout stays clean for piped data. It lives
at the top of the package, with no kdfair imports, so that library modules can print without
importing the CLI.
"""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)
