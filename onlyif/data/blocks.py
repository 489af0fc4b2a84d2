"""Plain Ray tasks over Arrow blocks: hash-partition a block, run a task on the driver's node, gather refs.

The mixture steps exchange rows between tasks the classic Ray way (a map task returns one table per partition,
a reduce task takes one partition from every map task), so the driver only ever holds object refs. A row's
``loc`` is ``block index << 32 | row index``: where it lives in the work blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

LOC_SHIFT = 32
# An explicit strategy: inside a Tune trial a plain task would be captured by the trial's placement group (one
# bundle of 0.01 CPU) and could never be scheduled; Ray Data's own tasks escape it the same way.
OUTSIDE_TRIAL = "DEFAULT"


def block_of(loc: np.ndarray) -> np.ndarray:
    return (np.asarray(loc, dtype=np.int64) >> LOC_SHIFT).astype(np.int64)


def row_of(loc: np.ndarray) -> np.ndarray:
    return np.asarray(loc, dtype=np.int64) & ((1 << LOC_SHIFT) - 1)


def split(table: pa.Table, part: np.ndarray, parts: int) -> tuple[pa.Table, ...]:
    """``table`` cut into ``parts`` tables by the partition number of each row (row order kept within one)."""
    part = np.asarray(part, dtype=np.int64)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    sorted_table = table.take(pa.array(order, pa.int64()))
    return tuple(sorted_table.slice(int(lo), int(hi - lo)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True))


def returned(tables: tuple[pa.Table, ...]) -> Any:
    """What a task with ``num_returns=len(tables)`` returns (Ray wants the bare value for one)."""
    return tables if len(tables) > 1 else tables[0]


def refs(result: Any, n: int) -> list:
    """The refs of a task launched with ``num_returns=n`` as a list (Ray gives a bare ref for one)."""
    return list(result) if n > 1 else [result]


def transpose(grid: list[list]) -> list[list]:
    """``grid[i][j]`` → ``[j][i]``: the refs every reducer ``j`` takes from the mappers ``i``."""
    return [list(col) for col in zip(*grid, strict=True)] if grid else []


def on_this_node() -> dict[str, Any]:
    """Task options that pin a task to the driver's node (it writes into the driver's local output folder)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)}


def concat(tables: tuple[pa.Table, ...]) -> pa.Table:
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def text_hash(column: pa.ChunkedArray | pa.Array, parts: int, tail: bool = False) -> np.ndarray:
    """A stable partition number from hex-digest strings (their first, or last, 8 characters)."""
    values = column.to_pylist()
    if not values:
        return np.zeros(0, np.int64)
    raw = np.array([v[-8:] if tail else v[:8] for v in values], dtype="S8")
    return (np.frombuffer(raw.tobytes(), dtype=np.uint64) % np.uint64(parts)).astype(np.int64)
