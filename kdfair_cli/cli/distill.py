"""`kdfair distill`: train a student from a teacher at temperature T (the paper's KD loss)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from kdfair_cli.cli.train_options import run_training, split_options, with_distill_options
from kdfair_cli.train.config import TrainConfig
from kdfair_cli.train.signals import stop_on_signals


@with_distill_options
def command(
    arch: str = typer.Option(..., "--arch", help="Student architecture, e.g. lenet5, distilbert for text, or causal-lm "
                      "(with --pretrained DIR and --dataset corpus)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    **options: Any,
) -> None:
    """Distil a student from a teacher model or from cached teacher logits.

    Examples:

        kdfair distill --teacher runs/teacher-s0 --data data/trifeature --arch lenet5 -T 4 -o runs/ds-T4-s0

        kdfair predict runs/teacher-s0 --split train -o cache/teacher-s0-train.parquet

        kdfair distill --teacher-logits cache/teacher-s0-train.parquet --data data/trifeature --arch lenet5 -T 4 -o runs/ds-T4-s0

        kdfair distill --teacher /models/teacher --arch causal-lm --pretrained /models/student --dataset corpus --data corpus.jsonl -T 2 -o runs/ds-T2
    """
    with stop_on_signals():  # a SIGTERM during set-up exits 143 too
        config, run = split_options(options)
        cfg = TrainConfig(arch=arch, out=str(out), role="ds", **config)
        run_training(cfg, run)
