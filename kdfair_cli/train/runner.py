"""From a TrainConfig to a finished model directory: data, model, objective, fit, save.

train-teacher (roles teacher and nds) and distill (role ds) both end up here; they differ only
in the objective handed to the shared loop.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kdfair_cli import __version__
from kdfair_cli.data.base import DatasetInfo, Split
from kdfair_cli.data.registry import open_dataset
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import check_writable, refuse_input_target
from kdfair_cli.io.modeldir import META, STATE, save_model_dir
from kdfair_cli.models.families import arch_family, check_family_fits
from kdfair_cli.models.registry import arch_options, build_model, count_parameters, model_normalization
from kdfair_cli.models.timm_models import apply_pretrained_config, data_config, describe, is_timm_arch
from kdfair_cli.data.batches import Batches, make_batches
from kdfair_cli.train.config import TrainConfig
from kdfair_cli.train import distributed
from kdfair_cli.train.kd_loss import kd_loss
from kdfair_cli.train.loop import (
    Evaluator, FitResult, LoopData, Objective, classification, evaluate, fit, input_identity,
)
from kdfair_cli.train.teacher import teacher_setup


def split_train_val(info: DatasetInfo, dataset: Any, cfg: TrainConfig) -> tuple[Split, Split, str]:
    """The training split and the validation split (the dataset's own, or a seeded holdout).

    Model selection never looks at the test split.
    """
    train = dataset.split("train")
    if "val" in info.splits:
        return train, dataset.split("val"), "val split"
    n_val = max(1, int(round(len(train) * cfg.val_fraction)))
    if len(train) - n_val < 1:
        raise KdfairError(f"{cfg.data}: {len(train)} training sample(s): none left to train on after "
                          f"{n_val} held out for validation; give more data")
    perm = np.random.default_rng(cfg.seed).permutation(len(train))
    keep, hold = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    return _subset(train, keep, "train"), _subset(train, hold, "val"), f"{cfg.val_fraction:.0%} of train"


def _subset(split: Split, index: np.ndarray, name: str) -> Split:
    images = None if split.images is None else split.images[index]
    return Split(name, images, split.labels[index], split.sample_id[index],
                 {k: v[index] for k, v in split.attrs.items()}, {k: v[index] for k, v in split.extra.items()})


def to_batches(dataset: Any, split: Split, info: DatasetInfo, device: torch.device,
               model: Any = None) -> tuple[Batches, torch.Tensor]:
    labels = torch.from_numpy(split.labels.astype(np.int64)).to(device)
    return make_batches(dataset, split, device, info.mean, info.std, model=model), labels


def _build(cfg: TrainConfig, info: DatasetInfo, train: Split) -> tuple[torch.nn.Module, dict | None]:
    """The model to train, and for a family of its own (text classifiers, causal LMs) the facts
    model.json records of it (None for image architectures)."""
    check_family_fits(cfg.arch, info.name, info.modality)
    if (family := arch_family(cfg.arch)) is not None:
        return family.build(cfg, info, train)
    options = arch_options(cfg.arch, cfg.model_config, cfg.pretrained)
    return build_model(cfg.arch, info.num_classes, info.input_shape, options), None


def prepare_output(out: Path, resume: bool, force: bool) -> None:
    """Refuse to clobber a finished model unless --force; keep a resumable state for --resume.
    Nothing is deleted here: --force drops the old state only once every input has been read."""
    check_writable(out / META)
    if (out / META).exists() and not force:
        raise KdfairError(f"{out} already holds a finished model; use --force to overwrite it")
    if (out / STATE).exists() and not resume and not force:
        raise KdfairError(f"{out} holds an unfinished run; use --resume to continue it or --force to restart")


def hard_label_objective(cfg: TrainConfig) -> Objective:
    return classification(lambda logits, y, index, x: F.cross_entropy(logits.float(), y,
                                                                      label_smoothing=cfg.label_smoothing))


def kd_objective(teacher_fn, cfg: TrainConfig) -> Objective:
    """The paper's KD loss; teacher_fn(index, x) gives the teacher's logits for the batch."""
    assert cfg.temperature is not None and cfg.alpha is not None

    def loss(logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return kd_loss(logits, teacher_fn(index, x), y, cfg.temperature, cfg.alpha, cfg.t2_scaling)

    return classification(loss)


#: Datasets that decode and resize every image on the fly: a timm model's input size is their
#: default image_size (in-memory sets keep their stored size; their memory grows with it).
_STREAMED = ("imagefolder",)


def open_for_training(cfg: TrainConfig) -> Any:
    """The dataset opened with cfg's --dataset-option values and loading settings.

    For timm models on a streamed set without an image_size option, the model's pretrained
    config gives it (recorded in cfg.dataset_options, hence in model.json for predict).
    """
    if is_timm_arch(cfg.arch) and cfg.dataset in _STREAMED and "image_size" not in cfg.dataset_options:
        size = data_config(cfg.arch, cfg.pretrained).get("input_size")
        if size:
            cfg.dataset_options["image_size"] = int(size[-1])
    dataset = open_dataset(cfg.dataset, cfg.data, **cfg.dataset_options)
    configure = getattr(dataset, "configure_loading", None)
    if configure is not None:
        configure(workers=cfg.workers)
    return dataset


def prepare_model(cfg: TrainConfig, info: DatasetInfo, train: Split,
                  device: torch.device) -> tuple[torch.nn.Module, dict | None, dict | None]:
    """Build (seeded), load --pretrained, move to the device, channels_last and compile if asked.

    A timm model loaded from a model directory takes that directory's pretrained config.

    Returns (model, what --pretrained loaded for image archs, the facts of a text arch or causal LM).
    """
    torch.manual_seed(cfg.seed)
    model, facts = _build(cfg, info, train)
    pretrained = None
    if cfg.pretrained and facts is None:  # a family (text, causal LM) loads --pretrained in _build
        from kdfair_cli.models.weights import load_pretrained

        pretrained = load_pretrained(model, cfg.pretrained)
        if is_timm_arch(cfg.arch):
            apply_pretrained_config(model, cfg.arch, cfg.pretrained)
        if dropped := pretrained["dropped"]:
            print(f"kdfair: --pretrained: dropped {len(dropped)} tensor(s) whose shape differs "
                  f"(classifier head re-initialised): {', '.join(dropped)}", file=sys.stderr)
    model = model.to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        model.compile()  # in place: state_dict keys stay those of the plain model
    return model, pretrained, facts


def train_model(cfg: TrainConfig, *, resume: bool = False, force: bool = False,
                verbose: bool = True) -> dict | None:
    """Train according to `cfg` and write the model directory; returns its model.json.

    The loss follows cfg.role: "ds" distils from cfg.teacher or cfg.teacher_logits (validate
    refuses a "ds" config with neither), every other role learns from hard labels. Under torchrun every rank trains
    (DistributedDataParallel); rank 0 writes the directory and the other ranks return None.
    """
    cfg.validate()
    out = Path(cfg.out)
    env, device = distributed.setup(cfg.device)
    try:
        distributed.check_batch_size(env, cfg.batch_size)
        if env.main:
            prepare_output(out, resume, force)
        distributed.barrier(env)
        meta = _train(cfg, out, env, device, resume, verbose and env.main, force=force)
        distributed.barrier(env)  # all ranks end together, after rank 0 has written the directory
        return meta
    finally:
        distributed.teardown(env)


def _train(cfg: TrainConfig, out: Path, env: distributed.DistEnv, device: torch.device, resume: bool,
           verbose: bool, force: bool = False) -> dict | None:
    dataset = open_for_training(cfg)
    info = dataset.info
    train, val, val_source = split_train_val(info, dataset, cfg)
    model, pretrained, facts = prepare_model(cfg, info, train, device)
    if facts is None and (norm := model_normalization(model, info.input_shape[0])) is not None:
        info = dataclasses.replace(info, mean=norm[0], std=norm[1])  # what the model was made for
    family = arch_family(cfg.arch)
    train_b, train_y = to_batches(dataset, train, info, device, model)
    val_b, val_y = to_batches(dataset, val, info, device, model)
    provenance: dict[str, Any] = {}
    evaluator: Evaluator | None = None
    if family is not None and family.objective is not None:  # a causal LM: per learned token
        objective, provenance, evaluator = family.objective(cfg, model, train_b, val_b, train, device,
                                                            info.fingerprint)
    elif cfg.role == "ds":
        teacher_fn, provenance = teacher_setup(cfg, info, train, device)
        objective = kd_objective(teacher_fn, cfg)
    else:
        objective = hard_label_objective(cfg)
    data = LoopData(train_b, train_y, val_b, val_y)
    trainee = model
    sharded = env.active and cfg.parallel == "fsdp"
    if sharded:  # in place: `model` itself holds shards from here on
        trainee = distributed.fsdp_shard(model, family.shard_units(model))
    elif env.active:
        trainee = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    refuse_input_target(out)  # every input is read by now: none may live in the model being written
    if force and not resume and env.main:  # only now may --force drop an interrupted run's state
        (out / STATE).unlink(missing_ok=True)
    result = fit(trainee, data, cfg, objective, device, out / STATE, resume=resume,
                 name=f"{cfg.role}:{cfg.arch}", verbose=verbose, dist=env,
                 inputs=input_identity(info.fingerprint, provenance), evaluator=evaluator)
    if not env.main:
        return None
    if sharded:  # rank 0 saves from an unsharded copy of the same architecture
        model, _, _ = prepare_model(cfg, info, train, device)
    model.load_state_dict(result.state_dict)
    if evaluator is not None:
        val_loss, val_acc = evaluator(model)
    else:
        val_loss, val_acc = evaluate(model, val_b, val_y, cfg.batch_size, cfg.amp)
    meta = _model_meta(cfg, info, model, result, device, val_source, val_loss, val_acc, provenance)
    meta["dataset"]["open_options"] = dict(cfg.dataset_options)
    meta["pretrained"] = pretrained
    if facts is None:
        meta["arch_options"] = arch_options(cfg.arch, cfg.model_config, cfg.pretrained)
    if is_timm_arch(cfg.arch):
        meta["timm"] = describe(model)
    meta["distributed"] = env.to_json()
    write_weights = None
    if family is not None:  # its own files (save_pretrained output + tokenizer)
        write_weights = family.save(meta, model, train_b, val_b, facts)
    meta = save_model_dir(out, result.state_dict, meta, result.history, write_weights=write_weights)
    (out / STATE).unlink(missing_ok=True)
    return meta


def _model_meta(cfg: TrainConfig, info: DatasetInfo, model: torch.nn.Module, result: FitResult,
                device: torch.device, val_source: str, val_loss: float, val_acc: float,
                provenance: dict) -> dict:
    last = result.history[-1]
    return {
        "kdfair_version": __version__,
        "arch": cfg.arch,
        "role": cfg.role,
        "seed": cfg.seed,
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "input_shape": list(info.input_shape),
        "normalization": {"mean": list(info.mean), "std": list(info.std)},
        "dataset": {"name": info.name, "path": str(Path(cfg.data).resolve()), "fingerprint": info.fingerprint,
                    "options": info.options, "attributes": {a.name: list(a.values) for a in info.attributes}},
        "temperature": cfg.temperature,
        "alpha": cfg.alpha if cfg.role == "ds" else None,
        "kd_scale_t2": cfg.t2_scaling if cfg.role == "ds" else None,
        "teacher": provenance or None,
        "hyperparameters": cfg.to_json(),
        "selection": {"kept": cfg.select, "epoch": result.selected_epoch,
                      "validation": val_source, "metric": "val_acc"},
        "parameters": count_parameters(model),
        "final_metrics": {"train_loss": last["train_loss"], "train_acc": last["train_acc"],
                          "val_loss": val_loss, "val_acc": val_acc},
        "train_seconds": result.seconds,
        "train_samples_per_second": result.samples_per_second,
        "device": str(device),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
    }
