"""Ray Data shell of the synthetic task: generate every split in parallel seeded chunks, write parquet.

Each chunk (:data:`onlyif.tasks.plan.CHUNK_ROWS` rows) is generated from its own random stream and written as
one part file ``OUT/<split>/part-<chunk>.parquet`` by the Ray task that made it, so the files are byte-identical
whatever the number of Ray blocks or workers. Everything is written into a temp folder that replaces ``OUT`` at
the end (a failed run leaves nothing).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import xxhash

from onlyif.config import save_config
from onlyif.errors import OnlyIfError
from onlyif.io import atomic_dir, library_versions, write_json_atomic, write_text_atomic
from onlyif.ray_errors import error_record, raise_recorded
from onlyif.redact import redact
from onlyif.tasks.config import TaskConfig
from onlyif.tasks.examples import DIGEST, generate_chunk, table_digest
from onlyif.tasks.plan import CHUNK_ROWS, DatasetPlan, build_plan

FORMAT = "onlyif-rewrite/2"
"""/2: parts written uncompressed by default with dictionary encoding only for the low-cardinality columns, and
content digests in XXH3-128 (/1: zstd, dictionary attempted on every column, sha256). Same rows and columns."""

LOCAL_ROWS = CHUNK_ROWS
"""Datasets of at most this many rows (all splits) are generated in this process: starting a Ray Data pipeline
costs more than the work (~1.5 s on 2 cores). The parts are the same bytes either way."""
DICTIONARY_COLUMNS = ["rule_id", "rule_x", "rule_y", "noop", "domain", "k"]
"""Columns written dictionary-encoded (≤ a few thousand distinct values per part); ``input`` and ``output`` are
unique per row and written PLAIN (a dictionary attempt would only cost time and fall back)."""


def write_part(table: Any, path: str | Path, compression: str = "none") -> None:
    """Write one part file: the writer settings are part of the data format (same table ⇒ same bytes)."""
    pq.write_table(
        table,
        path,
        compression=compression,
        use_dictionary=DICTIONARY_COLUMNS,
        write_statistics=["rule_id", "noop", "k"],
    )


def part_name(chunk: int) -> str:
    return f"part-{chunk:05d}.parquet"


_HEAP_KEPT = False
_PLAN_CACHE: dict[str, Any] = {}  # the last plan this worker process fetched, by object id


def _keep_heap_pages() -> None:
    """Let this (Ray worker) process reuse freed heap pages instead of handing them back to the kernel.

    A chunk allocates ~20 MB of numpy temporaries; with glibc's defaults the freed top of the heap is trimmed
    and the next chunk pays page faults on fresh zeroed pages (~7 ms of ~36 ms per 65 536-row chunk). Here
    allocations up to 32 MB come from the heap and up to 128 MB of free heap is kept. Once per process; a no-op
    off glibc.
    """
    global _HEAP_KEPT
    if _HEAP_KEPT:
        return
    _HEAP_KEPT = True
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 128 << 20)


def _write_chunks(batch: dict[str, np.ndarray], plan: Any, root: str, compression: str) -> dict[str, np.ndarray]:
    """Ray Data batch fn: generate and write each chunk of the batch, return its measured stats."""
    import ray

    if isinstance(plan, ray.ObjectRef):  # fetched and unpickled once per worker process, not per chunk
        key = plan.hex()
        if _PLAN_CACHE.get("key") != key:
            _PLAN_CACHE.update(key=key, plan=ray.get(plan))
        plan = _PLAN_CACHE["plan"]
    _keep_heap_pages()
    jobs = zip(batch["split"], batch["chunk"], batch["start"], batch["stop"], strict=True)
    stats = [_write_chunk(plan, root, compression, str(sp), int(c), int(a), int(b)) for sp, c, a, b in jobs]
    return {"stats": np.asarray(stats, dtype=object)}


def _write_chunk(plan: Any, root: str, compression: str, split: str, chunk: int, start: int, stop: int) -> str:
    """Generate and write one chunk; its stats as JSON (an error record if it failed: onlyif.ray_errors)."""
    try:
        table = generate_chunk(plan.splits[split], plan.seed, chunk, start, stop)
    except OnlyIfError as exc:  # handed back as data (onlyif.ray_errors)
        return json.dumps(error_record(exc))
    try:
        write_part(table, Path(root) / split / part_name(chunk), compression)
    except OSError as exc:  # a full disk, a quota: handed back as data too, naming --out on the driver
        reason = os.strerror(exc.errno) if exc.errno else str(exc).splitlines()[0]
        return json.dumps(error_record(OnlyIfError(f"cannot write ({reason})"), write=True))
    counts = table.group_by(["domain", "k"]).aggregate([("noop", "count")]).to_pydict()
    families = {f"{d}/k={k}": c for d, k, c in zip(counts["domain"], counts["k"], counts["noop_count"], strict=True)}
    return json.dumps(
        {
            "split": split,
            "chunk": chunk,
            "rows": table.num_rows,
            "noop": int(np.asarray(table["noop"]).sum()),
            "families": families,
            "digest": table_digest(table),
        }
    )


def combine_digests(part_digests: list[str]) -> str:
    """A split's content digest (:data:`~onlyif.tasks.examples.DIGEST`): over its parts' digests, in part order."""
    return xxhash.xxh3_128("".join(part_digests).encode()).hexdigest()


def split_digest(split_dir: str | Path) -> str:
    """Recompute a written split's content digest from its parquet parts (for verification)."""
    parts = sorted(Path(split_dir).glob("part-*.parquet"))
    return combine_digests([table_digest(pq.read_table(p)) for p in parts])


def _manifest(cfg: TaskConfig, plan: DatasetPlan, stats: list[dict], seconds: float) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for name, sp in plan.splits.items():
        rows = sorted((s for s in stats if s["split"] == name), key=lambda s: s["chunk"])
        n = sum(s["rows"] for s in rows)
        families: Counter = Counter()
        for s in rows:
            families.update(s["families"])
        by_domain: Counter = Counter()
        for key, count in families.items():
            by_domain[key.split("/")[0]] += count
        splits[name] = {
            "rows": n,
            "files": [f"{name}/{part_name(s['chunk'])}" for s in rows],
            "noop_share": sum(s["noop"] for s in rows) / n if n else 0.0,
            "distinct_rules": int(np.count_nonzero(np.bincount(sp.assign, minlength=len(sp.rules)))),
            "rules_available": len(sp.rules),
            "domains": dict(sorted(by_domain.items())),
            "domains_k": dict(sorted(families.items())),
            "digest": combine_digests([s["digest"] for s in rows]),
        }
    return {
        "format": FORMAT,
        "seed": cfg.seed,
        "config_sha256": cfg.config_hash(),
        "chunk_rows": CHUNK_ROWS,
        "digest_algorithm": DIGEST,
        "splits": splits,
        "generation_seconds": round(seconds, 3),
        "versions": library_versions("onlyif", "ray", "numpy", "pyarrow"),
    }


def dataset_card(manifest: dict[str, Any]) -> str:
    """A Hugging Face dataset card whose YAML maps each split folder, so ``datasets.load_dataset(OUT)``
    returns the splits by name (``load_dataset("parquet", data_dir=OUT)`` merges the ``test_*`` folders)."""
    lines = ["---", "configs:", "  - config_name: default", "    data_files:"]
    for name in manifest["splits"]:
        lines += [f"      - split: {name}", f"        path: {name}/*.parquet"]
    lines += ["---", "", "# onlyif synthetic rewrite task", ""]
    lines += [
        "Rules `x → y`, output = input with the leftmost x replaced by y. Built by `onlyif generate`; counts, hashes and versions in `manifest.json`.",
        "",
    ]
    lines += ["| split | rows | distinct rules | no-op share |", "|---|---|---|---|"]
    for name, sp in manifest["splits"].items():
        lines.append(f"| {name} | {sp['rows']} | {sp['distinct_rules']} | {sp['noop_share']:.3f} |")
    return "\n".join(lines) + "\n"


def generate_dataset(
    cfg: TaskConfig,
    out: str | Path,
    overwrite: bool = False,
    num_blocks: int | None = None,
    progress: bool = True,
    compression: str = "none",
    this_node_only: bool = False,
) -> dict[str, Any]:
    """Build every split of ``cfg`` with Ray Data into ``out`` (in this process when it has at most
    ``LOCAL_ROWS`` rows and ``num_blocks`` is not set); return the manifest (also written there).

    ``compression`` is the parquet codec: none (the default: the fastest to write, ~2.6× the size of
    zstd for random letters), zstd, snappy, lz4, gzip or brotli.
    Uses the connected Ray cluster, or starts a local one (``RAY_ADDRESS`` joins an existing cluster; a local
    ``out`` must then be on storage every node sees). An ``s3://…`` ``out`` is built in a folder of this node (the
    Ray tasks that write the parts run here) and published there with ``manifest.json`` last
    (:func:`onlyif.storage.build_at`); ``this_node_only`` pins those tasks here for a local ``out`` only this node
    sees.
    """
    from onlyif.storage import build_at, is_uri

    if is_uri(out):
        args = (num_blocks, progress, compression)
        return build_at(str(out), lambda d: generate_dataset(cfg, d, False, *args, this_node_only=True), overwrite)[1]
    from tqdm.auto import tqdm

    from onlyif.ray_utils import init_ray

    plan = build_plan(cfg)
    jobs = [
        {"split": name, "chunk": c, "start": s, "stop": e}
        for name, sp in plan.splits.items()
        for c, s, e in sp.chunks()
    ]
    local = sum(j["stop"] - j["start"] for j in jobs) <= LOCAL_ROWS and num_blocks is None
    if not local:
        init_ray(progress=False)
    with atomic_dir(out, overwrite) as tmp:
        for name in plan.splits:
            (tmp / name).mkdir()
        start = time.perf_counter()
        if local:
            results = (_write_chunk(plan, str(tmp), compression, **j) for j in jobs)
        else:
            results = _write_on_ray(jobs, plan, tmp, compression, num_blocks, this_node_only)
        stats = []
        with tqdm(total=len(jobs), desc="generate", unit="part", disable=not progress, leave=False) as bar:
            for result in results:
                stat = json.loads(result)
                raise_recorded(stat, f"--out {out}: " if stat.get("write") else "")
                stats.append(stat)
                bar.update(1)
        # like every manifest: shown to others, so no credentials (onlyif.redact)
        manifest = redact(_manifest(cfg, plan, stats, time.perf_counter() - start))
        save_config(cfg, tmp / "config.yaml")
        write_json_atomic(tmp / "manifest.json", manifest)
        write_text_atomic(tmp / "README.md", dataset_card(manifest))
    return manifest


def _write_on_ray(
    jobs: list[dict[str, Any]], plan: DatasetPlan, tmp: Path, compression: str, num_blocks: int | None, here: bool
) -> Iterator[str]:
    """:func:`_write_chunk` of every job as Ray Data tasks (``here``: on this node only); their stats as they come."""
    import ray
    from ray.data import DataContext

    from onlyif.ray_utils import cluster_cpus

    blocks = num_blocks or min(len(jobs), 2 * max(cluster_cpus(), 1))
    # Ray Data reserves part of the cluster per operator by default (op_resource_reservation_ratio 0.5): on
    # a 2-CPU cluster the map ran ONE task at a time (all chunks in one worker). This two-operator pipeline
    # (items -> map, tiny outputs) needs no reservation; the dataset keeps the context it was built with.
    ctx = DataContext.get_current()
    reserve = ctx.op_resource_reservation_enabled
    ctx.op_resource_reservation_enabled = False
    try:
        ds = ray.data.from_items(jobs, override_num_blocks=blocks).map_batches(
            _write_chunks,
            batch_size=1,
            fn_kwargs={"plan": ray.put(plan), "root": str(tmp), "compression": compression},
            label_selector={"ray.io/node-id": ray.get_runtime_context().get_node_id()} if here else None,
        )
    finally:
        ctx.op_resource_reservation_enabled = reserve
    return (row["stats"] for row in ds.iter_rows())
