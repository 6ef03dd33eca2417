"""`--device auto|cpu|cuda[:N]|mps` -> torch.device, with a clear error when unavailable."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kdfair_cli.errors import KdfairError

if TYPE_CHECKING:
    import torch

_CUDA = re.compile(r"cuda(?::(\d+))?")


def check_device_name(spec: str) -> str:
    """The device name, normalised; KdfairError unless it is one kdfair knows (no torch import,
    so specs and the demo are checked before any work)."""
    name = spec.strip().lower()
    if name not in ("auto", "cpu", "mps") and not _CUDA.fullmatch(name):
        raise KdfairError(f"--device '{spec}': expected auto, cpu, cuda, cuda:N or mps")
    return name


def resolve_device(spec: str) -> torch.device:
    """Pick the device: auto prefers CUDA, then MPS, then CPU."""
    import torch

    spec = check_device_name(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise KdfairError("--device mps: MPS is not available on this machine")
        return torch.device("mps")
    match = _CUDA.fullmatch(spec)
    if match:
        if not torch.cuda.is_available():
            raise KdfairError(f"--device {spec}: CUDA is not available on this machine")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise KdfairError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise KdfairError(f"--device '{spec}': expected auto, cpu, cuda, cuda:N or mps")
