"""Greedy k-center (farthest-point) selection, the core-set method of the paper's generalist setup.

Each pick is the point farthest from the centers chosen so far (Gonzalez' 2-approximation); ties go to the lowest
index. Exact greedy needs, per pick, the distance from the new center to every point: an n×d mat-vec.
:func:`k_center` avoids most of it with a lower bound from a PCA projection: for an orthonormal basis P and
residual norms r, ``‖x−c‖² ≥ ‖Px−Pc‖² + (r_x − r_c)²``, so only points whose bound is below their current
distance get the exact d-dimensional distance. Its cost per pick is an n×m mat-vec (m = 32) plus the few exact
distances. The state lives in :class:`KCenterShard`, one contiguous block of rows, so that
:mod:`onlyif.data.kcenter_ray` can run the same loop over shards held by Ray actors.

Exact distances use one dot product per row (``np.vecdot``), never a BLAS mat-vec: a mat-vec's rounding of a
row depends on where the row sits in the call (its kernel works on groups of rows), which breaks ties between
duplicate rows differently in a gathered subset, a shard and the whole array. With per-row dots every exact
distance is the same bits wherever it is computed, so :func:`k_center`, its sharded form and
:func:`k_center_naive` (the reference) return the same picks. BLAS runs single-threaded here: a mat-vec is
memory-bound and multi-threaded BLAS only adds contention on a small shared machine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

SAMPLE_ROWS = 4096  # rows the PCA basis is fit on

# A center as the shards need it: its row, its projection, squared norm, squared projected norm, residual norm.
Center = tuple[np.ndarray, np.ndarray, np.float32, np.float32, np.float32]


def first_center(n: int, seed: int) -> int:
    return int(np.random.default_rng(seed).integers(n))


def pca_sample_rows(n: int, seed: int) -> np.ndarray:
    """Sorted indices of the (up to 4096) rows the PCA basis is fit on."""
    return np.sort(np.random.default_rng(seed).choice(n, min(n, SAMPLE_ROWS), replace=False))


def pca_basis(sample: np.ndarray, dims: int) -> np.ndarray:
    """Orthonormal rows spanning the top ``dims`` principal directions of ``sample`` (float32, ≤ dims×d)."""
    sample = np.asarray(sample, dtype=np.float32)
    with threadpool_limits(1):
        _, _, vt = np.linalg.svd(sample - sample.mean(0), full_matrices=False)
    return np.ascontiguousarray(vt[: min(dims, sample.shape[1])])


def _sqnorms(x: np.ndarray) -> np.ndarray:
    return np.vecdot(x, x)


def _sqdist(x: np.ndarray, sq: np.ndarray, c: np.ndarray, sq_c: np.float32) -> np.ndarray:
    """Squared distances of the rows of ``x`` to ``c`` (per-row dots: the same bits for a row wherever it sits)."""
    return np.maximum(sq - 2.0 * np.vecdot(x, c) + sq_c, 0.0)


class KCenterShard:
    """One contiguous block of rows and its greedy state: ``mind`` is each row's squared distance to the nearest
    center (``inf`` before the first, -1 once picked, so that duplicates are never picked twice).

    The caller limits BLAS threads (:func:`k_center` and the Ray actors run single-threaded).
    """

    def __init__(self, x: np.ndarray, basis: np.ndarray):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.sq = _sqnorms(self.x)
        self.p = np.ascontiguousarray(self.x @ basis.T)
        self.psq = _sqnorms(self.p)
        self.resid = np.sqrt(np.maximum(self.sq - self.psq, 0.0))
        self.mind = np.full(len(self.x), np.inf, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.x)

    def center(self, i: int) -> Center:
        """What every shard needs to add local row ``i`` as a center."""
        return self.x[i].copy(), self.p[i].copy(), self.sq[i], self.psq[i], self.resid[i]

    def add_center(self, c: Center, local: int | None = None) -> tuple[float, int]:
        """Lower ``mind`` by the distances to center ``c`` (``local``: its row here, if it is one of ours) and
        return this shard's largest ``mind`` and the first row attaining it (``(-inf, -1)`` for an empty shard)."""
        xc, pc, sq_c, psq_c, resid_c = c
        mind = self.mind
        bound = self.psq - 2.0 * (self.p @ pc) + psq_c
        bound += (self.resid - resid_c) ** 2
        cand = np.flatnonzero(bound < mind * (1 + 1e-4) + 1e-6)
        if len(cand) > len(mind) // 8:  # weak pruning (near-isotropic data): all rows beat gathering the candidates
            dist = _sqdist(self.x, self.sq, xc, sq_c)[cand]
        else:
            dist = _sqdist(self.x[cand], self.sq[cand], xc, sq_c)
        closer = dist < mind[cand]
        mind[cand[closer]] = dist[closer]
        if local is not None:
            mind[local] = -1.0
        if not len(mind):
            return -np.inf, -1
        best = int(np.argmax(mind))
        return float(mind[best]), best


def k_center_naive(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``min(k, n)`` greedy k-center picks in pick order (reference: one n×d mat-vec per pick)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    k = max(min(k, n), 0)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    sq = _sqnorms(x)
    picks = np.empty(k, dtype=np.int64)
    picks[0] = first_center(n, seed)
    mind = np.full(n, np.inf, dtype=np.float32)
    with threadpool_limits(1):
        for j in range(1, k):
            c = int(picks[j - 1])
            np.minimum(mind, _sqdist(x, sq, x[c], sq[c]), out=mind)
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
    n = len(x)
    k = max(min(k, n), 0)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    picks = np.empty(k, dtype=np.int64)
    picks[0] = c = first_center(n, seed)
    with threadpool_limits(1):
        shard = KCenterShard(x, pca_basis(x[pca_sample_rows(n, seed)], dims))
        for j in range(1, k):
            _, c = shard.add_center(shard.center(c), c)
            picks[j] = c
            if progress is not None and j % 256 == 0:
                progress(j)
    return picks
