"""Pair sets for individual fairness: exact k nearest neighbours and counterfactual twins.

The pairs are built once per dataset split from a model-independent representation, so every
model is judged on the same pairs. Pairs are undirected and unique (i < j): the I(f) ratio is
symmetric, and keeping both (i, j) and (j, i) would weight mutual neighbours twice.
"""

from __future__ import annotations

import numpy as np

DISTANCES = ("rms", "euclidean", "unit", "cosine")

#: Rows per block of the kNN search: a block pair's distance matrix (16 MB in float32) stays
#: cache-friendly while the matrix product is large enough to run near peak speed.
_BLOCK = 2048


def _sq_dist_block(x: np.ndarray, sq: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Squared Euclidean distances between two row blocks, ||a||^2 + ||b||^2 - 2 a.b (float32)."""
    block = x[rows] @ x[cols].T
    block *= -2.0
    block += sq[rows, None]
    block += sq[None, cols]
    return block


def _below(dist: np.ndarray, bound: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the entries below the bound of their row (axis=1) or column (axis=0).

    flatnonzero on the contiguous mask is an order of magnitude faster than 2-D nonzero.
    """
    mask = dist < (bound[:, None] if axis == 1 else bound[None, :])
    return np.divmod(np.flatnonzero(mask), dist.shape[1])


def _merge(best_d: np.ndarray, best_i: np.ndarray, rows: np.ndarray, cand: np.ndarray,
           cand_d: np.ndarray, k: int) -> None:
    """Merge candidates (row, column index, distance) into the sorted running top-k of rows."""
    if rows.size == 0:
        return
    touched = np.unique(rows)
    all_rows = np.concatenate([np.repeat(touched, k), rows])
    all_i = np.concatenate([best_i[touched].ravel(), cand])
    all_d = np.concatenate([best_d[touched].ravel(), cand_d])
    order = np.lexsort((all_i, all_d, all_rows))
    all_rows, all_i, all_d = all_rows[order], all_i[order], all_d[order]
    start = np.searchsorted(all_rows, touched)
    keep = (np.arange(all_rows.size) - np.repeat(start, np.diff(np.r_[start, all_rows.size]))) < k
    best_i[touched] = all_i[keep].reshape(-1, k)
    best_d[touched] = all_d[keep].reshape(-1, k)


def knn_pairs(x: np.ndarray, k: int, *, block: int = _BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows by Euclidean distance, as unique pairs (i < j).

    Exact brute force over blocks of rows, ranked in float32. Distances are symmetric, so only
    block pairs (I, J) with I <= J are computed (half the matrix products) and each serves the
    rows of both blocks. A row block's own diagonal block, done first, gives every row a running
    k-th distance; later blocks only sort the few entries below it.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} samples, got {k}")
    sq = np.einsum("ij,ij->i", x, x)
    best_d = np.full((n, k), np.inf, dtype=np.float32)
    best_i = np.full((n, k), -1, dtype=np.int64)
    bounds = list(range(0, n, block)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] <= k:  # the last block must hold > k rows
        bounds.pop(-2)
    blocks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    for j, cols in enumerate(blocks):
        diag = _sq_dist_block(x, sq, cols, cols)
        np.fill_diagonal(diag, np.inf)
        r = np.arange(cols.start, cols.stop)
        kk = min(k, diag.shape[0] - 1)
        part = np.argpartition(diag, kk - 1, axis=1)[:, :kk]
        _merge(best_d, best_i, np.repeat(r, kk), part.ravel() + cols.start,
               np.take_along_axis(diag, part, axis=1).ravel(), k)
        for rows in blocks[:j]:
            dist = _sq_dist_block(x, sq, rows, cols)
            ri, ci = _below(dist, best_d[rows, k - 1], axis=1)
            _merge(best_d, best_i, ri + rows.start, ci + cols.start, dist[ri, ci], k)
            ri, ci = _below(dist, best_d[cols, k - 1], axis=0)
            _merge(best_d, best_i, ci + cols.start, ri + rows.start, dist[ri, ci], k)
    a = np.repeat(np.arange(n), k)
    return unique_pairs(a, best_i.ravel(), n)


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
    unit: 1 for every pair (the ratio becomes the plain output difference); cosine: 1 - cos(a, b)
    (0 for two zero vectors, 1 for a zero and a non-zero vector), e.g. for TF-IDF rows.
    """
    if distance == "unit":
        return np.ones(a.shape[0])
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; expected one of {DISTANCES}")
    if distance == "cosine":
        xa, xb = x[a].astype(np.float64), x[b].astype(np.float64)
        na, nb = np.linalg.norm(xa, axis=1), np.linalg.norm(xb, axis=1)
        dot = np.einsum("ij,ij->i", xa, xb)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where((na > 0) & (nb > 0), dot / (na * nb), np.where((na == 0) & (nb == 0), 1.0, 0.0))
        return np.clip(1.0 - cos, 0.0, 2.0)
    d = x.shape[1]
    out = np.empty(a.shape[0])
    step = max(1, max_block // max(d, 1))
    for s in range(0, a.shape[0], step):
        diff = x[a[s:s + step]].astype(np.float64) - x[b[s:s + step]]
        out[s:s + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out / np.sqrt(d) if distance == "rms" else out
