"""torchvision classification models by name, and loading a local pretrained weight file.

Any name in `torchvision.models.list_models(module=torchvision.models)` (resnet18/34/50,
densenet121/169, vit_b_16, ...) is built with weights=None (never downloaded) and
num_classes = the dataset's class count; ViTs also get image_size = the input size.
`--pretrained FILE` loads a state dict saved by torch.save (read with weights_only=True) or a
safetensors file; tensors whose shape differs from the model's (the classifier head when the
class count differs) are dropped and reported, and the model keeps their fresh initialisation.
"""

from __future__ import annotations

import pickle
import warnings

from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdfair_cli.errors import KdfairError, first_line
from kdfair_cli.io.atomic import register_input


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


def read_weight_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    register_input(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with warnings.catch_warnings():  # torch warns about pickle protocols; the error says enough
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's weights-only refusal: several lines of advice
        raise KdfairError(f"--pretrained {path}: holds pickled Python objects besides tensors; kdfair "
                          "loads plain tensors only (KDFAIR_DEBUG=1 for the detail)") from exc
    except Exception as exc:  # unreadable, wrong format
        raise KdfairError(f"--pretrained {path}: not a readable state dict ({type(exc).__name__}: "
                          f"{first_line(exc)})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise KdfairError(f"--pretrained {path}: expected a dict of tensors (a state dict)")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def load_pretrained(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load what fits; returns {path, loaded, dropped (shape mismatch), missing, unexpected}."""
    state = read_weight_file(path)
    own = model.state_dict()
    dropped = sorted(k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape))
    unexpected = sorted(k for k in state if k not in own)
    usable = {k: v for k, v in state.items() if k in own and k not in dropped}
    if not usable:
        raise KdfairError(f"--pretrained {path}: no tensor matches the model's parameter names "
                          f"(first in file: {next(iter(state), 'none')}, first in model: {next(iter(own), 'none')})")
    missing = sorted(k for k in own if k not in usable)
    model.load_state_dict(usable, strict=False)
    return {"path": str(Path(path).resolve()), "loaded": len(usable), "dropped": dropped,
            "missing": missing, "unexpected": unexpected}
