"""Small summaries shared by the API's result objects."""

from __future__ import annotations

import numpy as np


def mean_std(values: np.ndarray | list) -> tuple[float, float]:
    """Mean and sample std (ddof=1) over runs; std is NaN for one run."""
    values = np.asarray(values, dtype=np.float64)
    std = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    return float(np.mean(values)), std
