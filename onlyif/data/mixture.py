"""Build a budgeted mixture of real instruction data with Ray Data: the ``onlyif mix`` job and its Python API.

Pipeline: read every source (:mod:`onlyif.data.sources`) → one parallel ``map_batches`` pass that normalizes
records, quarantines unparseable ones, applies filters, flags eval-set contamination and computes the exact
key and MinHash signature of each row → (driver, on compact columns, in a fixed order) exact and near dedup,
per-source selection (random or k-center on embeddings computed on an actor pool), upsampling, a seeded
shuffle → parquet shards, side files and ``manifest.json``, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from onlyif.data.mixture_config import MixtureConfig, SourceConfig
from onlyif.data.sources import ResolvedSource, read_source, resolve_source
from onlyif.errors import ConfigError, OnlyIfError
from onlyif.io import sha256_file
from onlyif.mixing.budget import upsample_plan
from onlyif.mixing.decontam import HUMANEVAL, NgramIndex, humaneval_path, read_eval_items
from onlyif.mixing.dedup import exact_duplicates, minhash_signatures, near_duplicates
from onlyif.mixing.kcenter import k_center
from onlyif.mixing.normalize import RecordError, normalize_record
from onlyif.mixing.text import exact_key

log = logging.getLogger(__name__)

OK, QUARANTINED, FILTERED, CONTAMINATED = "ok", "quarantined", "filtered", "contaminated"


def output_schema():
    """Arrow schema of the mixture rows (the contract with the trainer)."""
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("domain", pa.string()),
            ("messages", pa.list_(message)),
            ("prompt", pa.string()),
            ("response", pa.string()),
        ]
    )


def _work_schema():
    import pyarrow as pa

    extra = [
        ("status", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),
        ("path", pa.string()),
        ("line", pa.int64()),
        ("key", pa.string()),
        ("minhash", pa.binary()),
    ]
    return pa.schema(list(output_schema()) + extra)


def _raw_text(record: Any) -> str:
    return record if isinstance(record, str) else json.dumps(record, ensure_ascii=False, default=str)


def process_batch(table, src: dict[str, Any], dedup: dict[str, Any], index: NgramIndex | None):
    """Normalize, quarantine, filter, flag contamination and sign one batch of raw records (pure w.r.t. Ray)."""
    import pyarrow as pa

    rows = []
    for rec in table.to_pylist():
        out = {"source": src["name"], "domain": src["domain"], "path": rec.get("_path"), "line": rec.get("_line")}
        if "_text" in rec:
            if rec["_error"] is not None:
                rows.append(out | {"status": QUARANTINED, "reason": rec["_error"], "raw": None})
                continue
            try:
                record = json.loads(rec["_text"])
            except json.JSONDecodeError as exc:
                rows.append(out | {"status": QUARANTINED, "reason": f"invalid JSON ({exc.msg})", "raw": rec["_text"]})
                continue
        else:  # a typed row (parquet: with its file and row number)
            record = {k: v for k, v in rec.items() if k not in ("_path", "_line")}
        try:
            row = normalize_record(record, src["format"], src["name"], src["domain"], src["columns"])
        except RecordError as exc:
            rows.append(out | {"status": QUARANTINED, "reason": str(exc), "raw": _raw_text(record)})
            continue
        row |= out
        size = len(row["prompt"]) + len(row["response"])
        filters = src["filters"]
        if filters["drop_empty"] and (not row["prompt"].strip() or not row["response"].strip()):
            row |= {"status": FILTERED, "reason": "empty prompt or response"}
        elif size < filters["min_chars"]:
            row |= {"status": FILTERED, "reason": f"shorter than min_chars {filters['min_chars']}"}
        elif filters["max_chars"] is not None and size > filters["max_chars"]:
            row |= {"status": FILTERED, "reason": f"longer than max_chars {filters['max_chars']}"}
        elif index is not None and (hit := index.match(f"{row['prompt']}\n{row['response']}")):
            row |= {"status": CONTAMINATED, "reason": f"{hit[0]}: {hit[1]}"}
        else:
            row |= {"status": OK, "key": exact_key(row["prompt"], row["response"])}
        rows.append(row)
    ok = [r for r in rows if r["status"] == OK]
    if dedup["near"] and ok:
        sigs = minhash_signatures([f"{r['prompt']}\n{r['response']}" for r in ok], dedup["num_perm"], dedup["shingle"])
        for r, s in zip(ok, sigs, strict=True):
            r["minhash"] = s.tobytes()
    schema = _work_schema()
    return pa.Table.from_pylist([{f: r.get(f) for f in schema.names} for r in rows], schema=schema)


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
    """Run the parallel pass; returns the materialized work dataset."""
    import ray.data

    dedup = cfg.dedup.model_dump()
    parts = []
    for rs in resolved:
        src = rs.cfg.model_dump()
        ds = read_source(rs, cfg.num_blocks).map_batches(
            process_batch,
            fn_kwargs={"src": src, "dedup": dedup, "index": index},
            batch_format="pyarrow",
            batch_size=None,  # whole blocks: keeps one task per source chunk (a row count would bundle chunks)
        )
        parts.append(ds)
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    assert isinstance(ds, ray.data.Dataset)
    return ds.materialize()


def _to_table(ds, columns: list[str]):
    import pyarrow as pa
    import ray

    tables = list(ray.get(ds.select_columns(columns).to_arrow_refs()))
    return pa.concat_tables(tables) if tables else None


def _source_error_checks(src: SourceConfig, statuses: list[str], reasons: list[str]) -> None:
    n = len(statuses)
    bad = [r for s, r in zip(statuses, reasons, strict=True) if s == QUARANTINED]
    where = f"sources[{src.name}]"
    if n == 0:
        raise OnlyIfError(f"{where}: the source has no rows")
    if len(bad) == n:
        raise OnlyIfError(f"{where}: no row could be parsed as format {src.format!r} (first problem: {bad[0]})")
    if len(bad) > src.max_error_rate * n:
        raise OnlyIfError(
            f"{where}: {len(bad)} of {n} rows could not be parsed, more than max_error_rate {src.max_error_rate:g} "
            f"(first problem: {bad[0]})"
        )


def _select(
    cfg: MixtureConfig,
    idx: int,
    ids: list[str],
    requested: int,
    texts_of: Callable[[list[str]], list[str]],
    progress: bool,
) -> tuple[list[str], int]:
    """Chosen ids of one source (with repeats when upsampling) and the number of upsampled extra rows."""
    src = cfg.sources[idx]
    rng = np.random.default_rng([cfg.seed, idx])
    available = len(ids)
    if requested <= available:
        if requested == available:
            return list(ids), 0
        if src.selection == "random":
            pick = np.sort(rng.permutation(available)[:requested])
        else:
            from onlyif.data.embed import embed_texts

            log.info("k-center: embedding %d candidates of %s", available, src.name)
            emb = embed_texts(texts_of(ids), cfg.embed, cfg.num_blocks)
            with tqdm(total=requested, desc=f"k-center {src.name}", disable=not progress, leave=False) as bar:
                picks = k_center(emb, requested, seed=cfg.seed, progress=lambda j: bar.update(j - bar.n))
            pick = np.sort(picks)
        return [ids[i] for i in pick], 0
    if not src.upsample:
        raise ConfigError(
            f"sources[{src.name}]: asks for {requested} rows but only {available} are available after quarantine, "
            "filters, decontamination and dedup; set upsample: true or ask for fewer"
        )
    repeats, rest = upsample_plan(requested, available)
    log.warning("sources[%s]: upsampling %d rows to %d (x%.2f)", src.name, available, requested, requested / available)
    extra = np.sort(rng.permutation(available)[:rest])
    chosen = list(ids) * repeats + [ids[i] for i in extra]
    return chosen, requested - available


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


def build_mixture(cfg: MixtureConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Build the mixture described by ``cfg`` into ``out`` and return its manifest.

    ``out`` gets ``SPLIT/part-XXXXX.parquet`` (``SPLIT`` = ``output_split``, default ``train``; columns of
    :func:`output_schema`), ``manifest.json``, ``config.yaml``, ``quarantine.jsonl``, ``decontaminated.jsonl``,
    ``duplicates.jsonl`` and optionally ``SPLIT.jsonl``. Same config and seed ⇒ byte-identical data files. Nothing is left behind on failure.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from onlyif.io import atomic_dir, ensure_writable_dir, library_versions, write_json_atomic
    from onlyif.ray_utils import init_ray

    ensure_writable_dir(out, overwrite)
    resolved = [resolve_source(s) for s in cfg.sources]
    index, eval_info = _eval_index(cfg)
    requested = cfg.requested()
    init_ray(progress=progress)
    clock = [time.perf_counter()]
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        timings[name] = round(clock[-1] - clock[-2], 3)

    work = _read_all(cfg, resolved, index)
    lap("parallel_pass_s")

    meta = _to_table(work, ["id", "source", "status", "reason", "raw", "path", "line", "key", "minhash"])
    cols = {c: meta.column(c).to_pylist() for c in ("id", "source", "status", "reason", "raw", "path", "line", "key")}
    n_rows = len(cols["id"])
    order = {s.name: i for i, s in enumerate(cfg.sources)}
    stats: dict[str, dict[str, Any]] = {}
    for src in cfg.sources:
        rows = [j for j in range(n_rows) if cols["source"][j] == src.name]
        _source_error_checks(src, [cols["status"][j] for j in rows], [cols["reason"][j] for j in rows])
        counted = {s: sum(cols["status"][j] == s for j in rows) for s in (QUARANTINED, FILTERED, CONTAMINATED)}
        stats[src.name] = {"read": len(rows), **counted, "exact_duplicates": 0, "near_duplicates": 0}

    # dedup in a fixed order: config source order, then id (ties are identical rows)
    ok = sorted(
        (j for j in range(n_rows) if cols["status"][j] == OK), key=lambda j: (order[cols["source"][j]], cols["id"][j])
    )
    dup_rows = []
    alive = list(range(len(ok)))
    for kind, enabled in (("exact", cfg.dedup.exact), ("near", cfg.dedup.near)):
        if not enabled:
            continue
        if kind == "exact":
            dropped = exact_duplicates([cols["key"][ok[p]] for p in alive])
        else:
            sig_col = meta.column("minhash")
            sigs = [np.frombuffer(sig_col[ok[p]].as_py(), dtype=np.uint32) for p in alive]
            dropped = near_duplicates(sigs, cfg.dedup.threshold)
        for pos, keep in sorted(dropped.items()):
            j, k = ok[alive[pos]], ok[alive[keep]]
            stats[cols["source"][j]][f"{kind}_duplicates"] += 1
            dup_rows.append(
                {"id": cols["id"][j], "source": cols["source"][j], "kind": kind, "duplicate_of": cols["id"][k]}
            )
        alive = [p for i, p in enumerate(alive) if i not in dropped]

    lap("dedup_s")
    chosen: list[str] = []
    for i, src in enumerate(cfg.sources):
        ids = [cols["id"][ok[p]] for p in alive if cols["source"][ok[p]] == src.name]
        st = stats[src.name]
        st["available"] = len(ids)
        st["requested"] = requested[i]
        if requested[i] > 0 and not ids:
            raise OnlyIfError(f"sources[{src.name}]: no rows left after filters, decontamination and dedup")
        picked, extra = _select(cfg, i, ids, requested[i], lambda sel: _texts(work, sel, cfg.embed.text), progress)
        st |= {
            "selected": len(picked),
            "upsampled": extra,
            "upsample_factor": round(requested[i] / len(ids), 6) if extra else 1.0,
            "selection": src.selection,
        }
        chosen.extend(picked)

    # unique output ids: later copies of a row (upsampling) get #2, #3, ...
    copies: dict[str, int] = {}
    out_ids = []
    for rid in chosen:
        copies[rid] = copies.get(rid, 0) + 1
        out_ids.append(rid if copies[rid] == 1 else f"{rid}#{copies[rid]}")
    perm = np.random.default_rng(cfg.seed).permutation(len(chosen))

    lap("select_s")
    rows_table = _fetch_rows(work, set(chosen))
    pos_of = {rid: i for i, rid in reversed(list(enumerate(rows_table.column("id").to_pylist())))}
    take = pa.array([pos_of[chosen[i]] for i in perm], type=pa.int64())
    table = rows_table.take(take) if len(take) else rows_table.slice(0, 0)
    table = table.set_column(0, "id", pa.array([out_ids[i] for i in perm], pa.string()))

    quarantine = sorted(
        (
            {
                "source": cols["source"][j],
                "path": cols["path"][j],
                "line": cols["line"][j],
                "reason": cols["reason"][j],
                "raw": cols["raw"][j],
            }
            for j in range(n_rows)
            if cols["status"][j] == QUARANTINED
        ),
        key=lambda r: (order[r["source"]], r["path"] or "", r["line"] or 0, r["reason"], r["raw"] or ""),
    )
    contaminated = sorted(
        (
            {"id": cols["id"][j], "source": cols["source"][j], "match": cols["reason"][j]}
            for j in range(n_rows)
            if cols["status"][j] == CONTAMINATED
        ),
        key=lambda r: (order[r["source"]], r["id"], r["match"]),
    )

    lap("fetch_s")
    diversity = None
    if cfg.diversity.enabled and table.num_rows:
        from onlyif.data.diversity import mixture_diversity

        diversity = mixture_diversity(table, cfg)

    lap("diversity_s")
    with atomic_dir(out, overwrite) as tmp:
        (tmp / cfg.output_split).mkdir()
        files = []
        for k, start in enumerate(range(0, max(table.num_rows, 1), cfg.rows_per_file)):
            part = table.slice(start, cfg.rows_per_file)
            path = tmp / cfg.output_split / f"part-{k:05d}.parquet"
            pq.write_table(part, path)
            files.append(
                {"path": f"{cfg.output_split}/{path.name}", "rows": part.num_rows, "sha256": sha256_file(path)}
            )
        if cfg.write_jsonl:
            _write_jsonl(tmp / f"{cfg.output_split}.jsonl", table.to_pylist())
        _write_jsonl(tmp / "quarantine.jsonl", quarantine)
        _write_jsonl(tmp / "decontaminated.jsonl", contaminated)
        _write_jsonl(tmp / "duplicates.jsonl", dup_rows)
        (tmp / "config.yaml").write_text(cfg.to_yaml())
        digest = hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()
        by_domain = pc.value_counts(table.column("domain")).to_pylist() if table.num_rows else []
        manifest = {
            "kind": "mixture",
            "config_hash": cfg.config_hash(),
            "seed": cfg.seed,
            "budget": cfg.budget,
            "rows": table.num_rows,
            "domains": {d["values"]: d["counts"] for d in sorted(by_domain, key=lambda d: d["values"])},
            "sources": [
                {
                    "name": rs.cfg.name,
                    "domain": rs.cfg.domain,
                    "format": rs.cfg.format,
                    "file_format": rs.file_format,
                    "content": rs.content,
                    **stats[rs.cfg.name],
                }
                for rs in resolved
            ],
            "totals": {
                k: sum(stats[n][k] for n in stats)
                for k in (
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
            },
            "decontam": {"ngram": cfg.decontam.ngram, "eval_sets": eval_info},
            "output": {"files": files, "sha256": digest, "schema": [f.name for f in output_schema()]},
            "diversity": diversity,
            "config": cfg.to_dict(),
            "timings": timings | {"total_s": round(time.perf_counter() - clock[0], 3)},
            "versions": library_versions("onlyif", "ray", "pyarrow", "numpy", "datasketch", "transformers"),
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    return manifest


def _keep_ids(table, ids, columns: list[str]):
    import pyarrow.compute as pc

    mask = pc.and_(pc.equal(table.column("status"), OK), pc.is_in(table.column("id"), value_set=ids))
    return table.filter(mask).select(columns)


def _rows_with_ids(work, ids: set[str], columns: list[str]):
    """The given columns of the ok rows whose id is in ``ids``, as one Arrow table (in no particular order)."""
    import pyarrow as pa
    import ray

    ds = work.map_batches(
        _keep_ids,
        fn_kwargs={"ids": pa.array(sorted(ids), pa.string()), "columns": columns},
        batch_format="pyarrow",
        batch_size=None,
    )
    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables(tables) if tables else None


def _texts(work, ids: list[str], which: str) -> list[str]:
    """Embedding texts of the given rows, in the order of ``ids``."""
    t = _rows_with_ids(work, set(ids), ["id", "prompt", "response"])
    found = {}
    for rid, p, r in zip(*(t.column(c).to_pylist() for c in ("id", "prompt", "response")), strict=True):
        found[rid] = p if which == "prompt" else r if which == "response" else f"{p}\n\n{r}"
    return [found[i] for i in ids]


def _fetch_rows(work, ids: set[str]):
    """Output-schema rows of ``ids`` from the work dataset."""
    schema = output_schema()
    t = _rows_with_ids(work, ids, schema.names) if ids else None
    return t.cast(schema) if t is not None else schema.empty_table()


def cached_mixture(cfg: MixtureConfig, cache_dir: str | Path, progress: bool = False) -> tuple[Path, dict]:
    """The mixture of ``cfg`` under ``cache_dir/<config hash[:16]>``, built only if it is not there yet.

    For sweeps: trials with the same mixture config share one finished build. A build whose local source files
    changed since (their sha256 in the manifest) is rebuilt in place rather than reused. Two trials that start
    the same build at once both write identical bytes and the last atomic rename wins; one that finds the
    directory appearing after its check reads that manifest.
    """
    digest = cfg.config_hash()
    out = Path(cache_dir) / digest[:16]

    def cached() -> dict | None:
        path = out / "manifest.json"
        if path.is_file():
            manifest = json.loads(path.read_text())
            if manifest.get("config_hash") == digest:
                return manifest
        return None

    manifest = cached()
    if manifest is not None:
        now = [resolve_source(s).content for s in cfg.sources]
        if now != [s["content"] for s in manifest["sources"]]:
            logging.getLogger(__name__).warning(
                "%s: source files changed since this mixture was built; rebuilding", out
            )
            return out, build_mixture(cfg, out, overwrite=True, progress=progress)
    if manifest is None:
        try:
            manifest = build_mixture(cfg, out, overwrite=False, progress=progress)
        except OnlyIfError:
            manifest = cached()
            if manifest is None:
                raise
    return out, manifest
