"""Exact and near dedup of a mixture's ok rows as Ray tasks, with the single-pass rule of :mod:`onlyif.mixing.dedup`.

Blocks in, blocks out (the rows that survive); the driver holds refs only. Exact: rows are hash-partitioned by
their exact key, each partition keeps the first row of a key. Near: every row's LSH band keys are
hash-partitioned, rows sharing a band become linked, the links' connected components are found in one task
(its memory grows with the rows that *have* a near candidate, not with all rows), the candidates' signatures are
sent to their component's partition and :func:`~onlyif.mixing.dedup.near_duplicates` runs per component. The
dropped rows come back as tables (``loc, src, id, duplicate_of, kind``) for the duplicates report.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import ray

from onlyif.data.blocks import OUTSIDE_TRIAL, block_of, concat, refs, returned, split, text_hash, transpose
from onlyif.mixing.dedup import (
    band_edges,
    band_rows,
    components,
    first_of_groups,
    lsh_params,
    near_duplicates_by_component,
    signature_matrix,
)

DROP_COLUMNS = ["loc", "src", "id", "duplicate_of", "kind"]


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _exact_map(block: pa.Table, parts: int):
    t = block.select(["key", "src", "id", "loc"])
    return returned(split(t, text_hash(t.column("key"), parts), parts))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _exact_reduce(nblocks: int, *tables: pa.Table):
    dropped = first_of_groups(concat(tables), "key").drop_columns(["key"])
    dropped = dropped.append_column("kind", pa.array(["exact"] * dropped.num_rows, pa.string())).select(DROP_COLUMNS)
    return returned(split(dropped, block_of(dropped.column("loc").to_numpy()), nblocks))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _without(block: pa.Table, spent: list[str], *dropped: pa.Table) -> pa.Table:
    """``block`` without the dropped rows and without the ``spent`` columns (no later step reads them)."""
    block = block.drop_columns([c for c in spent if c in block.column_names])
    gone = np.concatenate([d.column("loc").to_numpy() for d in dropped] or [np.zeros(0, np.int64)])
    if len(gone) == 0:
        return block
    return block.filter(pa.array(~np.isin(block.column("loc").to_numpy(), gone)))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _band_map(block: pa.Table, bands: int, rows: int, num_perm: int, parts: int):
    sigs = signature_matrix(block.column("minhash"), num_perm)
    table, hashes = band_rows(sigs, block.column("loc").to_numpy(), bands, rows)
    return returned(split(table, hashes % parts, parts))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _band_reduce(*tables: pa.Table) -> pa.Table:
    a, b = band_edges(concat(tables))
    return pa.table({"a": pa.array(a, pa.int64()), "b": pa.array(b, pa.int64())})


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _components(nblocks: int, *edges: pa.Table):
    t = concat(edges)
    nodes, labels = components(t.column("a").to_numpy(), t.column("b").to_numpy())
    table = pa.table({"loc": pa.array(nodes, pa.int64()), "comp": pa.array(labels, pa.int64())})
    return returned(split(table, block_of(nodes), nblocks))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _candidates(block: pa.Table, comps: pa.Table, parts: int):
    # numpy rather than pyarrow.compute here: pc.indices_nonzero crashes on some empty chunked inputs
    nodes, comp = comps.column("loc").to_numpy(), comps.column("comp").to_numpy()
    loc = block.column("loc").to_numpy()
    at = np.minimum(np.searchsorted(nodes, loc), max(len(nodes) - 1, 0))
    rows = np.flatnonzero(nodes[at] == loc) if len(nodes) else np.zeros(0, np.int64)
    t = block.take(pa.array(rows, pa.int64())).select(["src", "id", "loc", "minhash"])
    t = t.append_column("comp", pa.array(comp[at[rows]], pa.int64()))
    return returned(split(t, comp[at[rows]] % parts, parts))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _resolve(threshold: float, num_perm: int, nblocks: int, *tables: pa.Table):
    dropped = near_duplicates_by_component(concat(tables), threshold, num_perm).drop_columns(["comp"])
    dropped = dropped.append_column("kind", pa.array(["near"] * dropped.num_rows, pa.string()))
    return returned(split(dropped.select(DROP_COLUMNS), block_of(dropped.column("loc").to_numpy()), nblocks))


def _drop(blocks: list, per_reducer: list[list], spent: list[str]) -> tuple[list, list]:
    """New blocks without the dropped rows and the ``spent`` columns, and the dropped tables (one ref per reducer
    and block)."""
    by_block = transpose(per_reducer)
    survivors = [_without.remote(b, spent, *d) for b, d in zip(blocks, by_block, strict=True)]
    return survivors, [r for d in by_block for r in d]


def exact_dedup(blocks: list, parts: int) -> tuple[list, list]:
    """``(surviving blocks, dropped-row tables)``: of rows with equal exact key the first in (src, id) is kept;
    the surviving blocks no longer carry ``key``."""
    n = len(blocks)
    mapped = [refs(_exact_map.options(num_returns=parts).remote(b, parts), parts) for b in blocks]
    reduced = [refs(_exact_reduce.options(num_returns=n).remote(n, *col), n) for col in transpose(mapped)]
    return _drop(blocks, reduced, ["key"])


def near_dedup(blocks: list, threshold: float, num_perm: int, parts: int) -> tuple[list, list]:
    """``(surviving blocks, dropped-row tables)`` of the MinHash-LSH rule, identical to one sequential pass; the
    surviving blocks no longer carry ``key`` or ``minhash``."""
    n = len(blocks)
    bands, rows = lsh_params(threshold, num_perm)
    mapped = [
        refs(_band_map.options(num_returns=parts).remote(b, bands, rows, num_perm, parts), parts) for b in blocks
    ]
    edges = [_band_reduce.remote(*col) for col in transpose(mapped)]
    comps = refs(_components.options(num_returns=n).remote(n, *edges), n)
    cands = [
        refs(_candidates.options(num_returns=parts).remote(b, c, parts), parts)
        for b, c in zip(blocks, comps, strict=True)
    ]
    reduced = [
        refs(_resolve.options(num_returns=n).remote(threshold, num_perm, n, *col), n) for col in transpose(cands)
    ]
    return _drop(blocks, reduced, ["key", "minhash"])


def dedup_parts(nblocks: int, cpus: int) -> int:
    """Hash partitions of the exchanges: enough to keep every CPU busy, never more than the blocks need."""
    return int(np.clip(2 * cpus, 1, max(1, nblocks)))
