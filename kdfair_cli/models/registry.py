"""Architecture names -> constructors; other names fall back to torchvision classification models."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from kdfair_cli.errors import KdfairError
from kdfair_cli.models.lenet import LeNet5
from kdfair_cli.models.resnet_cifar import CifarResNet

Builder = Callable[[int, tuple[int, int, int]], nn.Module]


def _cifar_resnet(depth: int) -> Builder:
    return lambda num_classes, input_shape: CifarResNet(depth, num_classes, input_shape[0])


ARCHS: dict[str, Builder] = {
    **{f"resnet{d}": _cifar_resnet(d) for d in (20, 32, 44, 56, 110)},
    "lenet5": lambda num_classes, input_shape: LeNet5(num_classes, input_shape),
}


def build_model(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """Build `arch` for `num_classes` outputs and inputs of `input_shape` (C, H, W)."""
    if arch not in ARCHS:
        from kdfair_cli.models.torchvision_models import build_torchvision

        model = build_torchvision(arch, num_classes, tuple(input_shape))
        if model is None:
            raise KdfairError(f"unknown arch '{arch}'; expected one of: {', '.join(ARCHS)}, "
                              "or a torchvision classification model (resnet18, densenet121, vit_b_16, ...)")
        return model
    try:
        return ARCHS[arch](num_classes, tuple(input_shape))
    except ValueError as exc:
        raise KdfairError(f"arch '{arch}': {exc}") from exc


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
