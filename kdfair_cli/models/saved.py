"""Rebuilding the model of a model directory (kdfair_cli.io.modeldir reads and writes the files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.modeldir import META, WEIGHTS, read_model_meta, sha256_file
from kdfair_cli.models.families import saved_family
from kdfair_cli.models.registry import build_model


def load_model(model_dir: str | Path, device: Any = "cpu", verify: bool = True):
    """Rebuild the model of `model_dir` and load its weights; returns (model in eval mode, meta)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    weights = model_dir / WEIGHTS
    if not weights.exists():
        raise KdfairError(f"{weights} is missing: the model directory has no weights")
    if verify and meta.get("weights_sha256") and sha256_file(weights) != meta["weights_sha256"]:
        raise KdfairError(f"{weights} does not match the sha256 recorded in {model_dir / META}")
    family = saved_family(meta.get("arch_family"))
    if family is not None and family.load is not None:  # e.g. a transformers save_pretrained directory
        return family.load(model_dir, meta).to(device).eval(), meta
    model = build_model(meta["arch"], int(meta["num_classes"]), tuple(meta["input_shape"]), meta.get("arch_options"))
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise KdfairError(f"{weights} is not a readable safetensors file: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise KdfairError(f"{weights} does not fit arch '{meta['arch']}': {first}") from exc
    return model.to(device).eval(), meta
