"""`--device auto|cpu|cuda[:N]|mps` -> torch.device, with a clear error when unavailable."""

from __future__ import annotations

import re

import torch

from kdfair_cli.errors import KdfairError


def resolve_device(spec: str) -> torch.device:
    """Pick the device: auto prefers CUDA, then MPS, then CPU."""
    spec = spec.strip().lower()
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
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if match:
        if not torch.cuda.is_available():
            raise KdfairError(f"--device {spec}: CUDA is not available on this machine")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise KdfairError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise KdfairError(f"--device '{spec}': expected auto, cpu, cuda, cuda:N or mps")
