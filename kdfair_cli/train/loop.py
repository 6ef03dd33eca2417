"""The training loop shared by train-teacher and distill.

One loop, an `objective` deciding the loss: cross-entropy on hard labels (teacher, NDS) or the
KD loss (distilled student). Each epoch's sample order, augmentation and global RNG (dropout)
are pure functions of (seed, epoch), and state is saved atomically after every epoch, so `--resume` after a kill
ends with the same weights as an uninterrupted run. SIGTERM (what SLURM sends before
preemption) stops at the next batch boundary; the last finished epoch is already on disk.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import atomic_path
from kdfair_cli.data.batches import Batches, augment_generator, epoch_order, epoch_seed
from kdfair_cli.train.config import TrainConfig, lr_at
from kdfair_cli.train.distributed import (
    DistEnv, all_sum, any_rank, full_model_state, full_optimizer_state, gather_objects, is_sharded,
    load_full_state, shard,
)
from kdfair_cli.train.progress import EpochReporter
from kdfair_cli.train.signals import stop_on_signals

@dataclass
class StepLoss:
    """One batch's loss and what the epoch's accuracy counts: `correct` of `count` predictions
    (samples for a classifier, learned tokens for a causal LM)."""

    loss: torch.Tensor
    correct: torch.Tensor
    count: int


#: objective(model output, labels, sample_index, inputs) -> StepLoss
Objective = Callable[[Any, torch.Tensor, torch.Tensor, Any], StepLoss]
#: evaluator(model) -> (validation loss, validation accuracy)
Evaluator = Callable[[nn.Module], tuple[float, float]]


def classification(loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                   ) -> Objective:
    """A per-sample objective over logits [B, C]: accuracy counts argmax == label."""

    def objective(logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor, x: torch.Tensor) -> StepLoss:
        return StepLoss(loss_fn(logits, y, index, x), (logits.detach().argmax(1) == y).sum(), len(index))

    return objective


class Diverged(Exception):
    """The loss became NaN or infinite: a failed run (exit 1), with advice in the message."""


class Interrupted(Exception):
    """Training stopped by SIGTERM/SIGINT; the state of `epoch` finished epochs is saved."""

    def __init__(self, epochs_done: int) -> None:
        super().__init__(f"interrupted after {epochs_done} finished epoch(s)")
        self.epochs_done = epochs_done


@dataclass
class LoopData:
    train: Batches
    train_labels: torch.Tensor
    val: Batches | None = None
    val_labels: torch.Tensor | None = None


@dataclass
class FitResult:
    state_dict: dict
    history: list[dict]
    selected_epoch: int
    seconds: float
    samples_per_second: float
    extra: dict = field(default_factory=dict)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; a no-op elsewhere (CPU results stay exact)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW over the trainable parameters (frozen ones, e.g. the base
    weights under LoRA, get no optimizer state); no weight decay on biases and BatchNorm parameters."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim > 1]
    no_decay = [p for p in trainable if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, labels: torch.Tensor, batch_size: int,
             amp: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) without augmentation."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for index, x in batches.sequential(max(batch_size, 256)):
        with autocast(x.device, amp):
            logits = model(x).float()
        y = labels[index]
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    n = len(batches)
    return loss_sum / n, correct / n


#: What each input identity in the resume state is, for the refusal message.
INPUT_NAMES = {"dataset": "dataset (fingerprint)", "teacher_logits": "teacher-logit cache (sha256)",
               "teacher": "teacher weights (sha256)"}


def input_identity(dataset_fingerprint: str, teacher: dict | None) -> dict[str, str]:
    """The inputs a resumed run must find unchanged: the dataset, and the teacher's logit cache or
    weights (from the provenance distill records in model.json)."""
    ident = {"dataset": dataset_fingerprint}
    teacher = teacher or {}
    if teacher.get("cache_sha256"):
        ident["teacher_logits"] = teacher["cache_sha256"]
    if teacher.get("weights_sha256"):
        ident["teacher"] = teacher["weights_sha256"]
    return ident


def _save_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                history: list[dict], best: dict | None, run_hash: str, inputs: dict[str, str],
                dist: DistEnv | None = None, mid_epoch: dict | None = None) -> None:
    """Write the training state (rank 0). Under FSDP every rank takes part in gathering the full
    weights and optimizer state; `mid_epoch` holds each rank's position within epoch `epoch`."""
    dist = dist or DistEnv()
    model_sd, optim_sd = full_model_state(model, dist), full_optimizer_state(model, optimizer, dist)
    if not dist.main:
        return
    state = {"model": model_sd, "optimizer": optim_sd, "epochs_done": epoch,
             "history": history, "best": best, "run_hash": run_hash, "inputs": inputs}
    if mid_epoch is not None:
        state["mid_epoch"] = mid_epoch
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _rng_state(device: torch.device, gen: torch.Generator) -> dict:
    """This process's random state within an epoch: the global RNG (dropout) and augmentation."""
    state = {"cpu": torch.get_rng_state(), "augment": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device, gen: torch.Generator) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    gen.set_state(state["augment"].cpu())
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _load_state(path: Path, run_hash: str, device: torch.device, inputs: dict[str, str]) -> dict:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise KdfairError(f"cannot resume from {path}: not a readable training state "
                          f"({type(exc).__name__}); drop --resume and use --force to start over") from exc
    if not isinstance(state, dict) or state.get("run_hash") != run_hash:
        raise KdfairError(f"cannot resume from {path}: it was written with other settings "
                          "(use the same options, or drop --resume and use --force)")
    recorded = state.get("inputs") or {}  # states of kdfair before 0.1.1 record no inputs
    for key, value in inputs.items():
        if key in recorded and recorded[key] != value:
            raise KdfairError(f"cannot resume from {path}: the {INPUT_NAMES.get(key, key)} changed since "
                              f"the interrupted run ({recorded[key][:12]} -> {value[:12]}); resuming would "
                              "mix old and new inputs (drop --resume and use --force to start over)")
    return state


def fit(model: nn.Module, data: LoopData, cfg: TrainConfig, objective: Objective, device: torch.device,
        state_path: Path, resume: bool = False, name: str = "train", verbose: bool = True,
        dist: DistEnv | None = None, inputs: dict[str, str] | None = None,
        evaluator: Evaluator | None = None) -> FitResult:
    """Train `model` for cfg.epochs; returns the selected weights and the per-epoch history.

    Under DDP (`dist` active, `model` wrapped in DistributedDataParallel) each rank trains on
    its shard of every epoch's order with a local batch of batch_size / world; only rank 0
    validates and saves the training state. Under FSDP (`model` sharded with fully_shard) every
    rank validates and takes part in gathering the full state; rank 0 writes it. `inputs`
    (input_identity) is recorded in the state; --resume refuses a state whose inputs differ.
    `evaluator` validates (default: classification loss and accuracy on data.val).

    An optimizer step takes cfg.grad_accum micro-batches of batch_size (consecutive in the
    epoch's order, so the step sees the samples of one batch of grad_accum x batch_size). With
    grad_accum > 1 or under FSDP the step's gradient is weighted by count: each micro-batch's
    mean loss is multiplied by its count (samples, or learned tokens for a causal LM), and the
    summed gradient is divided by the step's total count over all ranks, so the step equals one
    big batch's mean over its samples or tokens (exact up to float rounding). With grad_accum 1
    under DDP (or one process) the step is the batch's own mean loss, as before.
    """
    inputs = inputs or {}
    dist = dist or DistEnv()
    torch.manual_seed(cfg.seed)
    sharded = is_sharded(model)
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    n = len(data.train)
    n_seen = -(-n // dist.world) * dist.world  # samples per epoch over all ranks (padded)
    accum = cfg.grad_accum
    steps = (n_seen + cfg.batch_size * accum - 1) // (cfg.batch_size * accum)  # optimizer steps
    local_batch = cfg.batch_size // dist.world
    weighted = accum > 1 or sharded
    channels_last = cfg.channels_last and device.type == "cuda"
    optimizer = make_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    run_hash = cfg.run_hash()
    history: list[dict] = []
    best: dict | None = None
    start_epoch = 0
    mid: dict | None = None
    if resume and state_path.exists():
        state = _load_state(state_path, run_hash, device, inputs)
        load_full_state(inner, optimizer, state["model"], state["optimizer"], dist)
        history, best, start_epoch = list(state["history"]), state["best"], int(state["epochs_done"])
        mid = state.get("mid_epoch")
        if mid is not None and mid["world"] != dist.world:
            raise KdfairError(f"cannot resume from {state_path}: it stopped mid-epoch with {mid['world']} "
                              f"process(es), not {dist.world}; resume with as many")
    model.to(device).train()
    t_start = time.perf_counter()
    trained = 0
    with stop_on_signals() as flag, EpochReporter(name, cfg.epochs, steps, verbose) as report:
        for epoch in range(start_epoch, cfg.epochs):
            report.start_epoch(epoch)
            torch.manual_seed(epoch_seed(cfg.seed, epoch))  # dropout masks: resumable like the order
            t0 = time.perf_counter()
            order = shard(epoch_order(n, cfg.seed, epoch, device), dist)
            gen = augment_generator(cfg.seed, epoch, device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            counted = torch.zeros((), device=device, dtype=torch.long)
            first = 0
            if mid is not None:  # continue where the step checkpoint left this epoch
                mine = mid["ranks"][dist.rank]
                first = int(mid["steps_done"])
                loss_sum, correct, counted = (mine[k].to(device) for k in ("loss_sum", "correct", "counted"))
                _set_rng_state(mine["rng"], device, gen)
                mid = None
            micro = iter(data.train.epoch(order[first * local_batch * accum:], local_batch, cfg.augment, gen))
            for step in range(first, steps):
                if any_rank(flag["stop"], dist, device):
                    raise Interrupted(epoch)
                lr = lr_at(cfg, epoch * steps + step, steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                step_count = torch.zeros((), device=device, dtype=torch.long)
                for index, x in itertools.islice(micro, accum):
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    y = data.train_labels[index]
                    with autocast(device, cfg.amp):
                        step_loss = objective(model(x), y, index, x)
                    loss = step_loss.loss
                    (loss * step_loss.count if weighted else loss).backward()
                    loss_sum += loss.detach() * step_loss.count
                    correct += step_loss.correct
                    counted += step_loss.count
                    step_count += step_loss.count
                if weighted:  # sum of count x gradient -> the step's mean over all its samples / tokens
                    scale = (dist.world if dist.active else 1) / max(1, int(all_sum(step_count, dist)))
                    for p in params:
                        if p.grad is not None:
                            p.grad.mul_(scale)
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                if report.live:
                    report.batch(float(loss), float(correct) / max(1, int(counted)))
                done = epoch * steps + step + 1
                if cfg.save_every and done % cfg.save_every == 0 and step + 1 < steps:
                    ranks = gather_objects({"loss_sum": loss_sum.cpu(), "correct": correct.cpu(),
                                            "counted": counted.cpu(), "rng": _rng_state(device, gen)}, dist)
                    _save_state(state_path, inner, optimizer, epoch, history, best, run_hash, inputs, dist,
                                mid_epoch={"steps_done": step + 1, "world": dist.world, "ranks": ranks})
            trained += n
            loss_sum, correct = all_sum(loss_sum, dist), all_sum(correct, dist)
            counted = max(1, int(all_sum(counted, dist)))
            if not torch.isfinite(loss_sum):
                raise Diverged(f"training diverged in epoch {epoch + 1}: the loss is not finite; "
                               "lower --lr or set --grad-clip (e.g. 5)")
            record = {"epoch": epoch, "train_loss": float(loss_sum) / counted, "train_acc": float(correct) / counted,
                      "lr": lr, "seconds": time.perf_counter() - t0, "val_loss": None, "val_acc": None}
            validates = dist.main or sharded  # a sharded model's forward needs every rank
            if evaluator is not None and validates:
                record["val_loss"], record["val_acc"] = evaluator(inner)
            elif data.val is not None and validates:
                record["val_loss"], record["val_acc"] = evaluate(inner, data.val, data.val_labels,
                                                                 cfg.batch_size, cfg.amp)
            history.append(record)
            if cfg.select == "best" and (best is None or (record["val_acc"] or 0) > best["val_acc"]):
                best = {"epoch": epoch, "val_acc": record["val_acc"] or 0,
                        "model": copy.deepcopy(full_model_state(inner, dist))}
            if dist.main or sharded:
                _save_state(state_path, inner, optimizer, epoch + 1, history, best, run_hash, inputs, dist)
            report.end_epoch(record)
    seconds = time.perf_counter() - t_start
    if cfg.select == "best" and best is not None:
        state_dict, selected = best["model"], int(best["epoch"])
    else:
        state_dict, selected = full_model_state(inner, dist), cfg.epochs - 1
    return FitResult(state_dict, history, selected, seconds, trained / seconds if seconds > 0 else 0.0)
