"""Taking a mixture's chosen rows out of the work blocks and writing them, as Ray tasks.

The surviving rows — narrow tables of ``id, src, loc``, no text — are range-partitioned and sorted by (source, id),
so a row's rank (its position among its source's rows) is known from per-block counts. One task draws the chosen
ranks and their output positions (:mod:`onlyif.mixing.select`; the driver passes only counts and any k-center
picks); sorted-block tasks find the chosen rows' ``loc`` and send each to the work block it lives in; work-block
tasks take those rows' output columns (the only time text moves after the parallel pass; ``prompt`` and
``response`` made again from ``messages``, :func:`~onlyif.mixing.records.output_rows`) and send each to the
writer of its output position; repeated ids get ``#2``, ``#3``… in chosen order (a small exchange by id); writer
tasks on the driver's node write ``SPLIT/part-XXXXX.parquet`` (and jsonl parts) for a contiguous run of files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from onlyif.data.blocks import (
    OUTSIDE_TRIAL,
    block_of,
    concat,
    on_this_node,
    refs,
    returned,
    row_of,
    split,
    text_hash,
    transpose,
)
from onlyif.io import sha256_file, write_jsonl
from onlyif.mixing.normalize import HASH_HEX
from onlyif.mixing.records import output_rows, output_schema, work_block
from onlyif.mixing.select import RANK_BITS, occurrences, output_plan


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _range_map(block: pa.Table, nsrc: int, buckets: int):
    """Partition by (source, leading hex digits of the id's hash): partitions in order are (src, id) ranges."""
    t = block.select(["id", "src", "loc"])
    lead = np.array([int(i[-HASH_HEX : -HASH_HEX + 4], 16) for i in t.column("id").to_pylist()], dtype=np.int64)
    part = t.column("src").to_numpy() * buckets + (lead * buckets >> 16)
    return returned(split(t, part, nsrc * buckets))


@ray.remote(num_returns=2, scheduling_strategy=OUTSIDE_TRIAL)
def _range_sort(*tables: pa.Table):
    t = concat(tables).sort_by("id")
    return t, t.num_rows


def sort_by_source_and_id(blocks: list, nsrc: int, buckets: int) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """The surviving rows (``id, src, loc``) in (src, id) order: ``(blocks, source of each block, rank
    of each block's first row within its source, rows per source)``.

    A row id is ``<source>-<16 hex digits of a content hash>`` (:func:`~onlyif.mixing.normalize.row_id`), so
    its hash digits are uniform and range partitions need no sampling: ``buckets`` ranges per source.
    """
    parts = nsrc * buckets
    mapped = [refs(_range_map.options(num_returns=parts).remote(b, nsrc, buckets), parts) for b in blocks]
    out = [_range_sort.remote(*col) for col in transpose(mapped)]
    counts = np.array(ray.get([o[1] for o in out]), dtype=np.int64).reshape(nsrc, buckets)
    first_rank = (np.cumsum(counts, axis=1) - counts).reshape(-1)
    return [o[0] for o in out], np.repeat(np.arange(nsrc), buckets), first_rank, counts.sum(axis=1)


def _output_rows_at(work: pa.Table, loc: pa.ChunkedArray) -> pa.Table:
    """The output rows of one work block at the locations ``loc`` (all in that block), in their order."""
    return output_rows(work_block(work).take(pa.array(row_of(loc.to_numpy()), pa.int64())))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _route(block: pa.Table, nblocks: int):
    """The rows' ``loc`` and position in ``block``, cut by the work block they live in."""
    loc = block.column("loc").to_numpy()
    t = pa.table({"loc": pa.array(loc, pa.int64()), "pos": pa.array(np.arange(len(loc), dtype=np.int64))})
    return returned(split(t, block_of(loc), nblocks))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _texts(work: pa.Table, which: str, *wanted: pa.Table):
    """The embedding text of the ``wanted`` rows of one work block (one ``{pos, text}`` table per request)."""
    out = []
    for w in wanted:
        rows = _output_rows_at(work, w.column("loc"))
        p, r = rows.column("prompt").combine_chunks(), rows.column("response").combine_chunks()
        text = p if which == "prompt" else r if which == "response" else pc.binary_join_element_wise(p, r, "\n\n")
        out.append(pa.table({"pos": w.column("pos"), "text": text}))
    return returned(tuple(out))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _in_order(*pieces: pa.Table) -> pa.Table:
    t = concat(pieces).sort_by("pos")
    return pa.table({"_idx": t.column("pos"), "text": t.column("text")})


def source_texts(blocks: list, src: np.ndarray, which: str, s: int, work: list) -> list:
    """Refs of ``{_idx, text}`` tables: the embedding texts of source ``s`` in rank order, one per sorted block of
    ``blocks`` (their text taken from the ``work`` blocks)."""
    mine = [b for b, bs in zip(blocks, src, strict=True) if bs == s]
    routed = [refs(_route.options(num_returns=len(work)).remote(b, len(work)), len(work)) for b in mine]
    texts = [
        refs(_texts.options(num_returns=len(mine)).remote(w, which, *wanted), len(mine))
        for w, wanted in zip(work, transpose(routed), strict=True)
    ]
    return [_in_order.remote(*pieces) for pieces in transpose(texts)]


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _output_plan(available: list[int], requested: list[int], seed: int, picks: list) -> dict[str, np.ndarray]:
    return output_plan(available, requested, seed, picks)


def plan_on_ray(available: list[int], requested: list[int], seed: int, picks: list) -> ray.ObjectRef:
    """A ref to :func:`onlyif.mixing.select.output_plan`, computed by a task: O(selected) arrays stay off the driver."""
    return _output_plan.remote(available, requested, seed, picks)


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _take_chosen(block, src, first_rank, plan, nblocks, parts):
    """The chosen rows of a sorted block: their ``loc`` and output position cut by work block, and their
    ``id, g, out_pos`` cut by id hash (for numbering repeated ids)."""
    base = (int(src) << RANK_BITS) + int(first_rank)
    lo, hi = np.searchsorted(plan["key"], [base, base + block.num_rows])
    take, g, out_pos = plan["key"][lo:hi] - base, plan["g"][lo:hi], plan["out_pos"][lo:hi]
    rows = block.take(pa.array(take, pa.int64()))
    loc, out_pos = rows.column("loc").to_numpy(), pa.array(out_pos, pa.int64())
    chosen = pa.table({"loc": pa.array(loc, pa.int64()), "out_pos": out_pos})
    names = pa.table({"id": rows.column("id"), "g": pa.array(g, pa.int64()), "out_pos": out_pos})
    return returned(
        split(chosen, block_of(loc), nblocks) + split(names, text_hash(names.column("id"), parts, True), parts)
    )


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _fetch_rows(work: pa.Table, rows_per_file: int, files_per_writer: int, writers: int, *chosen: pa.Table):
    """The output columns of the chosen rows of one work block, with their ``out_pos``, cut by writer."""
    t = concat(chosen)
    rows = _output_rows_at(work, t.column("loc")).append_column("out_pos", t.column("out_pos"))
    return returned(split(rows, t.column("out_pos").to_numpy() // rows_per_file // files_per_writer, writers))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _number(rows_per_file: int, files_per_writer: int, writers: int, *tables: pa.Table):
    t = concat(tables)
    occ = occurrences(t.column("id").to_pylist(), t.column("g").to_numpy())
    t = pa.table({"out_pos": t.column("out_pos"), "occ": pa.array(occ, pa.int64())}).filter(pa.array(occ > 1))
    return returned(split(t, t.column("out_pos").to_numpy() // rows_per_file // files_per_writer, writers))


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _write(tmp: str, split_name: str, files: range, rows_per_file: int, with_jsonl: bool, nrows: int, *tables):
    rows = concat(tables[:nrows]).sort_by("out_pos")
    renamed = concat(tables[nrows:])
    if renamed.num_rows:
        ids = rows.column("id").to_pylist()
        first = files.start * rows_per_file
        for pos, occ in zip(renamed.column("out_pos").to_pylist(), renamed.column("occ").to_pylist(), strict=True):
            ids[pos - first] = f"{ids[pos - first]}#{occ}"
        rows = rows.set_column(0, "id", pa.array(ids, pa.string()))
    rows = rows.select(output_schema().names).cast(output_schema())
    written, domains = [], {}
    for k in files:
        part = rows.slice((k - files.start) * rows_per_file, rows_per_file)
        path = Path(tmp) / split_name / f"part-{k:05d}.parquet"
        pq.write_table(part, path)
        written.append({"path": f"{split_name}/{path.name}", "rows": part.num_rows, "sha256": sha256_file(path)})
        if with_jsonl:
            write_jsonl(Path(tmp) / f".{split_name}.jsonl.{k:05d}", part.to_pylist())
    for d in pc.value_counts(rows.column("domain")).to_pylist() if rows.num_rows else []:
        domains[d["values"]] = domains.get(d["values"], 0) + d["counts"]
    return written, domains


def write_chosen(
    blocks: list,
    src: np.ndarray,
    first_rank: np.ndarray,
    plan: ray.ObjectRef,
    total: int,
    tmp: Path,
    cfg,
    parts: int,
    work: list,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Write the ``total`` chosen rows (``plan``: a ref from :func:`plan_on_ray`; ``blocks``: the sorted blocks,
    their text in the ``work`` blocks) as the output split of ``tmp``; returns the files (path, rows, sha256) in
    order and the rows per domain."""
    per_file = cfg.rows_per_file
    (tmp / cfg.output_split).mkdir()
    if total == 0:
        path = tmp / cfg.output_split / "part-00000.parquet"
        pq.write_table(output_schema().empty_table(), path)
        if cfg.write_jsonl:
            (tmp / f"{cfg.output_split}.jsonl").write_text("")
        return [{"path": f"{cfg.output_split}/{path.name}", "rows": 0, "sha256": sha256_file(path)}], {}
    nfiles = -(-total // per_file)
    per_writer = -(-nfiles // min(nfiles, parts))
    writers = -(-nfiles // per_writer)
    nwork = len(work)
    taken = [
        refs(
            _take_chosen.options(num_returns=nwork + parts).remote(b, src[i], first_rank[i], plan, nwork, parts),
            nwork + parts,
        )
        for i, b in enumerate(blocks)
    ]
    fetched = [
        refs(_fetch_rows.options(num_returns=writers).remote(w, per_file, per_writer, writers, *chosen), writers)
        for w, chosen in zip(work, transpose([t[:nwork] for t in taken]), strict=True)
    ]
    rows_for = transpose(fetched)
    names = transpose([t[nwork:] for t in taken])
    renames = transpose(
        [refs(_number.options(num_returns=writers).remote(per_file, per_writer, writers, *n), writers) for n in names]
    )
    pinned = on_this_node()
    results = ray.get(
        [
            _write.options(**pinned).remote(
                str(tmp),
                cfg.output_split,
                range(w * per_writer, min(nfiles, (w + 1) * per_writer)),
                per_file,
                cfg.write_jsonl,
                len(rows_for[w]),
                *rows_for[w],
                *renames[w],
            )
            for w in range(writers)
        ]
    )
    files = [f for written, _ in results for f in written]
    domains: dict[str, int] = {}
    for _, counts in results:
        for d, c in counts.items():
            domains[d] = domains.get(d, 0) + c
    if cfg.write_jsonl:
        join_jsonl_parts(tmp, cfg.output_split, nfiles)
    return files, dict(sorted(domains.items()))


def join_jsonl_parts(tmp: Path, split_name: str, nfiles: int) -> None:
    """Concatenate the jsonl parts ``.SPLIT.jsonl.XXXXX`` of the output files into ``SPLIT.jsonl``."""
    import shutil

    with open(tmp / f"{split_name}.jsonl", "wb") as out:
        for k in range(nfiles):
            part = tmp / f".{split_name}.jsonl.{k:05d}"
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
            part.unlink()


def digest(files: list[dict[str, Any]]) -> str:
    return hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()
