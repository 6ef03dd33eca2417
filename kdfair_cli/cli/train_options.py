"""Options shared by train-teacher and distill, declared once and added to both signatures."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from kdfair_cli.cli.common import console, print_json

_P = "Training"  # rich help panel

#: (parameter name, annotation, typer.Option)
TRAIN_OPTIONS: list[tuple[str, Any, Any]] = [
    ("dataset", str, typer.Option("trifeature", "--dataset", help="Dataset: trifeature, cifar10, cifar100, svhn, "
                                  "celeba, imagefolder.", rich_help_panel="Data")),
    ("data", Path, typer.Option(..., "--data", help="Dataset folder (e.g. made by `kdfair data trifeature`).",
                                rich_help_panel="Data")),
    ("dataset_option", list[str], typer.Option(None, "--dataset-option", "-O", metavar="KEY=VALUE",
                                               help="Dataset option (repeatable), e.g. image_size=64, "
                                               "label=Smiling, attributes=Young,Male; see docs/vision.md.",
                                               rich_help_panel="Data")),
    ("workers", int, typer.Option(4, "--workers", help="DataLoader worker processes for streaming datasets "
                                  "(imagefolder); 0 decodes in the main process.", rich_help_panel="Data")),
    ("pretrained", Path, typer.Option(None, "--pretrained", help="Start from local weights: image archs a "
                                      "weight file (torch state dict or .safetensors; a classifier head of "
                                      "another shape is dropped); text archs a transformers model directory "
                                      "(never the hub; --arch hf, bert or distilbert).",
                                      rich_help_panel="Model")),
    ("epochs", int, typer.Option(30, "--epochs", help="Training epochs.", rich_help_panel=_P)),
    ("batch_size", int, typer.Option(128, "--batch-size", help="Batch size.", rich_help_panel=_P)),
    ("optimizer", str, typer.Option("sgd", "--optimizer", help="sgd (Nesterov momentum) or adamw.",
                                    rich_help_panel=_P)),
    ("lr", float, typer.Option(0.1, "--lr", help="Peak learning rate.", rich_help_panel=_P)),
    ("momentum", float, typer.Option(0.9, "--momentum", help="SGD momentum.", rich_help_panel=_P)),
    ("weight_decay", float, typer.Option(5e-4, "--weight-decay", help="Weight decay (not on biases/BN).",
                                         rich_help_panel=_P)),
    ("schedule", str, typer.Option("cosine", "--schedule", help="LR schedule: cosine, step (x0.1 at 50%/75%), "
                                   "constant.", rich_help_panel=_P)),
    ("warmup_epochs", int, typer.Option(0, "--warmup-epochs", help="Linear LR warmup epochs.", rich_help_panel=_P)),
    ("label_smoothing", float, typer.Option(0.0, "--label-smoothing", help="Label smoothing of the hard-label "
                                            "cross-entropy.", rich_help_panel=_P)),
    ("grad_clip", float, typer.Option(5.0, "--grad-clip", help="Clip the global gradient norm to this value "
                                      "(0 = off).", rich_help_panel=_P)),
    ("augment", bool, typer.Option(True, "--augment/--no-augment", help="Random crop (pad size/8) and "
                                   "horizontal flip, batch-wise on the device.", rich_help_panel=_P)),
    ("seed", int, typer.Option(0, "--seed", help="Seed of initialisation, order and augmentation.",
                               rich_help_panel=_P)),
    ("select", str, typer.Option("last", "--select", help="Keep the last epoch or the best-validation epoch "
                                 "(never the test split).", rich_help_panel=_P)),
    ("val_fraction", float, typer.Option(0.1, "--val-fraction", help="Holdout of train used for validation "
                                         "when the dataset has no val split.", rich_help_panel=_P)),
    ("tokenizer", Path, typer.Option(None, "--tokenizer", help="Text: a local tokenizer directory (e.g. the "
                                     "teacher's model dir); default: the --pretrained one, else a WordPiece "
                                     "tokenizer trained on the train split.", rich_help_panel="Text")),
    ("max_length", int, typer.Option(128, "--max-length", help="Text: tokens per post (truncate/pad).",
                                     rich_help_panel="Text")),
    ("model_config", str, typer.Option(None, "--model-config", help="Text: config overrides for --arch "
                                       "bert/distilbert, e.g. 'hidden=256,layers=4,heads=4,ffn=1024' "
                                       "(or raw config keys).", rich_help_panel="Text")),
    ("vocab_size", int, typer.Option(8000, "--vocab-size", help="Text: vocabulary of the WordPiece tokenizer "
                                     "trained when neither --tokenizer nor --pretrained is given.",
                                     rich_help_panel="Text")),
    ("device", str, typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.",
                                 rich_help_panel="Run")),
    ("amp", bool, typer.Option(True, "--amp/--no-amp", help="bf16 autocast on CUDA (ignored on CPU).",
                               rich_help_panel="Run")),
    ("channels_last", bool, typer.Option(False, "--channels-last/--no-channels-last", help="NHWC memory "
                                         "format on CUDA (faster convolutions with bf16).", rich_help_panel="Run")),
    ("compile", bool, typer.Option(False, "--compile/--no-compile", help="torch.compile the model.",
                                   rich_help_panel="Run")),
    ("resume", bool, typer.Option(False, "--resume", help="Continue an interrupted run in --out.",
                                  rich_help_panel="Run")),
    ("force", bool, typer.Option(False, "--force", help="Overwrite a finished model in --out.",
                                 rich_help_panel="Run")),
    ("quiet", bool, typer.Option(False, "--quiet", "-q", help="No progress output.", rich_help_panel="Run")),
    ("json_out", bool, typer.Option(False, "--json", help="Print model.json to stdout when done.",
                                    rich_help_panel="Run")),
]

RUN_KEYS = ("resume", "force", "quiet", "json_out")


def with_train_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Append TRAIN_OPTIONS to `func`'s signature; `func` receives them in **options."""
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
             for name, ann, opt in TRAIN_OPTIONS]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        return func(**kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
    return wrapper


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig fields, run flags) from the collected options."""
    from kdfair_cli.data.options import parse_dataset_options

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if k not in RUN_KEYS}
    config["dataset_options"] = parse_dataset_options(config.pop("dataset_option", None))
    return config, {k: options[k] for k in RUN_KEYS}


#: Exit code after SIGTERM/SIGINT: the state is saved and `--resume` continues (SLURM requeue).
EXIT_INTERRUPTED = 143


def run_training(cfg: Any, run: dict[str, Any], teacher_setup: Any = None) -> None:
    """Train, report, and turn an interruption into one line and exit code 143."""
    from kdfair_cli.train.loop import Diverged, Interrupted
    from kdfair_cli.train.runner import train_model

    try:
        meta = train_model(cfg, resume=run["resume"], force=run["force"], verbose=not run["quiet"],
                           teacher_setup=teacher_setup)
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
