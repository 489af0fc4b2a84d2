"""Greedy k-center (farthest-point) selection, the core-set method of the paper's generalist setup.

Each pick is the point farthest from the centers chosen so far (Gonzalez' 2-approximation). Exact greedy needs,
per pick, the distance from the new center to every point: an n×d mat-vec. :func:`k_center` avoids most of it
with a lower bound from a PCA projection: for an orthonormal basis P and residual norms r,
``‖x−c‖² ≥ ‖Px−Pc‖² + (r_x − r_c)²``, so only points whose bound is below their current distance get the
exact d-dimensional distance. It returns the same picks as :func:`k_center_naive` (the reference), at a cost
per pick of an n×m mat-vec (m = 32) plus the few exact distances. BLAS runs single-threaded here: a mat-vec is
memory-bound and multi-threaded BLAS only adds contention on a small shared machine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits


def _first_center(n: int, seed: int) -> int:
    return int(np.random.default_rng(seed).integers(n))


def _sqdist(x: np.ndarray, sq: np.ndarray, c: int) -> np.ndarray:
    return np.maximum(sq - 2.0 * (x @ x[c]) + sq[c], 0.0)


def k_center_naive(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``min(k, n)`` greedy k-center picks in pick order (reference: one n×d mat-vec per pick)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    sq = np.einsum("ij,ij->i", x, x)
    picks = np.empty(k, dtype=np.int64)
    picks[0] = _first_center(n, seed)
    mind = np.full(n, np.inf, dtype=np.float32)
    with threadpool_limits(1):
        for j in range(1, k):
            np.minimum(mind, _sqdist(x, sq, int(picks[j - 1])), out=mind)
            mind[picks[:j]] = -1.0  # never pick a point twice (matters only for duplicate points)
            picks[j] = np.argmax(mind)
    return picks


def k_center(
    x: np.ndarray, k: int, seed: int = 0, dims: int = 32, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Indices of ``min(k, n)`` greedy k-center picks in pick order (projection-pruned, float32).

    ``dims``: size of the PCA basis used for the lower bound (fit on a 4096-row sample). ``progress(j)`` is
    called every 256 picks. Exact duplicates are picked only after every distinct point.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    picks = np.empty(k, dtype=np.int64)
    picks[0] = _first_center(n, seed)
    with threadpool_limits(1):
        sq = np.einsum("ij,ij->i", x, x)
        sample = x[np.sort(rng.choice(n, min(n, 4096), replace=False))]
        _, _, vt = np.linalg.svd(sample - sample.mean(0), full_matrices=False)
        p = np.ascontiguousarray(x @ vt[: min(dims, d)].T)
        psq = np.einsum("ij,ij->i", p, p)
        resid = np.sqrt(np.maximum(sq - psq, 0.0))
        mind = _sqdist(x, sq, int(picks[0])).astype(np.float32)
        mind[picks[0]] = -1.0  # picked points are marked -1 so that duplicates are never picked twice
        for j in range(1, k):
            c = int(np.argmax(mind))
            picks[j] = c
            bound = psq - 2.0 * (p @ p[c]) + psq[c]
            bound += (resid - resid[c]) ** 2
            cand = np.flatnonzero(bound < mind * (1 + 1e-4) + 1e-6)
            if len(cand) > n // 8:  # weak pruning (near-isotropic data): a full mat-vec beats gathering rows
                dist = _sqdist(x, sq, c)[cand]
            else:
                dist = np.maximum(sq[cand] - 2.0 * (x[cand] @ x[c]) + sq[c], 0.0)
            closer = dist < mind[cand]
            mind[cand[closer]] = dist[closer]
            mind[c] = -1.0
            if progress is not None and j % 256 == 0:
                progress(j)
    return picks
