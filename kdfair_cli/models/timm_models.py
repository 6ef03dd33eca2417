"""timm (PyTorch Image Models) architectures: `--arch timm:<name>`, e.g. timm:tiny_vit_5m_224.

The paper's ImageNet student, TinyViT, and most modern ImageNet models live in timm, the library
their users already have. Every model is created with pretrained=False (timm never touches the
Hugging Face hub then; HF_HUB_OFFLINE defaults to 1 in this process as a second guard), with
num_classes = the dataset's class count and in_chans = its channel count. Models whose pretrained
config says `fixed_input_size` (ViTs) also get img_size = the dataset's input size; the others
(CNNs, TinyViT) take any size.

`--model-config` gives extra create_model keyword arguments: a JSON object
('{"embed_dims": [64, 128, 160, 320]}') or key=value pairs of scalars ('drop_path_rate=0.1').
`--pretrained DIR` may be a timm/HF-style directory (model.safetensors + config.json, as written
by timm.models.save_for_hf): config.json's `model_args` are used to build the model (the class
count, channels and image size still come from the dataset) and its `pretrained_cfg` (mean, std,
input size) replaces the name's default config. The normalisation of training and predict is
the model's pretrained config mean/std (recorded in model.json), and imagefolder's image_size
defaults to the config's input size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from kdfair_cli.errors import KdfairError

PREFIX = "timm:"
#: model_args of a config.json that the dataset decides, not the saved model.
_DATASET_ARGS = ("num_classes", "in_chans", "img_size")


def is_timm_arch(arch: str) -> bool:
    return arch.startswith(PREFIX)


def _timm() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import timm

    return timm


def timm_name(arch: str) -> str:
    """The timm model name of `timm:<name>`, checked against timm's registry."""
    name = arch[len(PREFIX):]
    timm = _timm()
    if not name or not timm.is_model(name):
        raise KdfairError(f"arch '{arch}': timm {timm.__version__} has no model '{name}' "
                          "(list them with: python -c \"import timm; print(timm.list_models('*vit*'))\")")
    return name


def dir_config(pretrained: str | None) -> dict[str, Any]:
    """config.json of a `--pretrained` model directory, or {} for a file or no --pretrained."""
    if not pretrained or not Path(pretrained).is_dir():
        return {}
    path = Path(pretrained) / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KdfairError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise KdfairError(f"{path}: expected a JSON object")
    return config


def parse_model_config(spec: str | None) -> dict[str, Any]:
    """`--model-config` as create_model keyword arguments."""
    if not spec:
        return {}
    if spec.lstrip().startswith("{"):
        try:
            options = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise KdfairError(f"--model-config {spec!r}: not a JSON object ({exc})") from exc
        if not isinstance(options, dict):
            raise KdfairError(f"--model-config {spec!r}: expected a JSON object")
        return options
    from kdfair_cli.models.text import parse_model_config as parse_pairs

    return parse_pairs(spec, "")


def resolve_options(arch: str, model_config: str | None, pretrained: str | None) -> dict[str, Any]:
    """The create_model keyword arguments beyond kdfair's own: the directory's, then --model-config."""
    name = timm_name(arch)
    config = dir_config(pretrained)
    saved = config.get("architecture")
    if saved and str(saved).split(".")[0] != name.split(".")[0]:
        raise KdfairError(f"--pretrained {pretrained}: config.json is for '{saved}', not '{name}' (--arch {arch})")
    options = {k: v for k, v in (config.get("model_args") or {}).items() if k not in _DATASET_ARGS}
    return {**options, **parse_model_config(model_config)}


def build_timm(arch: str, num_classes: int, input_shape: tuple[int, ...],
               options: dict[str, Any] | None = None) -> nn.Module:
    """timm's `arch` for `num_classes` outputs and (C, H, W) inputs, never with downloaded weights."""
    timm = _timm()
    name = timm_name(arch)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": int(input_shape[0])}
    default = timm.models.get_pretrained_cfg(name)
    if default is not None and default.fixed_input_size:
        height, width = int(input_shape[1]), int(input_shape[2])
        kwargs["img_size"] = height if height == width else (height, width)
    kwargs.update(options or {})
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise KdfairError(f"arch '{arch}' with {kwargs}: {type(exc).__name__}: {exc}") from exc


def data_config(arch: str, pretrained: str | None) -> dict[str, Any]:
    """input_size, mean and std: the directory's pretrained_cfg over the name's default config."""
    timm = _timm()
    default = timm.models.get_pretrained_cfg(timm_name(arch))
    config = default.to_dict() if default is not None else {}
    config.update(dir_config(pretrained).get("pretrained_cfg") or {})
    return {k: config[k] for k in ("input_size", "mean", "std") if config.get(k) is not None}


def apply_pretrained_config(model: nn.Module, arch: str, pretrained: str | None) -> None:
    """Give the model the directory's pretrained_cfg (its normalisation and input size)."""
    own = dict(getattr(model, "pretrained_cfg", None) or {})
    model.pretrained_cfg = {**own, **data_config(arch, pretrained)}


def describe(model: nn.Module) -> dict[str, Any]:
    """What model.json records about a timm model besides its arch and arch_options."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    return {"version": _timm().__version__,
            "pretrained_cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()
                               if k in ("architecture", "tag", "input_size", "mean", "std", "interpolation",
                                        "crop_pct", "fixed_input_size")}}
