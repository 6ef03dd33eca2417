"""Individual fairness: I(f) = mean over pairs (x, x') of |f(x) - f(x')| / d(x, x').

After Dwork et al.'s Lipschitz condition: similar inputs should get similar outputs, and the
ratio is how much the output moves per unit of input distance. The paper leaves f and both
distances open; kdfair's defaults are f = softmax probabilities at T = 1, total variation
between the probability vectors, and d from the pair file. Zero-distance pairs have no defined
ratio and are excluded (and counted). Besides the mean (the paper's number) the median, p95
and max (an empirical Lipschitz constant over the pairs) are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTPUT_DISTANCES = ("tv", "l1", "l2")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / T in float64, shifted by the row max for stability."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def onehot(pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Hard predictions as one-hot rows (f for files without logits)."""
    out = np.zeros((pred.shape[0], num_classes))
    out[np.arange(pred.shape[0]), pred] = 1.0
    return out


def output_distance(fa: np.ndarray, fb: np.ndarray, metric: str = "tv") -> np.ndarray:
    """Distance between output rows: tv = L1 / 2 (in [0, 1] for probabilities), l1, l2."""
    diff = np.abs(fa - fb)
    if metric == "tv":
        return diff.sum(axis=1) / 2
    if metric == "l1":
        return diff.sum(axis=1)
    if metric == "l2":
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))
    raise ValueError(f"unknown output distance {metric!r}; expected one of {OUTPUT_DISTANCES}")


@dataclass
class IndividualFairness:
    """Summary of the per-pair ratios |f(x) - f(x')| / d(x, x')."""

    score: float  # mean ratio: the paper's I(f)
    median: float
    p95: float
    max: float
    n_pairs: int  # pairs used (distance > 0)
    n_zero_distance: int  # pairs excluded because d(x, x') = 0
    mean_output_distance: float  # mean |f(x) - f(x')| over the pairs used


def pair_ratios(outputs: np.ndarray, a: np.ndarray, b: np.ndarray, distance: np.ndarray,
                metric: str = "tv", *, max_block: int = 1 << 24
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pair |f(x) - f(x')| / d(x, x') over pairs (a[i], b[i]) (row indices into outputs).

    Returns (ratio, output distance, used): ratio and output distance of the pairs with
    d > 0, in pair order, and the mask `used` of those pairs. Two models scored on the same
    pair file get ratios aligned pair by pair (the mask depends on d only), which is what a
    paired comparison needs.
    """
    distance = np.asarray(distance, dtype=np.float64)
    used = distance > 0
    a, b, distance = a[used], b[used], distance[used]
    width = max(outputs.shape[1], 1)
    step = max(1, max_block // width)
    dout = np.concatenate([output_distance(outputs[a[s:s + step]], outputs[b[s:s + step]], metric)
                           for s in range(0, a.shape[0], step)] or [np.empty(0)])
    return dout / distance, dout, used


def summarise_ratios(ratio: np.ndarray, dout: np.ndarray, used: np.ndarray) -> IndividualFairness:
    """I(f) and the other summaries from pair_ratios' output."""
    n_zero = int((~used).sum())
    if ratio.size == 0:
        nan = float("nan")
        return IndividualFairness(nan, nan, nan, nan, 0, n_zero, nan)
    return IndividualFairness(float(ratio.mean()), float(np.median(ratio)),
                              float(np.percentile(ratio, 95)), float(ratio.max()),
                              int(ratio.size), n_zero, float(dout.mean()))


def individual_fairness(outputs: np.ndarray, a: np.ndarray, b: np.ndarray,
                        distance: np.ndarray, metric: str = "tv",
                        *, max_block: int = 1 << 24) -> IndividualFairness:
    """I(f) over pairs (a[i], b[i]) (row indices into outputs [N, K]) with input distances."""
    return summarise_ratios(*pair_ratios(outputs, a, b, distance, metric, max_block=max_block))
