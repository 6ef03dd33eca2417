"""Pair sets for individual fairness: exact k nearest neighbours and counterfactual twins.

The pairs are built once per dataset split from a model-independent representation, so every
model is judged on the same pairs. Pairs are undirected and unique (i < j): the I(f) ratio is
symmetric, and keeping both (i, j) and (j, i) would weight mutual neighbours twice.
"""

from __future__ import annotations

import numpy as np

DISTANCES = ("rms", "euclidean", "unit")

#: Above this many samples the kNN search bounds each row's k-th distance from a column sample
#: first, so that only a few candidates per row are sorted instead of all N.
_SUBSET = 2048


def _row_topk(score: np.ndarray, k: int, subset: np.ndarray | None) -> np.ndarray:
    """Column indices [R, k] of the k smallest entries per row of `score` (exact).

    With `subset`, the k-th smallest score among those columns bounds the true k-th smallest
    from above, so the true k smallest are among the entries <= that bound; only those
    candidates are sorted.
    """
    r = score.shape[0]
    if subset is None:
        return np.argpartition(score, k - 1, axis=1)[:, :k]
    bound = np.partition(score[:, subset], k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(score <= bound[:, None])
    vals = score[rows, cols]
    order = np.lexsort((cols, vals, rows))
    rows, cols = rows[order], cols[order]
    start = np.searchsorted(rows, np.arange(r))
    rank = np.arange(rows.size) - start[rows]
    keep = rank < k
    return cols[keep].reshape(r, k)


def knn_pairs(x: np.ndarray, k: int, *, max_block: int = 1 << 25) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows by Euclidean distance, as unique pairs (i < j).

    Exact brute force: blocks of rows against all rows with one matrix product each
    (||b||^2 - 2 a.b ranks the same as the squared distance), ranked in float32.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} samples, got {k}")
    sq = np.einsum("ij,ij->i", x, x)
    chunk = max(1, min(n, max_block // n))
    subset = None
    if n > 2 * _SUBSET and k < _SUBSET // 2:
        subset = np.linspace(0, n - 1, _SUBSET).astype(np.int64)
    ia, ib = [], []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        score = x[start:stop] @ x.T
        score *= -2.0
        score += sq[None, :]
        score[np.arange(stop - start), np.arange(start, stop)] = np.inf
        cols = _row_topk(score, k, subset)
        ia.append(np.repeat(np.arange(start, stop), k))
        ib.append(cols.ravel())
    return unique_pairs(np.concatenate(ia), np.concatenate(ib), n)


def unique_pairs(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical undirected pairs: (min, max), duplicates and self-pairs removed, sorted."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    code = np.unique(lo[lo != hi].astype(np.int64) * n + hi[lo != hi])
    return code // n, code % n


def twin_pairs(pose_id: np.ndarray, attribute: np.ndarray, others: list[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Counterfactual twins: pairs that share pose_id and every column in `others` (other
    attributes, the label) and differ in `attribute`, as unique pairs (i < j)."""
    n = pose_id.shape[0]
    key_cols = [np.unique(np.asarray(c), return_inverse=True)[1].ravel() for c in [pose_id, *others]]
    key = np.unique(np.column_stack(key_cols), axis=0, return_inverse=True)[1].ravel()
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group_end = np.repeat(starts + sizes, sizes)
    pos = np.arange(n)
    partners = group_end - pos - 1
    first = np.repeat(pos, partners)
    offset = np.arange(first.size) - np.repeat(np.cumsum(partners) - partners, partners)
    second = first + 1 + offset
    a, b = order[first], order[second]
    attr = np.asarray(attribute)
    differ = attr[a] != attr[b]
    return unique_pairs(a[differ], b[differ], n)


def pair_distances(x: np.ndarray, a: np.ndarray, b: np.ndarray, distance: str = "rms",
                   *, max_block: int = 1 << 24) -> np.ndarray:
    """Distance of each pair in representation x [N, D], computed exactly in float64.

    rms: Euclidean / sqrt(D), i.e. the root-mean-square per-feature difference (for pixels in
    [0, 1], the RMS pixel difference, comparable across image sizes); euclidean: plain L2;
    unit: 1 for every pair (the ratio becomes the plain output difference).
    """
    if distance == "unit":
        return np.ones(a.shape[0])
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; expected one of {DISTANCES}")
    d = x.shape[1]
    out = np.empty(a.shape[0])
    step = max(1, max_block // max(d, 1))
    for s in range(0, a.shape[0], step):
        diff = x[a[s:s + step]].astype(np.float64) - x[b[s:s + step]]
        out[s:s + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out / np.sqrt(d) if distance == "rms" else out
