"""Architecture names -> constructors: kdfair's own, `timm:<name>`, else torchvision classification models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from kdfair_cli.errors import KdfairError
from kdfair_cli.models.lenet import LeNet5
from kdfair_cli.models.resnet_cifar import CifarResNet
from kdfair_cli.models.timm_models import build_timm, is_timm_arch, resolve_options, timm_name

Builder = Callable[[int, tuple[int, int, int]], nn.Module]


def _cifar_resnet(depth: int) -> Builder:
    return lambda num_classes, input_shape: CifarResNet(depth, num_classes, input_shape[0])


ARCHS: dict[str, Builder] = {
    **{f"resnet{d}": _cifar_resnet(d) for d in (20, 32, 44, 56, 110)},
    "lenet5": lambda num_classes, input_shape: LeNet5(num_classes, input_shape),
}
OTHER_ARCHS = "a torchvision classification model (resnet18, densenet121, vit_b_16, ...) or timm:<name>"


def check_arch(arch: str) -> None:
    """KdfairError unless `arch` names an image architecture kdfair can build."""
    if arch in ARCHS:
        return
    if is_timm_arch(arch):
        timm_name(arch)
        return
    from kdfair_cli.models.torchvision_models import torchvision_names

    if arch not in torchvision_names():
        raise KdfairError(f"unknown arch '{arch}'; expected one of: {', '.join(ARCHS)}, or {OTHER_ARCHS}")


def arch_options(arch: str, model_config: str | None, pretrained: str | None) -> dict[str, Any]:
    """The architecture's build options beyond (classes, input shape); model.json keeps them."""
    if is_timm_arch(arch):
        return resolve_options(arch, model_config, pretrained)
    if model_config:
        raise KdfairError(f"--model-config applies to timm:<name> and text archs, not '{arch}'")
    return {}


def build_model(arch: str, num_classes: int, input_shape: tuple[int, int, int],
                options: dict[str, Any] | None = None) -> nn.Module:
    """Build `arch` for `num_classes` outputs and inputs of `input_shape` (C, H, W)."""
    if is_timm_arch(arch):
        return build_timm(arch, num_classes, tuple(input_shape), options)
    if options:
        raise KdfairError(f"arch '{arch}' takes no build options, got {options}")
    if arch not in ARCHS:
        from kdfair_cli.models.torchvision_models import build_torchvision

        model = build_torchvision(arch, num_classes, tuple(input_shape))
        if model is None:
            raise KdfairError(f"unknown arch '{arch}'; expected one of: {', '.join(ARCHS)}, or {OTHER_ARCHS}")
        return model
    try:
        return ARCHS[arch](num_classes, tuple(input_shape))
    except ValueError as exc:
        raise KdfairError(f"arch '{arch}': {exc}") from exc


def model_normalization(model: nn.Module, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) the model was pretrained with (timm models carry it), else None: the dataset's.

    None too when the config's statistics are for another channel count than the data's.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("mean") is None or cfg.get("std") is None or len(cfg["mean"]) != channels:
        return None
    return tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
