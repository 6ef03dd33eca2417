"""Dataset names -> openers. `open_dataset("trifeature", path)` returns a Dataset."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from kdfair_cli.data.base import Dataset
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input

#: name -> "module:function"; the function takes (path, **options) and returns a Dataset.
DATASETS: dict[str, str] = {
    "trifeature": "kdfair_cli.data.trifeature:open_trifeature",
    "hatexplain": "kdfair_cli.data.hatexplain:open_hatexplain",
    "textcsv": "kdfair_cli.data.textcsv:open_textcsv",
    "bbq": "kdfair_cli.llm.bbq:open_bbq",
    "corpus": "kdfair_cli.llm.corpus:open_corpus",
    "cifar10": "kdfair_cli.data.cifar:open_cifar10",
    "cifar100": "kdfair_cli.data.cifar:open_cifar100",
    "svhn": "kdfair_cli.data.svhn:open_svhn",
    "celeba": "kdfair_cli.data.celeba:open_celeba",
    "imagefolder": "kdfair_cli.data.imagefolder:open_imagefolder",
}


def open_dataset(name: str, path: str | Path, **options: Any) -> Dataset:
    """Open dataset `name` stored at `path`; KdfairError for an unknown name or bad folder."""
    if name not in DATASETS:
        raise KdfairError(f"unknown dataset '{name}'; expected one of: {', '.join(sorted(DATASETS))}")
    path = Path(path)
    if not path.exists():
        raise KdfairError(f"data folder {path} does not exist")
    register_input(path, "data")
    module_name, func = DATASETS[name].split(":")
    opener = getattr(importlib.import_module(module_name), func)
    _check_option_names(name, opener, options)
    return opener(path, **options)


def _check_option_names(name: str, opener: Any, options: dict[str, Any]) -> None:
    """An opener with named options only (no **options) gets only those: say which, not TypeError."""
    params = inspect.signature(opener).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return  # the opener checks its options itself (check_options)
    allowed = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in options:
        if key not in allowed:
            raise KdfairError(f"dataset {name} has no option '{key}'; it accepts: {', '.join(allowed) or 'none'}")
