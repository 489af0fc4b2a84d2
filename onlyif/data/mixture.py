"""Build a budgeted mixture of real instruction data on Ray: the ``onlyif mix`` job and its Python API.

Steps (each a Ray Data pass or a set of Ray tasks over Arrow blocks; the driver holds object refs, per-source
counts and the k-center picks — never per-row state):

1. read every source (:mod:`onlyif.data.sources`) and run the record step (:mod:`onlyif.mixing.records`):
   normalize, quarantine, filter, flag contamination, exact key and MinHash signature;
2. census (:mod:`onlyif.data.mix_reports`): counts per source and status, the source error checks;
3. exact, then near dedup (:mod:`onlyif.data.mix_dedup`), keeping the first row in (source order, id);
4. sort the survivors by (source, id); choose ranks per source — seeded random, or greedy k-center on embeddings
   held by actors (:mod:`onlyif.data.kcenter_ray`) — with upsampling, and a seeded output order
   (:mod:`onlyif.mixing.select`);
5. write the parquet shards, side files and ``manifest.json`` (:mod:`onlyif.data.mix_output`), atomically.

Late materialization: steps 2–4 move only ids, keys, signatures and row locations; the text stays in the work
blocks of step 1 — as ``messages`` only, ``prompt`` and ``response`` are made from them again — and the chosen
rows' text is taken from them once, for the writers (and, for k-center, the embedding texts once more).

Same config and seed ⇒ byte-identical output, whatever the number of blocks, partitions or nodes.

Over 300 lines because it also holds the check that decides when a cached build reruns (:func:`sources_unchanged`,
used by the sweep's cache, :mod:`onlyif.sweep.datasets`); the steps themselves live in the modules named above.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from onlyif.data.mixture_config import MixtureConfig, SourceConfig
from onlyif.data.sources import ResolvedSource, read_source, resolve_source
from onlyif.errors import ConfigError, OnlyIfError
from onlyif.io import sha256_file
from onlyif.mixing.decontam import HUMANEVAL, NgramIndex, humaneval_path, read_eval_items
from onlyif.mixing.records import CONTAMINATED, FILTERED, QUARANTINED, output_schema, process_batch

log = logging.getLogger(__name__)

TOTALS = (
    "read",
    QUARANTINED,
    FILTERED,
    CONTAMINATED,
    "exact_duplicates",
    "near_duplicates",
    "available",
    "requested",
    "selected",
    "upsampled",
)


def _eval_index(cfg: MixtureConfig) -> tuple[NgramIndex | None, list[dict[str, Any]]]:
    items, info = [], []
    for es in cfg.decontam.eval_sets:
        path = Path(es.path) if es.path else humaneval_path()
        if es.path is None and es.name != HUMANEVAL:
            raise ConfigError(f"decontam.eval_sets[{es.name}].path: required")
        these = read_eval_items(path, es.fields, es.id_field)
        items.extend((i if i.lower().startswith(es.name.lower()) else f"{es.name}/{i}", t) for i, t in these)
        info.append({"name": es.name, "path": str(path), "sha256": sha256_file(path), "items": len(these)})
    return (NgramIndex(items, cfg.decontam.ngram) if items else None), info


def _read_all(cfg: MixtureConfig, resolved: list[ResolvedSource], index: NgramIndex | None):
    """Run the parallel pass; returns refs to the work blocks (Arrow tables of the work schema without
    ``prompt`` and ``response``, which are made again from ``messages`` for the chosen rows)."""
    import ray.data

    dedup = cfg.dedup.model_dump()
    parts = []
    for rs in resolved:
        src = rs.cfg.model_dump()
        ds = read_source(rs, cfg.num_blocks).map_batches(
            process_batch,
            fn_kwargs={"src": src, "dedup": dedup, "index": index, "flat_text": False},
            batch_format="pyarrow",
            batch_size=None,  # whole blocks: keeps one task per source chunk (a row count would bundle chunks)
        )
        parts.append(ds)
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    assert isinstance(ds, ray.data.Dataset)
    return list(ds.materialize().to_arrow_refs())


def _source_error_checks(src: SourceConfig, n: int, bad: int, first_problem: str | None) -> None:
    where = f"sources[{src.name}]"
    if n == 0:
        raise OnlyIfError(f"{where}: the source has no rows")
    if bad == n:
        raise OnlyIfError(f"{where}: no row could be parsed as format {src.format!r} (first problem: {first_problem})")
    if bad > src.max_error_rate * n:
        raise OnlyIfError(
            f"{where}: {bad} of {n} rows could not be parsed, more than max_error_rate {src.max_error_rate:g} "
            f"(first problem: {first_problem})"
        )


def _check_requested(src: SourceConfig, available: int, requested: int) -> None:
    """Refuse (or announce) a request for more rows than the source has left."""
    if requested > available:
        if not src.upsample:
            raise ConfigError(
                f"sources[{src.name}]: asks for {requested} rows but only {available} are available after "
                "quarantine, filters, decontamination and dedup; set upsample: true or ask for fewer"
            )
        log.warning(
            "sources[%s]: upsampling %d rows to %d (x%.2f)", src.name, available, requested, requested / available
        )


def _k_center_picks(cfg: MixtureConfig, src: SourceConfig, available: int, k: int, texts: list, progress: bool):
    """Greedy k-center picks (ranks) among a source's ``available`` rows (``texts``: refs of their embedding
    texts in rank order), on embeddings held by Ray actors."""
    from onlyif.data.embed import embed_in_order
    from onlyif.data.kcenter_ray import k_center_sharded

    log.info("k-center: embedding %d candidates of %s", available, src.name)
    with _no_false_hang_warning():
        emb = embed_in_order(texts, cfg.embed)
    with tqdm(total=k, desc=f"k-center {src.name}", disable=not progress, leave=False) as bar:
        return k_center_sharded(emb, k, seed=cfg.seed, progress=lambda j: bar.update(j - bar.n))


@contextlib.contextmanager
def _no_false_hang_warning() -> Iterator[None]:
    """Ray Data warns that a dataset "will hang" when it starts while no CPU is free. The embedding starts while the
    census/dedup/sort tasks still hold the CPUs, and runs once they end: not a hang, so not said."""
    ray_data = logging.getLogger("ray.data.dataset")

    def drop(record: logging.LogRecord) -> bool:
        return "does not have any available CPUs" not in record.getMessage()

    ray_data.addFilter(drop)
    try:
        yield
    finally:
        ray_data.removeFilter(drop)


def _source_stats(counts: np.ndarray, available: int, requested: int, selection: str):
    """A source's counts for the manifest (dedup counts are added once the reports are written): every requested row
    is selected, those beyond ``available`` as upsampled copies."""
    extra = max(requested - available, 0)
    return {
        "read": int(counts[0]),
        QUARANTINED: int(counts[1]),
        FILTERED: int(counts[2]),
        CONTAMINATED: int(counts[3]),
        "available": available,
        "requested": requested,
        "selected": requested,
        "upsampled": extra,
        "upsample_factor": round(requested / available, 6) if extra else 1.0,
        "selection": selection,
    }


def _select(cfg: MixtureConfig, resolved: list[ResolvedSource], index, tmp: Path, lap, progress: bool):
    """``mode: select``: census, dedup, choice of ranks, writing. Returns ``(stats, files, domains)``."""
    from onlyif.data.mix_dedup import dedup_parts, exact_dedup, near_dedup
    from onlyif.data.mix_output import plan_on_ray, sort_by_source_and_id, source_texts, write_chosen
    from onlyif.data.mix_reports import census, write_reports
    from onlyif.ray_utils import cluster_cpus

    names, requested = [s.name for s in cfg.sources], cfg.requested()
    work = _read_all(cfg, resolved, index)
    lap("parallel_pass_s")
    counts, first_problem, quarantined, contaminated, blocks = census(work, names)
    for i, src in enumerate(cfg.sources):
        _source_error_checks(src, int(counts[i, 0]), int(counts[i, 1]), first_problem[i])
    parts = dedup_parts(len(blocks), cluster_cpus())
    dropped: list = []
    if cfg.dedup.exact:
        blocks, gone = exact_dedup(blocks, parts)
        dropped += gone
    if cfg.dedup.near:
        blocks, gone = near_dedup(blocks, cfg.dedup.threshold, cfg.dedup.num_perm, parts)
        dropped += gone
    ordered, block_src, first_rank, available = sort_by_source_and_id(blocks, len(names), parts)
    del blocks
    lap("dedup_s")  # census, dedup and the sort by (source, id): the tasks run as one graph

    stats: dict[str, dict[str, Any]] = {}
    picks: list[np.ndarray | None] = []
    for i, src in enumerate(cfg.sources):
        have, want = int(available[i]), requested[i]
        if want > 0 and have == 0:
            raise OnlyIfError(f"sources[{src.name}]: no rows left after filters, decontamination and dedup")
        _check_requested(src, have, want)
        kcenter = src.selection == "kcenter" and want < have
        texts = source_texts(ordered, block_src, cfg.embed.text, i, work) if kcenter else None
        picks.append(_k_center_picks(cfg, src, have, want, texts, progress) if kcenter else None)
        stats[src.name] = _source_stats(counts[i], have, want, src.selection)
    plan = plan_on_ray([int(a) for a in available], requested, cfg.seed, picks)  # a ref: never in this process
    lap("select_s")
    files, domains = write_chosen(ordered, block_src, first_rank, plan, sum(requested), tmp, cfg, parts, work)
    dups = write_reports(tmp, names, quarantined, contaminated, dropped, parts)
    for i, name in enumerate(names):
        stats[name] |= {"exact_duplicates": dups["exact"][i], "near_duplicates": dups["near"][i]}
    lap("write_s")
    return stats, files, domains


def _stream(cfg: MixtureConfig, resolved: list[ResolvedSource], index, tmp: Path, lap, progress: bool):
    """``mode: stream`` (:mod:`onlyif.data.mix_stream`). Returns ``(stats, files, domains)``."""
    from onlyif.data.mix_stream import stream_sources, write_interleaved

    requested = cfg.requested()
    counts, first_problem = stream_sources(cfg, resolved, index, requested, tmp)
    lap("stream_s")
    stats: dict[str, dict[str, Any]] = {}
    domains: dict[str, int] = {}
    for i, src in enumerate(cfg.sources):
        _source_error_checks(src, int(counts[i, 0]), int(counts[i, 1]), first_problem[i])
        available = int(counts[i, 4])
        if requested[i] > available:
            raise ConfigError(
                f"sources[{src.name}]: asks for {requested[i]} rows but only {available} are available after "
                "quarantine, filters and decontamination (mode: stream cannot upsample); ask for fewer"
            )
        stats[src.name] = _source_stats(counts[i], available, requested[i], "first") | {
            "exact_duplicates": 0,
            "near_duplicates": 0,
        }
        if requested[i]:
            domains[src.domain] = domains.get(src.domain, 0) + requested[i]
    files = write_interleaved(cfg, requested, tmp)
    lap("write_s")
    return stats, files, dict(sorted(domains.items()))


def build_mixture(cfg: MixtureConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Build the mixture described by ``cfg`` into ``out`` and return its manifest.

    ``out`` gets ``SPLIT/part-XXXXX.parquet`` (``SPLIT`` = ``output_split``, default ``train``; columns of
    :func:`~onlyif.mixing.records.output_schema`), ``manifest.json``, ``config.yaml``, ``quarantine.jsonl``,
    ``decontaminated.jsonl``, ``duplicates.jsonl`` and optionally ``SPLIT.jsonl``. Same config and seed ⇒
    byte-identical data files. Nothing is left behind on failure.
    """
    from onlyif.data.mix_output import digest
    from onlyif.io import atomic_dir, ensure_writable_dir, library_versions, write_json_atomic
    from onlyif.ray_utils import init_ray
    from onlyif.redact import redact

    ensure_writable_dir(out, overwrite)
    resolved = [resolve_source(s) for s in cfg.sources]
    index, eval_info = _eval_index(cfg)
    init_ray(progress=progress)
    clock = [time.perf_counter()]
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        timings[name] = round(clock[-1] - clock[-2], 3)

    with atomic_dir(out, overwrite) as tmp:
        build = _stream if cfg.mode == "stream" else _select
        stats, files, domains = build(cfg, resolved, index, tmp, lap, progress)
        rows = sum(f["rows"] for f in files)
        diversity = None
        if cfg.diversity.enabled and rows:
            import pyarrow.parquet as pq

            from onlyif.data.diversity import mixture_diversity

            table = pq.read_table(tmp / cfg.output_split, columns=["prompt", "response", "domain"])
            diversity = mixture_diversity(table, cfg)
        lap("diversity_s")
        (tmp / "config.yaml").write_text(cfg.to_yaml())
        manifest = {
            "kind": "mixture",
            "config_hash": cfg.config_hash(),
            "seed": cfg.seed,
            "budget": cfg.budget,
            "rows": rows,
            "domains": domains,
            "sources": [
                {
                    "name": rs.cfg.name,
                    "domain": rs.cfg.domain,
                    "format": rs.cfg.format,
                    "file_format": rs.file_format,
                    "content": rs.content,
                    **_ordered_stats(stats[rs.cfg.name]),
                }
                for rs in resolved
            ],
            "totals": {k: sum(stats[n][k] for n in stats) for k in TOTALS},
            "decontam": {"ngram": cfg.decontam.ngram, "eval_sets": eval_info},
            "output": {"files": files, "sha256": digest(files), "schema": [f.name for f in output_schema()]},
            "diversity": diversity,
            "config": cfg.to_dict(),
            "timings": timings | {"total_s": round(time.perf_counter() - clock[0], 3)},
            "versions": library_versions("onlyif", "ray", "pyarrow", "numpy", "datasketch", "transformers"),
        }
        manifest = redact(manifest)  # paths and URIs in it are shown to others: no credentials
        write_json_atomic(tmp / "manifest.json", manifest)
    return manifest


def _ordered_stats(st: dict[str, Any]) -> dict[str, Any]:
    """A source's counts in the manifest's key order."""
    return {k: st[k] for k in (*TOTALS, "upsample_factor", "selection")}


def sources_unchanged(cfg: MixtureConfig, manifest: dict[str, Any]) -> bool:
    """Whether ``cfg``'s sources still have the content (files' sha256, hub ids) the mixture of ``manifest`` read."""
    return [resolve_source(s).content for s in cfg.sources] == [s["content"] for s in manifest["sources"]]
