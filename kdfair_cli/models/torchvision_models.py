"""torchvision classification models by name.

Any name in `torchvision.models.list_models(module=torchvision.models)` (resnet18/34/50,
densenet121/169, vit_b_16, ...) is built with weights=None (never downloaded) and
num_classes = the dataset's class count; ViTs also get image_size = the input size.
`--pretrained` is loaded by kdfair_cli.models.weights, the same for every image architecture.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from kdfair_cli.errors import KdfairError


def torchvision_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def build_torchvision(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module | None:
    """The torchvision model `arch`, or None if torchvision has no classification model of that name."""
    import torchvision

    if arch not in torchvision_names():
        return None
    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
    if arch.startswith("vit_"):
        kwargs["image_size"] = int(input_shape[1])
    if input_shape[0] != 3:
        raise KdfairError(f"arch '{arch}' (torchvision) expects 3-channel input, the dataset has {input_shape[0]}")
    try:
        return torchvision.models.get_model(arch, **kwargs)
    except (ValueError, TypeError) as exc:
        raise KdfairError(f"arch '{arch}': {exc}") from exc
