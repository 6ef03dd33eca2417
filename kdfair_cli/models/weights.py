"""`--pretrained FILE_OR_DIR` for image models: read a local weight file and load what fits.

One set of rules for every image architecture (torchvision, timm, kdfair's own):
- a `torch.save`d state dict, read with weights_only=True (no pickled code runs);
  `state_dict`/`model` wrappers and `module.`/`_orig_mod.` prefixes are accepted;
- a `.safetensors` file;
- a model directory (timm's `save_for_hf` / Hugging Face layout): its `model.safetensors`,
  else `pytorch_model.bin`; the architecture-specific `config.json` is read by the caller.
Tensors whose shape differs from the model's (the classifier head when the class count differs)
are dropped and reported; the model keeps their fresh initialisation. Nothing is downloaded.
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

#: Weight files looked for, in this order, in a `--pretrained` model directory.
DIR_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def weight_file(path: str | Path) -> Path:
    """The weight file `path` names: itself, or the first of DIR_WEIGHTS in a directory."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in DIR_WEIGHTS:
        if (path / name).is_file():
            return path / name
    raise KdfairError(f"--pretrained {path}: the directory holds none of {', '.join(DIR_WEIGHTS)}")


def read_weight_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = weight_file(path)
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
