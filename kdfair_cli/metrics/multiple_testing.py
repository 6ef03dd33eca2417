"""Multiple-comparison adjustment of per-class p-values.

The paper does not say whether it corrected for testing C classes at once; kdfair defaults to
no correction (as the paper's counts suggest) and offers Holm (family-wise error) and
Benjamini-Hochberg (false discovery rate). NaN p-values (classes that could not be tested) are
left NaN and do not count towards the number of tests m.
"""

from __future__ import annotations

import numpy as np

METHODS = ("none", "holm", "bh")


def adjust_pvalues(p: np.ndarray, method: str = "none") -> np.ndarray:
    """Adjusted p-values (same shape as p), clipped to [0, 1]; NaN stays NaN."""
    if method not in METHODS:
        raise ValueError(f"unknown correction {method!r}; expected one of {METHODS}")
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0 or method == "none":
        out[ok] = q
        return out
    order = np.argsort(q, kind="stable")
    ranked = q[order]
    if method == "holm":
        # step-down: max over i' <= i of (m - i' + 1) p_(i'), 1-based ranks
        adj = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        # step-up: min over i' >= i of m p_(i') / i'
        adj = np.minimum.accumulate((m * ranked / np.arange(1, m + 1))[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.minimum(adj, 1.0)
    out[ok] = result
    return out
