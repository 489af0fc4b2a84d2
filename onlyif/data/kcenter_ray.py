"""Greedy k-center over embeddings that stay in the Ray object store: :func:`k_center_sharded`.

The embeddings are split into contiguous shards, each held by one actor (a
:class:`~onlyif.mixing.kcenter.KCenterShard`); the driver never fetches them. Per pick the driver sends the new
center (one row and its projection) to every actor and gets back each shard's farthest row with that row's
center data: one round trip, O(shards·d) bytes, and per shard the same projection-pruned update as
:func:`~onlyif.mixing.kcenter.k_center` (an n_shard×32 mat-vec plus the few exact distances). The picks are
exactly those of :func:`~onlyif.mixing.kcenter.k_center` (same first center, PCA sample and basis, ties to the
lowest global row).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import ray

from onlyif.data.blocks import OUTSIDE_TRIAL
from onlyif.mixing.kcenter import Center, KCenterShard, first_center, k_center, pca_basis, pca_sample_rows

SHARD_BYTES = 1 << 30  # default shard size: embeddings up to 1 GiB run in one task, without per-pick round trips
ACTOR_CPUS = 0.5  # per shard actor, at most: less when fewer CPUs are free, so that starting never waits on them


class _ShardActor:
    """Holds one contiguous run of embedding blocks (fetched here, never by the driver)."""

    def __init__(self, refs: list):
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(1)  # for the actor's lifetime
        parts = [np.asarray(b, dtype=np.float32) for b in ray.get(refs)]
        if not parts:
            self.x = np.zeros((0, 0), dtype=np.float32)
        elif len(parts) == 1:
            self.x = np.ascontiguousarray(parts[0])
        else:
            self.x = np.concatenate(parts)
        self.offset = 0
        self.shard: KCenterShard | None = None

    def size(self) -> tuple[int, int]:
        return self.x.shape[0], (self.x.shape[1] if self.x.ndim == 2 else 0)

    def rows(self, local: np.ndarray) -> np.ndarray:
        return self.x[local]

    def fit(self, basis: np.ndarray, offset: int) -> None:
        x = self.x if len(self.x) else np.zeros((0, basis.shape[1]), dtype=np.float32)
        self.shard, self.offset = KCenterShard(x, basis), offset
        self.x = self.shard.x

    def center(self, global_index: int) -> Center:
        return self.shard.center(global_index - self.offset)

    def add_center(self, c: Center, global_index: int) -> tuple[float, int, Center | None]:
        local = global_index - self.offset
        value, best = self.shard.add_center(c, local if 0 <= local < len(self.shard) else None)
        if best < 0:
            return value, -1, None
        return value, self.offset + best, self.shard.center(best)


def _check_widths(widths: set[int]) -> None:
    if len(widths) > 1:
        raise ValueError(f"k_center_sharded: blocks differ in width: {sorted(widths)}")


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _nbytes(block: np.ndarray) -> int:
    return int(np.asarray(block).nbytes)


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _k_center_task(k: int, seed: int, dims: int, *blocks: np.ndarray) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        parts = [np.asarray(b, dtype=np.float32) for b in blocks if len(b)]
        _check_widths({p.shape[1] for p in parts})
        return k_center(np.concatenate(parts), k, seed=seed, dims=dims) if parts else np.zeros(0, dtype=np.int64)


def _actor_cpus(shards: int) -> float:
    free = ray.available_resources().get("CPU", 0.0)
    return min(ACTOR_CPUS, math.floor(100 * free / shards) / 100)


def k_center_sharded(
    blocks: Sequence[Any],
    k: int,
    seed: int = 0,
    dims: int = 32,
    shards: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Global row indices of ``min(k, n)`` greedy k-center picks in pick order, as :func:`k_center` would return
    for the concatenation of ``blocks`` (ObjectRefs to 2-D float32 arrays, in row order).

    ``shards``: number of actors (default: one per ``SHARD_BYTES`` of embeddings, at most one per block); each
    gets a contiguous run of blocks. One shard runs :func:`k_center` in a single task instead (same picks, no
    round trip per pick). ``progress(j)`` is called every 256 picks (only at the end for a single task).
    """
    blocks = list(blocks)
    if k <= 0 or not blocks:
        return np.zeros(0, dtype=np.int64)
    if shards is None:
        nbytes = sum(ray.get([_nbytes.remote(b) for b in blocks]))
        shards = math.ceil(nbytes / SHARD_BYTES)
    shards = max(1, min(shards, len(blocks)))
    if shards == 1:
        picks = ray.get(_k_center_task.remote(k, seed, dims, *blocks))
        if progress is not None:
            progress(len(picks))
        return picks
    actor_cls = ray.remote(_ShardActor).options(num_cpus=_actor_cpus(shards), scheduling_strategy="SPREAD")
    runs = np.array_split(np.arange(len(blocks)), shards)
    actors = [actor_cls.remote([blocks[b] for b in run]) for run in runs]
    try:
        sizes = ray.get([a.size.remote() for a in actors])
        _check_widths({d for m, d in sizes if m})
        starts = np.cumsum([0] + [m for m, _ in sizes])
        n = int(starts[-1])
        k = min(k, n)
        if k == 0:
            return np.zeros(0, dtype=np.int64)

        def owner(i: int) -> int:
            return int(np.searchsorted(starts, i, side="right")) - 1

        picks = np.empty(k, dtype=np.int64)
        picks[0] = c = first_center(n, seed)
        rows = pca_sample_rows(n, seed)
        cuts = np.searchsorted(rows, starts)
        parts = ray.get([a.rows.remote(rows[cuts[s] : cuts[s + 1]] - starts[s]) for s, a in enumerate(actors)])
        basis = ray.put(pca_basis(np.concatenate([p for p in parts if len(p)]), dims))
        ray.get([a.fit.remote(basis, int(starts[s])) for s, a in enumerate(actors)])
        center = ray.get(actors[owner(c)].center.remote(c))
        for j in range(1, k):
            best = (-np.inf, -1, None)
            for value, i, data in ray.get([a.add_center.remote(center, c) for a in actors]):
                if i >= 0 and value > best[0]:  # actors in row order: the first of equals is the lowest row
                    best = (value, i, data)
            _, c, center = best
            picks[j] = c
            if progress is not None and j % 256 == 0:
                progress(j)
        return picks
    finally:
        for a in actors:
            ray.kill(a)
