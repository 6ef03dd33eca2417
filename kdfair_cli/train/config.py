"""Training settings shared by train-teacher and distill, validated before any work starts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdfair_cli.errors import require

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
SELECTIONS = ("last", "best")


@dataclass
class TrainConfig:
    """Everything that determines a training run (device and resume excepted)."""

    dataset: str
    data: str
    arch: str
    out: str
    role: str = "teacher"  # teacher | nds | ds
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    grad_clip: float = 5.0  # max global gradient norm; 0 = off
    augment: bool = True
    seed: int = 0
    select: str = "last"
    val_fraction: float = 0.1
    amp: bool = True
    device: str = "auto"
    # Distillation (role "ds" only).
    temperature: float | None = None
    alpha: float | None = None
    kd_scale_t2: bool = True
    teacher: str | None = None
    teacher_logits: str | None = None
    # Local weights: a torchvision weight file (image archs, docs/vision.md) or a transformers
    # model folder (text archs, docs/text.md).
    pretrained: str | None = None
    # Text models (arch bert / distilbert / hf; see kdfair_cli.models.text).
    tokenizer: str | None = None
    max_length: int = 128
    model_config: str | None = None
    vocab_size: int = 8000
    # Real datasets, torchvision models, GPU speed-ups (docs/vision.md).
    dataset_options: dict[str, Any] = field(default_factory=dict)  # --dataset-option KEY=VALUE
    compile: bool = False  # torch.compile the model
    channels_last: bool = False  # NHWC memory format on CUDA
    workers: int = 4  # DataLoader workers of streaming datasets (imagefolder)

    def validate(self) -> None:
        require(self.epochs > 0, f"--epochs must be positive, got {self.epochs}")
        require(self.seed >= 0, f"--seed must be >= 0, got {self.seed}")
        require(self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}")
        require(self.lr > 0 and math.isfinite(self.lr), f"--lr must be positive, got {self.lr}")
        require(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        require(0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}")
        require(self.grad_clip >= 0 and math.isfinite(self.grad_clip),
                f"--grad-clip must be >= 0 (0 = off), got {self.grad_clip}")
        require(0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        require(0 <= self.warmup_epochs < self.epochs or self.warmup_epochs == 0,
                f"--warmup-epochs must be smaller than --epochs, got {self.warmup_epochs}")
        require(0 < self.val_fraction < 1, f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        require(self.optimizer in OPTIMIZERS, f"--optimizer '{self.optimizer}': expected {'|'.join(OPTIMIZERS)}")
        require(self.schedule in SCHEDULES, f"--schedule '{self.schedule}': expected {'|'.join(SCHEDULES)}")
        require(self.workers >= 0, f"--workers must be >= 0, got {self.workers}")
        require(self.pretrained is None or Path(self.pretrained).exists(),
                f"--pretrained {self.pretrained}: no such file or folder")
        require(self.select in SELECTIONS, f"--select '{self.select}': expected {'|'.join(SELECTIONS)}")
        if self.role == "ds":
            t, a = self.temperature, self.alpha
            require(t is not None and math.isfinite(t) and t > 0, f"--temperature must be positive, got {t}")
            require(a is not None and 0 <= a <= 1, f"--alpha must be in [0, 1], got {a}")
            require((self.teacher is None) != (self.teacher_logits is None),
                    "give exactly one of --teacher DIR and --teacher-logits FILE")
        require(self.max_length >= 8, f"--max-length must be at least 8, got {self.max_length}")
        out = Path(self.out)
        require(not out.exists() or out.is_dir(), f"output {out} exists and is not a directory")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_hash(self) -> str:
        """Identity of the run for --resume: everything but where it runs."""
        blob = {k: v for k, v in self.to_json().items() if k not in ("device", "out", "workers")}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at a global step: linear warmup, then cosine / step (x0.1 at 50%, 75%) / constant.

    A pure function of the step, so a resumed run needs no scheduler state.
    """
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.lr * (0.1 ** (int(progress >= 0.5) + int(progress >= 0.75)))
    return cfg.lr
