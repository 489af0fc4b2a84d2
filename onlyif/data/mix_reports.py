"""A mixture's per-row bookkeeping as Ray tasks: counts per source and status, the ok rows, and the side reports.

:func:`census` turns each work block into a small summary for the driver (counts, first parse problem) and
three tables left in the object store: quarantined rows, contaminated rows and the ok rows (with their ``src``
index and ``loc``). :func:`write_reports` writes ``quarantine.jsonl``, ``decontaminated.jsonl`` and
``duplicates.jsonl`` in one task on the driver's node, in the order the files always had.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from onlyif.data.blocks import LOC_SHIFT, OUTSIDE_TRIAL, concat, on_this_node
from onlyif.data.mix_output import write_jsonl_rows
from onlyif.mixing.records import CONTAMINATED, FILTERED, OK, QUARANTINED, output_schema

STATUSES = (QUARANTINED, FILTERED, CONTAMINATED, OK)


@ray.remote(num_returns=4, scheduling_strategy=OUTSIDE_TRIAL)
def _census(block: pa.Table, index: int, names: list[str]):
    src = pc.index_in(block.column("source").combine_chunks(), value_set=pa.array(names)).to_numpy(
        zero_copy_only=False
    )
    status = block.column("status").combine_chunks().to_numpy(zero_copy_only=False)
    counts = np.zeros((len(names), len(STATUSES) + 1), dtype=np.int64)
    counts[:, 0] = np.bincount(src, minlength=len(names))
    for j, s in enumerate(STATUSES, 1):
        counts[:, j] = np.bincount(src[status == s], minlength=len(names))
    reasons = block.column("reason").to_pylist()
    first_problem: list[str | None] = [None] * len(names)
    for i in np.flatnonzero(status == QUARANTINED):
        if first_problem[src[i]] is None:
            first_problem[src[i]] = reasons[i]
    quarantined = block.filter(pa.array(status == QUARANTINED)).select(["source", "path", "line", "reason", "raw"])
    contaminated = block.filter(pa.array(status == CONTAMINATED)).select(["id", "source", "reason"])
    ok = np.flatnonzero(status == OK)
    rows = block.take(pa.array(ok, pa.int64())).select([*output_schema().names, "key", "minhash"])
    rows = rows.append_column("src", pa.array(src[ok].astype(np.int64)))
    rows = rows.append_column("loc", pa.array((np.int64(index) << LOC_SHIFT) + ok.astype(np.int64)))
    return (counts, first_problem), quarantined, contaminated, rows


def census(blocks: list, names: list[str]) -> tuple[np.ndarray, list[str | None], list, list, list]:
    """``(counts, first problems, quarantined refs, contaminated refs, ok-row refs)`` of the work blocks.

    ``counts[s]`` = rows read, quarantined, filtered, contaminated, ok of source ``s``; the first problem of a
    source is its first quarantined row's reason in read order.
    """
    out = [_census.remote(b, i, names) for i, b in enumerate(blocks)]
    summaries = ray.get([o[0] for o in out])
    counts = sum((c for c, _ in summaries), np.zeros((len(names), len(STATUSES) + 1), dtype=np.int64))
    first: list[str | None] = [None] * len(names)
    for _, problems in summaries:
        first = [f if f is not None else p for f, p in zip(first, problems, strict=True)]
    return counts, first, [o[1] for o in out], [o[2] for o in out], [o[3] for o in out]


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _write_reports(tmp: str, names: list[str], nq: int, nc: int, *tables: pa.Table) -> dict[str, list[int]]:
    order = {n: i for i, n in enumerate(names)}
    quarantine = sorted(
        concat(tables[:nq]).to_pylist(),
        key=lambda r: (order[r["source"]], r["path"] or "", r["line"] or 0, r["reason"], r["raw"] or ""),
    )
    write_jsonl_rows(Path(tmp) / "quarantine.jsonl", quarantine)
    contaminated = sorted(
        (
            {"id": r["id"], "source": r["source"], "match": r["reason"]}
            for r in concat(tables[nq : nq + nc]).to_pylist()
        ),
        key=lambda r: (order[r["source"]], r["id"], r["match"]),
    )
    write_jsonl_rows(Path(tmp) / "decontaminated.jsonl", contaminated)
    dropped = [t for t in tables[nq + nc :] if t.num_rows]
    rows = concat(tuple(dropped)).to_pylist() if dropped else []
    kinds = {"exact": 0, "near": 1}
    rows.sort(key=lambda r: (kinds[r["kind"]], r["src"], r["id"]))
    write_jsonl_rows(
        Path(tmp) / "duplicates.jsonl",
        [
            {"id": r["id"], "source": names[r["src"]], "kind": r["kind"], "duplicate_of": r["duplicate_of"]}
            for r in rows
        ],
    )
    counts = {k: [0] * len(names) for k in kinds}
    for r in rows:
        counts[r["kind"]][r["src"]] += 1
    return counts


def write_reports(tmp: Path, names: list[str], quarantined: list, contaminated: list, dropped: list) -> dict[str, Any]:
    """Write the three side files into ``tmp``; returns the duplicates per kind and source."""
    task = _write_reports.options(**on_this_node())
    return ray.get(
        task.remote(str(tmp), names, len(quarantined), len(contaminated), *quarantined, *contaminated, *dropped)
    )
