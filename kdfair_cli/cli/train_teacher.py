"""`kdfair train-teacher`: train a model on hard labels (teacher, or the NDS baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from kdfair_cli.cli.train_options import run_training, split_options, with_train_options
from kdfair_cli.errors import KdfairError
from kdfair_cli.train.config import TrainConfig
from kdfair_cli.train.signals import stop_on_signals


@with_train_options
def command(
    arch: str = typer.Option(..., "--arch", help="Architecture: resnet20/32/44/56/110, lenet5, a torchvision "
                              "model (resnet18, resnet50, densenet121, vit_b_16, ...); text: bert, distilbert, "
                              "hf (with --pretrained); causal-lm (with --pretrained DIR and --dataset corpus)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    role: str = typer.Option("", "--role", help="teacher or nds (default: nds for lenet5 and distilbert, else teacher)."),
    **options: Any,
) -> None:
    """Train a model on hard labels; the NDS baseline is the same command with the student arch.

    Example:

        kdfair train-teacher --data data/trifeature --arch resnet20 --epochs 15 -o runs/teacher-s0
    """
    role = role or ("nds" if arch in ("lenet5", "distilbert") else "teacher")
    if role not in ("teacher", "nds"):
        raise KdfairError(f"--role '{role}': expected teacher or nds")
    with stop_on_signals():  # before torch loads: a SIGTERM during set-up exits 143 too
        config, run = split_options(options)
        cfg = TrainConfig(arch=arch, out=str(out), role=role, **config)
        run_training(cfg, run)
