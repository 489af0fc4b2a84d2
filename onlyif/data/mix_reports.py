"""A mixture's per-row bookkeeping as Ray tasks: counts per source and status, the ok rows, and the side reports.

:func:`census` turns each work block into a small summary for the driver (counts, first parse problem) and
three tables left in the object store: quarantined rows, contaminated rows and the ok rows' ``id``, exact ``key``
and ``minhash`` with their ``src`` index and ``loc`` (no text: the steps after it need none, and the chosen rows'
text is taken from the work blocks once, at the write). :func:`write_reports` writes ``quarantine.jsonl``,
``decontaminated.jsonl`` and ``duplicates.jsonl``, in the order the files always had: tasks sort parts, the driver
merges them line by line.
"""

from __future__ import annotations

import heapq
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from onlyif.data.blocks import LOC_SHIFT, OUTSIDE_TRIAL, on_this_node
from onlyif.io import write_jsonl
from onlyif.mixing.records import CONTAMINATED, FILTERED, OK, QUARANTINED, work_block

STATUSES = (QUARANTINED, FILTERED, CONTAMINATED, OK)


@ray.remote(num_returns=4, scheduling_strategy=OUTSIDE_TRIAL)
def _census(block: pa.Table, index: int, names: list[str]):
    block = work_block(block)
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
    rows = block.take(pa.array(ok, pa.int64())).select(["id", "key", "minhash"])
    rows = rows.append_column("src", pa.array(src[ok].astype(np.int64)))
    rows = rows.append_column("loc", pa.array((np.int64(index) << LOC_SHIFT) + ok.astype(np.int64)))
    return (counts, first_problem), quarantined, contaminated, rows


def census(blocks: list, names: list[str]) -> tuple[np.ndarray, list[str | None], list, list, list]:
    """``(counts, first problems, quarantined refs, contaminated refs, ok-row refs)`` of the work blocks (the
    ok-row tables: ``id, key, minhash, src, loc``).

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


KINDS = {"exact": 0, "near": 1}
REPORTS = {  # file name → sort key of its rows (given the source order)
    "quarantine.jsonl": lambda o: (
        lambda r: (o[r["source"]], r["path"] or "", r["line"] or 0, r["reason"], r["raw"] or "")
    ),
    "decontaminated.jsonl": lambda o: lambda r: (o[r["source"]], r["id"], r["match"]),
    "duplicates.jsonl": lambda o: lambda r: (KINDS[r["kind"]], o[r["source"]], r["id"]),
}


def _report_rows(report: str, names: list[str], tables: tuple[pa.Table, ...]) -> list[dict[str, Any]]:
    rows = [r for t in tables if t.num_rows for r in t.to_pylist()]
    if report == "decontaminated.jsonl":
        return [{"id": r["id"], "source": r["source"], "match": r["reason"]} for r in rows]
    if report == "duplicates.jsonl":
        return [
            {"id": r["id"], "source": names[r["src"]], "kind": r["kind"], "duplicate_of": r["duplicate_of"]}
            for r in rows
        ]
    return rows


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _write_part(path: str, report: str, names: list[str], *tables: pa.Table) -> dict[str, list[int]]:
    """One sorted part of a report; returns the duplicates it holds per kind and source."""
    rows = sorted(_report_rows(report, names, tables), key=REPORTS[report]({n: i for i, n in enumerate(names)}))
    write_jsonl(path, rows)
    counts = {k: [0] * len(names) for k in KINDS}
    for r in rows if report == "duplicates.jsonl" else ():
        counts[r["kind"]][names.index(r["source"])] += 1
    return counts


def _merge(parts: list[Path], out: Path, key) -> None:
    """Merge sorted jsonl parts into ``out`` line by line (one line per part in memory)."""
    files = [open(p, encoding="utf-8") for p in parts]
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.writelines(heapq.merge(*files, key=lambda line: key(json.loads(line))))
    finally:
        for fh in files:
            fh.close()


def write_reports(
    tmp: Path, names: list[str], quarantined: list, contaminated: list, dropped: list, parts: int
) -> dict[str, list[int]]:
    """Write ``quarantine.jsonl``, ``decontaminated.jsonl`` and ``duplicates.jsonl`` into ``tmp``: tasks on the
    driver's node sort and write up to ``parts`` parts of each, the driver merges them; returns the duplicates
    per kind and source."""
    work = tmp / ".reports"
    work.mkdir()
    task = _write_part.options(**on_this_node())
    pending, merged = [], {}
    for report, tables in zip(REPORTS, (quarantined, contaminated, dropped), strict=True):
        groups = [g for g in np.array_split(np.arange(len(tables)), max(1, min(parts, len(tables)))) if len(g)]
        paths = [work / f"{report}.{i:05d}" for i in range(len(groups))]
        pending += [
            task.remote(str(p), report, names, *(tables[j] for j in g)) for p, g in zip(paths, groups, strict=True)
        ]
        merged[report] = paths
    counts = {k: [0] * len(names) for k in KINDS}
    for part in ray.get(pending):
        for k in KINDS:
            counts[k] = [a + b for a, b in zip(counts[k], part[k], strict=True)]
    order = {n: i for i, n in enumerate(names)}
    for report, paths in merged.items():
        _merge(paths, tmp / report, REPORTS[report](order))
    shutil.rmtree(work)
    return counts
