"""Which rows a mixture takes: ranks within each source, and where each chosen row goes in the output.

A source's rows are ranked by id (the order dedup used); choices are made on ranks so that they never need the
rows themselves, only their number.
"""

from __future__ import annotations

import numpy as np

from onlyif.mixing.budget import upsample_plan

RANK_BITS = 40  # (source, rank) packed into one int64 key: up to 2^40 rows per source


def chosen_ranks(
    available: int, requested: int, rng: np.random.Generator, picks: np.ndarray | None = None
) -> np.ndarray:
    """Ranks of one source in chosen order (with repeats when upsampling).

    Fewer requested than available: ``picks`` (e.g. k-center's) or a seeded random subset, in rank order. More:
    every rank repeated, then a random remainder (the caller checks that upsampling is allowed).
    """
    if requested <= available:
        if requested == available:
            return np.arange(available, dtype=np.int64)
        chosen = picks if picks is not None else rng.permutation(available)[:requested]
        return np.sort(chosen).astype(np.int64)
    repeats, rest = upsample_plan(requested, available)
    extra = np.sort(rng.permutation(available)[:rest])
    return np.concatenate([np.tile(np.arange(available, dtype=np.int64), repeats), extra])


def output_plan(
    available: list[int], requested: list[int], seed: int, picks: list[np.ndarray | None]
) -> dict[str, np.ndarray]:
    """Where every chosen row goes: arrays ``key`` (source << RANK_BITS | rank, sorted), ``g`` (its position in the
    chosen list: sources in config order) and ``out_pos`` (its row in the output, a seeded permutation).

    Source ``i`` draws its ranks from ``default_rng([seed, i])`` unless ``picks[i]`` gives them (k-center)."""
    ranks = [
        chosen_ranks(a, r, np.random.default_rng([seed, i]), p)
        for i, (a, r, p) in enumerate(zip(available, requested, picks, strict=True))
    ]
    total = sum(len(r) for r in ranks)
    src = np.concatenate([np.full(len(r), i, dtype=np.int64) for i, r in enumerate(ranks)] or [np.zeros(0, np.int64)])
    rank = np.concatenate(ranks or [np.zeros(0, np.int64)]).astype(np.int64)
    del ranks
    perm = np.random.default_rng(seed).permutation(total)
    out_pos = np.empty(total, dtype=np.int64)
    out_pos[perm] = np.arange(total)
    del perm
    key = (src << RANK_BITS) | rank
    order = np.argsort(key, kind="stable")
    return {"key": key[order], "g": order.astype(np.int64), "out_pos": out_pos[order]}


def occurrences(ids: list[str], g: np.ndarray) -> np.ndarray:
    """1 for the first time an id appears in chosen order (``g``), 2 for the second, …"""
    order = np.lexsort((g, np.array(ids, dtype=object))) if len(ids) else np.zeros(0, np.int64)
    sorted_ids = [ids[i] for i in order]
    new = np.array([k == 0 or sorted_ids[k] != sorted_ids[k - 1] for k in range(len(order))], dtype=bool)
    start = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0)) if len(order) else new
    occ = np.empty(len(order), dtype=np.int64)
    occ[order] = np.arange(len(order)) - start + 1
    return occ
