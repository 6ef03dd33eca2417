"""The model directory (docs/design.md): model.safetensors + model.json + history.parquet.

Weights are safetensors only (never pickle). model.json carries everything needed to rebuild
the model and to trace it (arch and its build options, classes, normalisation, dataset, role,
hyperparameters, the weights' sha256); it is written last, so its presence marks a finished model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import atomic_path, register_input

WEIGHTS = "model.safetensors"
META = "model.json"
HISTORY = "history.parquet"
STATE = "train_state.pt"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_model_dir(out: Path, state_dict: dict, meta: dict[str, Any], history: list[dict],
                   write_weights: Any = None) -> dict:
    """Write weights, history, then model.json (with the weights' sha256); return the meta.

    write_weights(out, state_dict), if given, writes model.safetensors (and its companions)
    itself: text models write transformers' save_pretrained output and their tokenizer.
    """
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    if write_weights is not None:
        write_weights(out, state_dict)
    else:
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        with atomic_path(out / WEIGHTS) as tmp:
            save_file(tensors, str(tmp))
    with atomic_path(out / HISTORY) as tmp:
        pd.DataFrame(history).to_parquet(tmp, index=False)
    meta = {**meta, "weights_sha256": sha256_file(out / WEIGHTS)}
    with atomic_path(out / META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def read_model_meta(model_dir: str | Path) -> dict[str, Any]:
    """model.json of a finished model directory, or a KdfairError naming what is missing."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise KdfairError(f"model directory {model_dir} does not exist")
    register_input(model_dir, "model")
    meta_path = model_dir / META
    if not meta_path.exists():
        hint = " (training has not finished; rerun with --resume)" if (model_dir / STATE).exists() else ""
        raise KdfairError(f"{meta_path} is missing: not a finished kdfair model directory{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KdfairError(f"{meta_path} is not valid JSON: {exc}") from exc
    check_model_meta(meta, meta_path)
    return meta


def check_model_meta(meta: Any, where: str | Path) -> None:
    """The keys that rebuild a model, with the types they must have."""
    if not isinstance(meta, dict):
        raise KdfairError(f"{where} must hold a JSON object, found {type(meta).__name__}")
    for key in ("arch", "num_classes", "input_shape"):
        if key not in meta:
            raise KdfairError(f"{where} has no '{key}'")
    if not isinstance(meta["arch"], str):
        raise KdfairError(f"{where}: 'arch' must be a string, found {meta['arch']!r}")
    c = meta["num_classes"]
    if not isinstance(c, int) or isinstance(c, bool) or c < 1:
        raise KdfairError(f"{where}: 'num_classes' must be a positive integer, found {c!r}")
    shape = meta["input_shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                              for d in shape):
        raise KdfairError(f"{where}: 'input_shape' must be a list of positive integers, found {shape!r}")
