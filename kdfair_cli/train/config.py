"""Training settings shared by train-teacher and distill, validated before any work starts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdfair_cli.errors import require

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
SELECTIONS = ("last", "best")
PARALLEL = ("ddp", "fsdp")
#: token: the teacher's distribution per token (the paper's KD); sequence: fine-tune on text the
#: teacher generated at a sampling temperature (`kdfair generate TEACHER --dataset corpus`).
KD_KINDS = ("token", "sequence")
ROLES = ("teacher", "nds", "ds")
#: Tokens per text (text classifiers) or corpus line (causal LMs); also the teacher cache's default.
DEFAULT_MAX_LENGTH = 128
#: Help panels of the generated options, in the order --help shows them.
PANELS = ("Data", "Model", "Training", "Distillation", "Text", "Run")


def setting(help: str, *, default: Any = dataclasses.MISSING, default_factory: Any = dataclasses.MISSING,
            panel: str | None = None, spec: bool = False, sweep: bool = False, choices: tuple[str, ...] | None = None,
            roles: tuple[str, ...] = ROLES, cli_default: Any = dataclasses.MISSING, cli_type: Any = None,
            param: str | None = None, short: str | None = None, metavar: str | None = None) -> Any:
    """A TrainConfig field with everything the options, the spec keys and the docs table need.

    panel: the --help panel of its option in train-teacher and distill (None: no generated
    option, the field is declared by the command or set by code); spec: a key of a sweep spec's
    [train], [teacher], [nds] and [ds] tables; sweep: a key of its [sweep] table (one value for
    the whole grid); roles: the roles it applies to (train-teacher's options are those of
    teacher and nds, distill's those of ds); cli_default,
    cli_type, param, short, metavar: where the option differs from the field (a required field
    with a command-line default, a Path, a repeatable KEY=VALUE list).
    """
    meta = {"help": help, "panel": panel, "spec": spec, "sweep": sweep, "choices": choices, "roles": roles,
            "cli_default": cli_default, "cli_type": cli_type, "param": param, "short": short,
            "metavar": metavar}
    return field(default=default, default_factory=default_factory, metadata=meta)


_ALL = ROLES
_DS = ("ds",)


@dataclass
class TrainConfig:
    """Everything that determines a training run (device and resume excepted).

    Each field's metadata (see `setting`) is the one declaration of that setting: the options of
    train-teacher and distill, the spec keys of a sweep and the table in docs/sweep.md are made
    from it (kdfair_cli.cli.train_options, kdfair_cli.sweep.spec, kdfair_cli.docs_gen).
    """

    dataset: str = setting("Dataset: trifeature, cifar10, cifar100, svhn, celeba, imagefolder, "
                           "hatexplain, textcsv; corpus (a JSONL text corpus, for --arch causal-lm).",
                           panel="Data", cli_default="trifeature")
    data: str = setting("Dataset folder (e.g. made by `kdfair data trifeature`).", panel="Data",
                        cli_type=Path)
    arch: str = setting("Architecture (declared by each command; a spec gives it per role).",
                        spec=True)
    out: str = setting("Model directory to write.")
    role: str = setting("teacher, nds (hard labels) or ds (distilled).", default="teacher",
                        choices=ROLES)
    epochs: int = setting("Training epochs.", default=30, panel="Training", spec=True)
    batch_size: int = setting("Batch size.", default=128, panel="Training", spec=True)
    optimizer: str = setting("sgd (Nesterov momentum) or adamw.", default="sgd", panel="Training",
                             spec=True, choices=OPTIMIZERS)
    lr: float = setting("Peak learning rate.", default=0.1, panel="Training", spec=True)
    momentum: float = setting("SGD momentum.", default=0.9, panel="Training", spec=True)
    weight_decay: float = setting("Weight decay (not on biases/BN).", default=5e-4, panel="Training",
                                  spec=True)
    schedule: str = setting("LR schedule: cosine, step (x0.1 at 50%/75%), constant.", default="cosine",
                            panel="Training", spec=True, choices=SCHEDULES)
    warmup_epochs: int = setting("Linear LR warmup epochs.", default=0, panel="Training", spec=True)
    label_smoothing: float = setting("Label smoothing of the hard-label cross-entropy.", default=0.0,
                                     panel="Training", spec=True)
    grad_clip: float = setting("Clip the global gradient norm to this value (0 = off).", default=5.0,
                               panel="Training", spec=True)
    augment: bool = setting("Random crop (pad size/8) and horizontal flip, batch-wise on the device.",
                            default=True, panel="Training", spec=True)
    seed: int = setting("Seed of initialisation, order and augmentation.", default=0, panel="Training")
    select: str = setting("Keep the last epoch or the best-validation epoch (never the test split).",
                          default="last", panel="Training", spec=True, choices=SELECTIONS)
    val_fraction: float = setting("Holdout of train used for validation when the dataset has no val "
                                  "split.", default=0.1, panel="Training", spec=True)
    device: str = setting("auto, cpu, cuda, cuda:N or mps.", default="auto", panel="Run")
    amp: bool = setting("bf16 autocast on CUDA (ignored on CPU).", default=True, panel="Run", spec=True)
    # Distillation (role "ds" only): options of `kdfair distill`; alpha and t2_scaling are also
    # keys of a sweep's [sweep] table (its temperatures and teachers come from the grid).
    temperature: float | None = setting("Softmax temperature T > 0 (token-level KD; --kd sequence takes its "
                                        "sampling temperature from the corpus).", default=None, roles=_DS,
                                        panel="Distillation", short="-T")
    teacher: str | None = setting("Teacher model directory (online distillation; a local causal-LM "
                                  "directory for --arch causal-lm).", default=None, roles=_DS,
                                  panel="Distillation", cli_type=Path)
    teacher_logits: str | None = setting(
        "Teacher predictions on the train split (offline distillation; the teacher runs once for a "
        "whole sweep); for --arch causal-lm a top-k cache directory (kdfair predict TEACHER --dataset "
        "corpus --top-k K).", default=None, roles=_DS, panel="Distillation", cli_type=Path)
    alpha: float = setting("Weight of the DISTILLATION term: L = alpha*T^2*KL + (1-alpha)*CE. alpha=1 is "
                           "pure distillation (some tools use the opposite).", default=0.8, roles=_DS,
                           panel="Distillation", sweep=True)
    t2_scaling: bool = setting("Multiply the KL term by T^2 (Hinton et al.); the paper does not say.",
                               default=True, roles=_DS, panel="Distillation", sweep=True)
    kd: str = setting("token: the teacher's logits per token (--teacher / --teacher-logits); sequence: "
                      "fine-tune on the teacher's generated text (--data from `kdfair generate TEACHER "
                      "--dataset corpus`, its .provenance.json names the teacher; a --teacher adds "
                      "token-level KD on the same lines).", default="token", roles=_DS,
                      panel="Distillation", choices=KD_KINDS)
    pretrained: str | None = setting(
        "Start from local weights: image archs a weight file (torch state dict or .safetensors) or a "
        "timm/HF model directory (model.safetensors + config.json; a classifier head of another shape "
        "is dropped); text archs a transformers model directory (never the hub; --arch hf, bert or "
        "distilbert); --arch causal-lm a local causal-LM directory with its tokenizer (required).",
        default=None, panel="Model", cli_type=Path)
    tokenizer: str | None = setting(
        "Text: a local tokenizer directory (e.g. the teacher's model dir); default: the --pretrained "
        "one, else a WordPiece tokenizer trained on the train split.", default=None, panel="Text",
        cli_type=Path)
    max_length: int = setting("Text: tokens per post (truncate/pad); causal LM: tokens per corpus line "
                              "(cut on the right).", default=DEFAULT_MAX_LENGTH, panel="Text")
    model_config: str | None = setting(
        "Text: config overrides for --arch bert/distilbert, e.g. 'hidden=256,layers=4,heads=4,ffn=1024' "
        "(or raw config keys); timm: create_model arguments as JSON or key=value.", default=None,
        panel="Text")
    vocab_size: int = setting("Text: vocabulary of the WordPiece tokenizer trained when neither "
                              "--tokenizer nor --pretrained is given.", default=8000, panel="Text")
    dataset_options: dict[str, Any] = setting(
        "Dataset option (repeatable), e.g. image_size=64, label=Smiling, attributes=Young,Male; see "
        "docs/vision.md.", default_factory=dict, panel="Data", cli_default=None, cli_type=list[str],
        param="dataset_option", short="-O", metavar="KEY=VALUE")
    channels_last: bool = setting("NHWC memory format on CUDA (faster convolutions with bf16).",
                                  default=False, panel="Run")
    compile: bool = setting("torch.compile the model.", default=False, panel="Run")
    grad_accum: int = setting("Micro-batches of --batch-size per optimizer step (gradient accumulation); "
                              "the step's loss is the mean over all its samples or learned tokens, as "
                              "one batch of N x --batch-size.", default=1, panel="Training", spec=True)
    grad_checkpointing: bool = setting("Activation checkpointing of the transformer blocks (--arch "
                                       "causal-lm): recompute their activations in the backward pass.",
                                       default=False, panel="Training")
    lora_rank: int = setting("LoRA adapters of this rank through peft (--arch causal-lm; 0 = full "
                             "fine-tuning); only the adapters train, and they are merged into the saved "
                             "weights.", default=0, panel="Model")
    lora_alpha: float = setting("LoRA scaling alpha (the update is alpha/rank x BA; 0 = twice the rank).",
                                default=0.0, panel="Model")
    save_every: int = setting("Also save the training state every STEPS optimizer steps, mid-epoch "
                              "(0 = after each epoch only); --resume continues from the last one.",
                              default=0, panel="Run", metavar="STEPS")
    parallel: str = setting("Under torchrun: ddp (replicated model) or fsdp (weights, gradients and "
                            "optimizer state sharded over the processes; --arch causal-lm).",
                            default="ddp", panel="Run", choices=PARALLEL)
    workers: int = setting("DataLoader worker processes for streaming datasets (imagefolder); 0 decodes "
                           "in the main process.", default=4, panel="Data")

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices is not None:
                value = getattr(self, f.name)
                require(value in choices, f"--{f.name.replace('_', '-')} '{value}': expected {'|'.join(choices)}")
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
        require(self.grad_accum >= 1, f"--grad-accum must be >= 1, got {self.grad_accum}")
        require(self.save_every >= 0, f"--save-every must be >= 0 (0 = per epoch), got {self.save_every}")
        require(self.lora_rank >= 0, f"--lora-rank must be >= 0 (0 = off), got {self.lora_rank}")
        require(self.lora_alpha >= 0 and math.isfinite(self.lora_alpha),
                f"--lora-alpha must be >= 0, got {self.lora_alpha}")
        self._check_family_settings()
        require(self.workers >= 0, f"--workers must be >= 0, got {self.workers}")
        require(self.pretrained is None or Path(self.pretrained).exists(),
                f"--pretrained {self.pretrained}: no such file or folder")
        if self.role == "ds" and self.kd == "sequence":
            require(self.teacher is None or self.teacher_logits is None,
                    "give at most one of --teacher DIR and --teacher-logits FILE")
            if self.teacher is not None or self.teacher_logits is not None:  # token-level KD as well
                t = self.temperature
                require(t is not None and math.isfinite(t) and t > 0, f"--temperature must be positive, got {t}")
        elif self.role == "ds":
            t, a = self.temperature, self.alpha
            require(t is not None and math.isfinite(t) and t > 0, f"--temperature must be positive, got {t}")
            require(a is not None and 0 <= a <= 1, f"--alpha must be in [0, 1], got {a}")
            require((self.teacher is None) != (self.teacher_logits is None),
                    "give exactly one of --teacher DIR and --teacher-logits FILE")
        require(self.max_length >= 8, f"--max-length must be at least 8, got {self.max_length}")
        out = Path(self.out)
        require(not out.exists() or out.is_dir(), f"output {out} exists and is not a directory")

    def _check_family_settings(self) -> None:
        """Settings only some architecture families implement (ArchFamily.supports)."""
        from kdfair_cli.models.families import arch_family

        asked = {"lora_rank": (self.lora_rank > 0, "--lora-rank"),
                 "lora_alpha": (self.lora_alpha > 0, "--lora-alpha"),
                 "grad_checkpointing": (self.grad_checkpointing, "--grad-checkpointing"),
                 "fsdp": (self.parallel == "fsdp", "--parallel fsdp"),
                 "kd_sequence": (self.role == "ds" and self.kd == "sequence", "--kd sequence")}
        if not any(on for on, _ in asked.values()):
            return
        family = arch_family(self.arch) if self.arch else None
        supports = family.supports if family is not None else frozenset()
        for key, (on, flag) in asked.items():
            require(not on or key in supports, f"{flag} does not apply to --arch {self.arch} "
                    f"(it applies to {_supporters(key)})")
        require(self.lora_alpha == 0 or self.lora_rank > 0, "--lora-alpha needs --lora-rank")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_hash(self) -> str:
        """Identity of the run for --resume: everything but where it runs."""
        blob = {k: v for k, v in self.to_json().items() if k not in ("device", "out", "workers", "save_every")}
        # Settings added later enter the identity only away from their defaults, so a state saved
        # before they existed still resumes.
        for name in _LATER:
            if blob[name] == setting_default(name):
                del blob[name]
        # Identities of runs saved before the distillation settings had one declaration stay
        # valid: T^2 scaling under its old name, and no alpha where it does not apply.
        blob["kd_scale_t2"] = blob.pop("t2_scaling")
        if blob["kd"] == "token":  # and runs from before sequence-level KD keep theirs
            del blob["kd"]
        if self.role != "ds":
            blob["alpha"] = None
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


#: Settings added after states were first saved (see run_hash).
_LATER = ("grad_accum", "grad_checkpointing", "lora_rank", "lora_alpha", "parallel")


def _supporters(key: str) -> str:
    """The --arch values whose family supports `key`, for a refusal."""
    from kdfair_cli.models.families import ARCH_FAMILIES, family

    archs = [a for a, f in ARCH_FAMILIES.items() if key in family(f).supports]
    return ", ".join(f"--arch {a}" for a in archs) or "no architecture"


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


def settings() -> list[dataclasses.Field]:
    """TrainConfig's fields with their metadata, in declaration order."""
    return list(dataclasses.fields(TrainConfig))


def setting_types() -> dict[str, Any]:
    """Field name -> its type (resolved from the annotations)."""
    return typing.get_type_hints(TrainConfig)


def sweep_keys() -> dict[str, type]:
    """The distillation settings a sweep spec gives once, in [sweep], with their types."""
    types = setting_types()
    return {f.name: types[f.name] for f in settings() if f.metadata["sweep"]}


def setting_default(name: str) -> Any:
    """The declared default of a TrainConfig setting."""
    return next(f.default for f in settings() if f.name == name)


def spec_keys() -> dict[str, type]:
    """The training settings a sweep spec may give per role, with the type a value must have."""
    types = setting_types()
    return {f.name: types[f.name] for f in settings() if f.metadata["spec"]}
