"""Options shared by train-teacher and distill, declared once and added to both signatures."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from kdfair_cli.cli.common import console, print_json
from kdfair_cli.data.options import parse_dataset_options
from kdfair_cli.train.config import PANELS, setting_types, settings

_RUN = "Run"

#: Flags of a training command that are not settings of the run itself.
RUN_OPTIONS: list[tuple[str, Any, Any]] = [
    ("resume", bool, typer.Option(False, "--resume", help="Continue an interrupted run in --out.",
                                  rich_help_panel=_RUN)),
    ("force", bool, typer.Option(False, "--force", help="Overwrite a finished model in --out.",
                                 rich_help_panel=_RUN)),
    ("quiet", bool, typer.Option(False, "--quiet", "-q", help="No progress output.", rich_help_panel=_RUN)),
    ("json_out", bool, typer.Option(False, "--json", help="Print model.json to stdout when done.",
                                    rich_help_panel=_RUN)),
]


def _option(f: dataclasses.Field, annotation: Any) -> tuple[str, Any, Any]:
    """(parameter name, annotation, typer.Option) of a TrainConfig field, from its metadata."""
    m = f.metadata
    name = m["param"] or f.name
    flag = "--" + name.replace("_", "-")
    default = m["cli_default"]
    if default is dataclasses.MISSING:
        default = ... if f.default is dataclasses.MISSING else f.default
    cli_type = m["cli_type"] or annotation
    decls = [f"{flag}/--no-{flag[2:]}"] if cli_type is bool else [flag]
    if m["short"]:
        decls.append(m["short"])
    return name, cli_type, typer.Option(default, *decls, help=m["help"], metavar=m["metavar"],
                                        rich_help_panel=m["panel"])


def _train_options(roles: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """The generated options of the settings that apply to `roles`, grouped by help panel
    (PANELS order), then in field order."""
    types = setting_types()
    fields = [f for f in settings() if f.metadata["panel"] and set(f.metadata["roles"]) & set(roles)]
    fields.sort(key=lambda f: PANELS.index(f.metadata["panel"]))
    options = []
    for f in fields:
        annotation = types[f.name]
        if f.default is None:  # `str | None` fields: the option's own type
            annotation = typing.get_args(annotation)[0]
        options.append(_option(f, annotation))
    return options


#: (parameter name, annotation, typer.Option): the TrainConfig settings, then the run flags, of
#: train-teacher (roles teacher and nds) and of distill (role ds: the distillation settings too).
TRAIN_OPTIONS: list[tuple[str, Any, Any]] = _train_options(("teacher", "nds")) + RUN_OPTIONS
DISTILL_OPTIONS: list[tuple[str, Any, Any]] = _train_options(("ds",)) + RUN_OPTIONS

RUN_KEYS = ("resume", "force", "quiet", "json_out")


def with_train_options(func: Callable[..., Any], options: list[tuple[str, Any, Any]] | None = None
                       ) -> Callable[..., Any]:
    """Append `options` (default TRAIN_OPTIONS) to `func`'s signature; `func` receives them in **options."""
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
             for name, ann, opt in (TRAIN_OPTIONS if options is None else options)]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        return func(**kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
    return wrapper


def with_distill_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Append DISTILL_OPTIONS (the training settings and the distillation ones) to `func`'s signature."""
    return with_train_options(func, DISTILL_OPTIONS)


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig fields, run flags) from the collected options."""
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if k not in RUN_KEYS}
    config["dataset_options"] = parse_dataset_options(config.pop("dataset_option", None))
    return config, {k: options[k] for k in RUN_KEYS}


#: Exit code after SIGTERM/SIGINT: the state is saved and `--resume` continues (SLURM requeue).
EXIT_INTERRUPTED = 143


def run_training(cfg: Any, run: dict[str, Any]) -> None:
    """Train, report, and turn an interruption into one line and exit code 143."""
    from kdfair_cli.train.loop import Diverged, Interrupted
    from kdfair_cli.train.runner import train_model

    try:
        meta = train_model(cfg, resume=run["resume"], force=run["force"], verbose=not run["quiet"])
    except Interrupted as exc:
        console.print(f"kdfair: {exc}; state saved in {cfg.out}; rerun with --resume to continue", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Diverged as exc:
        console.print(f"kdfair: error: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    if meta is not None:  # None on the non-zero ranks of a torchrun job
        report_model(meta, Path(cfg.out), run["json_out"])


def report_model(meta: dict, out: Path, json_out: bool) -> None:
    fm = meta["final_metrics"]
    console.print(f"[bold]{meta['role']}[/] {meta['arch']} -> {out}  val_acc {fm['val_acc']:.4f}  "
                  f"({meta['train_seconds']:.0f}s, {meta['train_samples_per_second']:.0f} samples/s)")
    if json_out:
        print_json(meta)
