"""The `kdfair` command: one typer app, each subcommand in its own thin module.

Modules are imported here but keep heavy imports (torch) inside their functions, so that
`kdfair group-fairness` starts fast on a machine without a GPU.
"""

from __future__ import annotations

import importlib
import sys

import typer

from kdfair_cli import __version__
from kdfair_cli.cli.common import click_exceptions, guarded
from kdfair_cli.errors import first_line

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
    ("generate", "kdfair_cli.cli.generate"),
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


def _usage_message(exc: Exception, args: list[str]) -> str:
    """click's message, with the value the user gave when an option's value was bad."""
    message = first_line(exc.format_message())  # type: ignore[attr-defined]
    param = getattr(exc, "param", None)
    opts = list(getattr(param, "opts", None) or [])
    if not isinstance(exc, click_exceptions.BadParameter) or not opts:
        return message
    for i, token in enumerate(args):
        name, eq, value = token.partition("=")
        if name in opts and (eq or i + 1 < len(args)):
            value = value if eq else args[i + 1]
            return f"{opts[-1] if opts[-1].startswith('--') else opts[0]} {value!r}: {message.split(': ', 1)[-1]}"
    return message


def main(argv: list[str] | None = None) -> None:
    """The `kdfair` console script: a usage error is one `kdfair: error:` line (exit 2), with the
    --help hint on the same line, instead of click's boxed message."""
    try:
        code = app(args=argv, prog_name="kdfair", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:  # bare `kdfair` / `kdfair sweep`: the help
        exc.show()
        sys.exit(2)
    except click_exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        print(f"kdfair: error: {_usage_message(exc, sys.argv[1:] if argv is None else argv)}{hint}",
              file=sys.stderr)
        sys.exit(2)
    except click_exceptions.ClickException as exc:
        print(f"kdfair: error: {first_line(exc.format_message())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click_exceptions.Abort:
        print("kdfair: error: aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
