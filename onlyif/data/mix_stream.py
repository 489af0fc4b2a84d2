"""``mode: stream`` of ``onlyif mix``: a pure ratio mixture written as it is read, never materialized.

For mixtures without dedup or core-set selection. Each source is read and sent through the record step as in
``mode: select``; a one-actor step per source keeps its first ``count`` usable rows in read order and counts the
rest, writing them into the build's temp folder on the driver's node (one Ray Data pass over all sources: memory
is bounded by its streaming buffers, not by the data). The per-source counts and the quarantined and
contaminated rows go to one ledger actor on the driver's node; the side reports are written from it as in
``mode: select`` (it holds those rows only, never the mixture's). Then one task on that node writes the mixture's
files, ``rows_per_file`` rows each, reading the sources' rows back a batch at a time and spreading each source
evenly through the output (:mod:`onlyif.mixing.interleave`).

Same config ⇒ same bytes: the row order depends on the sources' row counts only, not on ``num_blocks``, block
boundaries or timing. Rows are not shuffled: a trainer shuffles each epoch; shuffle a source beforehand if its
order matters. The sources' copy of the kept rows is deleted file by file as the mixture's files are written: the
build's temp folder holds them about once, plus one block's file per source.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.data import ActorPoolStrategy

from onlyif.data.blocks import on_this_node
from onlyif.data.mix_output import join_jsonl_parts
from onlyif.data.mix_reports import STATUSES, write_reports
from onlyif.io import sha256_file, write_jsonl
from onlyif.mixing.interleave import next_sources
from onlyif.mixing.records import CONTAMINATED, OK, QUARANTINED, output_schema, process_batch

SOURCES_DIR = ".sources"  # each source's kept rows, in the build's temp folder until the mixture is written
READ_BATCH_ROWS = 4096


@ray.remote(num_cpus=0)
class _Ledger:
    """Counts, first parse problem and side rows of every source, one entry per (source, block sequence number)."""

    def __init__(self, nsrc: int):
        self.nsrc = nsrc
        self.blocks: dict[tuple[int, int], tuple] = {}

    def add(self, src: int, seq: int, counts, problem, quarantined: pa.Table, contaminated: pa.Table) -> None:
        self.blocks[(src, seq)] = (counts, problem, ray.put(quarantined), ray.put(contaminated))

    def summary(self) -> tuple[np.ndarray, list[str | None], list, list]:
        counts = np.zeros((self.nsrc, len(STATUSES) + 1), dtype=np.int64)
        first: list[str | None] = [None] * self.nsrc
        quarantined, contaminated = [], []
        for (src, _), (c, problem, q, k) in sorted(self.blocks.items()):
            counts[src] += c
            first[src] = first[src] if first[src] is not None else problem
            quarantined.append(q)
            contaminated.append(k)
        return counts, first, quarantined, contaminated


class _KeepFirst:
    """One source's blocks in read order (one actor on the driver's node, ``preserve_order``): keep the first ``n``
    usable rows, write each block's into ``folder`` (file names in read order), send the block's counts and side
    rows to the ledger; returns one row (source, kept rows)."""

    def __init__(self, src: int, n: int, ledger, folder: str):
        self.src, self.n, self.ledger, self.folder = src, n, ledger, Path(folder)
        self.seq = self.kept = 0

    def __call__(self, block: pa.Table) -> pa.Table:
        status = block.column("status").to_numpy(zero_copy_only=False)
        counts = np.array([block.num_rows, *((status == s).sum() for s in STATUSES)], dtype=np.int64)
        bad = np.flatnonzero(status == QUARANTINED)
        problem = block.column("reason")[int(bad[0])].as_py() if len(bad) else None
        quarantined = block.filter(pa.array(status == QUARANTINED)).select(["source", "path", "line", "reason", "raw"])
        contaminated = block.filter(pa.array(status == CONTAMINATED)).select(["id", "source", "reason"])
        ray.get(self.ledger.add.remote(self.src, self.seq, counts, problem, quarantined, contaminated))
        ok = np.flatnonzero(status == OK)[: max(0, self.n - self.kept)]
        if len(ok):
            rows = block.take(pa.array(ok, pa.int64())).select(output_schema().names).cast(output_schema())
            pq.write_table(rows, self.folder / f"{self.seq:09d}.parquet")
        self.seq += 1
        self.kept += len(ok)
        return pa.table({"src": [self.src], "kept": [len(ok)]})


@contextlib.contextmanager
def _preserve_order():
    from ray.data import DataContext

    options = DataContext.get_current().execution_options
    before = options.preserve_order
    options.preserve_order = True
    try:
        yield
    finally:
        options.preserve_order = before


@ray.remote
def _file_info(path: str, split_name: str, with_jsonl: bool) -> dict[str, Any]:
    p = Path(path)
    if with_jsonl:
        write_jsonl(
            p.parent.parent / f".{split_name}.jsonl.{p.stem.removeprefix('part-')}", pq.read_table(p).to_pylist()
        )
    return {"path": f"{split_name}/{p.name}", "rows": pq.ParquetFile(p).metadata.num_rows, "sha256": sha256_file(p)}


def _kept_rows(rs, i: int, n: int, cfg, index, ledger, folder: Path, pinned: dict):
    """Source ``i``'s first ``n`` usable rows written into ``folder`` (record step in tasks, then the one-actor
    keep): a Dataset of one row per block."""
    from onlyif.data.sources import read_source

    records = read_source(rs, cfg.num_blocks).map_batches(
        process_batch,
        fn_kwargs={"src": rs.cfg.model_dump(), "dedup": cfg.dedup.model_dump(), "index": index},
        batch_format="pyarrow",
        batch_size=None,
    )
    folder.mkdir(parents=True)
    with warnings.catch_warnings():  # Ray 2.60 has no named parameters for the last two (pinned < 2.61)
        warnings.simplefilter("ignore", DeprecationWarning)
        return records.map_batches(
            _KeepFirst,
            fn_constructor_kwargs={"src": i, "n": n, "ledger": ledger, "folder": str(folder)},
            batch_format="pyarrow",
            batch_size=None,
            compute=ActorPoolStrategy(size=1),
            num_cpus=0,
            max_restarts=0,  # a restarted actor would forget how many rows it kept: fail instead
            allow_out_of_order_execution=False,  # Ray Data's default lets a later block overtake
            **pinned,
        )


def stream_sources(cfg, resolved: list, index, requested: list[int], tmp: Path) -> tuple[np.ndarray, list]:
    """Keep each source's first ``requested`` usable rows, in read order, in ``tmp/.sources/NNNNN/`` (one Ray Data
    pass over all sources) and write the side reports; returns ``(counts, first problems)`` where ``counts[s]`` =
    rows read, quarantined, filtered, contaminated, ok of source ``s`` (as :func:`census`)."""
    pinned = on_this_node()
    ledger = _Ledger.options(**pinned).remote(len(resolved))
    try:
        with _preserve_order():  # before any Dataset exists: each one keeps the context it was made in
            parts = [
                _kept_rows(rs, i, requested[i], cfg, index, ledger, tmp / SOURCES_DIR / f"{i:05d}", pinned)
                for i, rs in enumerate(resolved)
            ]
            (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]).materialize()  # one row per block
        counts, first, quarantined, contaminated = ray.get(ledger.summary.remote())
        write_reports(tmp, [rs.cfg.name for rs in resolved], quarantined, contaminated, [], len(resolved))
    finally:
        ray.kill(ledger)  # its side rows are written by now, or the build failed
    return counts, first


class _SourceRows:
    """One source's kept rows in read order, from its files (named by block, in read order), a batch at a time;
    each file is deleted once read to its end, so the temp folder never holds the mixture's rows twice over."""

    def __init__(self, folder: Path):
        self.batches = self._read(sorted(folder.glob("*.parquet")))
        self.buffer = output_schema().empty_table()

    @staticmethod
    def _read(files: list[Path]) -> Iterator[pa.RecordBatch]:
        for f in files:
            yield from pq.ParquetFile(f).iter_batches(batch_size=READ_BATCH_ROWS)
            f.unlink()

    def take(self, count: int) -> pa.Table:
        parts = [self.buffer]
        have = self.buffer.num_rows
        while have < count:
            batch = next(self.batches)
            parts.append(pa.Table.from_batches([batch]).cast(output_schema()))
            have += batch.num_rows
        table = pa.concat_tables(parts)
        self.buffer = table.slice(count)
        return table.slice(0, count)


@ray.remote(max_retries=0)
def _interleave(sources: str, kept: list[int], split_dir: str, rows_per_file: int) -> None:
    """Write ``SPLIT/part-XXXXX.parquet``, ``rows_per_file`` rows each (the last may hold fewer), the sources'
    rows in the order of :func:`~onlyif.mixing.interleave.next_sources`; holds one file's rows at a time. Not
    retried when its worker dies: it deletes the sources' files as it reads them (the build fails, nothing is
    written to ``--out``)."""
    readers = [_SourceRows(Path(sources) / f"{i:05d}") for i in range(len(kept))]
    out = Path(split_dir)
    out.mkdir()
    taken, total, k = [0] * len(kept), sum(kept), 0
    while k == 0 or sum(taken) < total:
        size = min(rows_per_file, total - sum(taken))
        src = next_sources(kept, taken, size) if size else np.zeros(0, np.int64)
        per = np.bincount(src, minlength=len(kept))
        grouped = pa.concat_tables([r.take(int(c)) for r, c in zip(readers, per, strict=True)])
        where = np.empty(size, dtype=np.int64)
        where[np.argsort(src, kind="stable")] = np.arange(size)  # output row p is grouped row where[p]
        pq.write_table(grouped.take(pa.array(where)), out / f"part-{k:05d}.parquet")
        taken = [t + int(c) for t, c in zip(taken, per, strict=True)]
        k += 1


def write_interleaved(cfg, kept: list[int], tmp: Path) -> list[dict[str, Any]]:
    """The mixture's files from the kept rows of :func:`stream_sources` (then removed), with their row counts and
    digests (and ``SPLIT.jsonl`` if asked)."""
    pinned = on_this_node()
    split_dir = tmp / cfg.output_split
    ray.get(_interleave.options(**pinned).remote(str(tmp / SOURCES_DIR), kept, str(split_dir), cfg.rows_per_file))
    shutil.rmtree(tmp / SOURCES_DIR)
    paths = sorted(split_dir.glob("part-*.parquet"))
    files = ray.get([_file_info.options(**pinned).remote(str(p), cfg.output_split, cfg.write_jsonl) for p in paths])
    if cfg.write_jsonl:
        join_jsonl_parts(tmp, cfg.output_split, len(paths))
    return files
