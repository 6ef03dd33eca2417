"""The `kdfair` command: one typer app, each subcommand in its own thin module.

Modules are imported here but keep heavy imports (torch) inside their functions, so that
`kdfair group-fairness` starts fast on a machine without a GPU.
"""

from __future__ import annotations

import importlib

import typer

from kdfair_cli import __version__
from kdfair_cli.cli.common import guarded

app = typer.Typer(
    name="kdfair",
    help="Measure what knowledge distillation does to class-wise bias, group fairness and "
    "individual fairness. Stages exchange Parquet files; see `kdfair COMMAND --help`.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

#: (command name, module). A module exposes `command` (a function) or `app` (a typer group).
COMMANDS: list[tuple[str, str]] = [
    ("data", "kdfair_cli.cli.data_cmd"),
    ("train-teacher", "kdfair_cli.cli.train_teacher"),
    ("distill", "kdfair_cli.cli.distill"),
    ("predict", "kdfair_cli.cli.predict"),
    ("compare-classes", "kdfair_cli.cli.compare_classes"),
    ("group-fairness", "kdfair_cli.cli.group_fairness"),
    ("pairs", "kdfair_cli.cli.pairs"),
    ("individual-fairness", "kdfair_cli.cli.individual_fairness"),
    ("bias-score", "kdfair_cli.cli.bias_score"),
    ("import", "kdfair_cli.cli.import_cmd"),
    ("sweep", "kdfair_cli.cli.sweep"),
    ("report", "kdfair_cli.cli.report"),
    ("demo", "kdfair_cli.cli.demo"),
]


def _version(value: bool) -> None:
    if value:
        print(f"kdfair {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """kdfair: what's left after distillation."""


def _register() -> None:
    for name, module_name in COMMANDS:
        module = importlib.import_module(module_name)
        if hasattr(module, "app"):
            app.add_typer(module.app, name=name)
        else:
            app.command(name, help=module.command.__doc__)(guarded(module.command))


_register()


def main() -> None:
    app(prog_name="kdfair")
