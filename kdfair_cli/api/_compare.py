"""How two sides of prediction files (models A and B, one or several seeds each) are compared.

- One file a side, or the same number a side (seed i of A scored against seed i of B on the
  same samples): the paired permutation test, its seeds combined by `combine_seeds` (the mean
  over seeds of the per-seed deltas against the mean of per-seed null draws). With >= 2 seeds a
  side, Welch's t-test over the per-seed values is reported next to it (`welch_p`).
- Different numbers of files, >= 2 a side: only Welch's t-test over the per-seed values; no
  interval.

The excess comparisons of group fairness combine the same way; their per-seed "null" is the
centred paired bootstrap (metrics.paired.paired_group), so the combined test is a bootstrap
test of the mean over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kdfair_cli.errors import KdfairError
from kdfair_cli.metrics.paired import PairedComparison, combine_seeds, welch_seeds

PAIRED, WELCH = "paired", "welch"


def pairing(n_a: int, n_b: int) -> str:
    """PAIRED (matched seeds) or WELCH; one file against several is refused."""
    if n_a == n_b:
        return PAIRED
    if n_a >= 2 and n_b >= 2:
        return WELCH
    raise KdfairError(f"--versus: {n_a} file(s) against {n_b}; give the same number a side (seed i "
                      "against seed i, paired test) or at least 2 a side (Welch's test over seeds)")


@dataclass
class SideComparison:
    """A minus B for one metric: the delta, its p-value and interval, and how they were made."""

    a: float
    b: float
    delta: float
    p: float
    ci: tuple[float, float] | None
    test: str  # "paired" or "welch"
    n_a: int
    n_b: int
    welch_p: float | None  # Welch over seeds, next to a paired test with >= 2 seeds a side

    def keys(self, name: str) -> dict[str, Any]:
        """The JSON keys delta_<name>, delta_<name>_p, delta_<name>_ci (+ _welch_p)."""
        out: dict[str, Any] = {f"delta_{name}": self.delta, f"delta_{name}_p": self.p,
                               f"delta_{name}_ci": list(self.ci) if self.ci is not None else None}
        if self.welch_p is not None:
            out[f"delta_{name}_welch_p"] = self.welch_p
        return out


def compare(values_a: list[float], values_b: list[float],
            per_seed: list[PairedComparison] | None) -> SideComparison:
    """Combine per-seed paired comparisons (matched seeds) or fall back to Welch over seeds."""
    n_a, n_b = len(values_a), len(values_b)
    welch = welch_seeds(values_a, values_b) if n_a >= 2 and n_b >= 2 else None
    if per_seed:
        c = combine_seeds(per_seed) if len(per_seed) > 1 else per_seed[0]
        return SideComparison(c.a, c.b, c.delta, c.p, c.ci, PAIRED, n_a, n_b,
                              welch.p if welch is not None else None)
    if welch is None:
        raise ValueError("no matched seeds and fewer than 2 seeds a side: nothing to compare")
    return SideComparison(float(np.mean(values_a)), float(np.mean(values_b)), welch.delta, welch.p,
                          None, WELCH, n_a, n_b, None)
