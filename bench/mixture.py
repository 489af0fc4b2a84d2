"""Benchmark: rows/s of ``onlyif mix`` (Ray Data, 2 CPUs) vs a single-process pandas pipeline of the same steps,
and greedy k-center time for 10⁵ candidates → 10⁴ picks (projection-pruned vs the plain reference).

Input: synthetic instruction rows in two sources (alpaca jsonl, prompt/response parquet) with planted exact
duplicates, near duplicates, malformed lines and HumanEval-contaminated rows. Steps in both pipelines: parse,
normalize, quarantine, filter, decontaminate (HumanEval, 13-grams), exact + MinHash-LSH near dedup, seeded
selection of half the rows, shuffle, parquet. Ray start-up and a small warm-up build are timed separately. Both must agree on every count.

    .venv/bin/python bench/mixture.py [--rows 100000] [--cpus 2] [--picks 10000] [--skip-kcenter]
    .venv/bin/python bench/mixture.py --rss 20000,200000 [--cpus 2] [--budget N] [--stream] [--blocks N]  # driver B/row
    .venv/bin/python bench/mixture.py --scaling 200000 [--repeat 2]  # build time on 1 vs 2 CPUs, alternating

``--rss``: the driver's peak RSS (``VmHWM``) of ``build_mixture`` (a fresh process per size, Ray started in it,
sources made beforehand by the parent) at each row count; the growth between the first and last size per added row is the
driver's memory per input row (goal ≤ 100 bytes); the object store's peak usage and the build folder's peak
size on disk (everything but the sources: the temp folder, then the output) are sampled every 0.5 s.
``--stream``: the same sources as a ``mode: stream`` mixture (no dedup). ``--scaling``: the same fresh-process
build on a local Ray of 1 CPU and of 2 CPUs, alternating, without the object-store sampler (its queries cost CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent.parent))
from onlyif.config import validate_config  # noqa: E402
from onlyif.data.mixture import build_mixture  # noqa: E402
from onlyif.data.mixture_config import MixtureConfig  # noqa: E402
from onlyif.gc_tuning import raise_gc_thresholds  # noqa: E402
from onlyif.mixing.decontam import NgramIndex, humaneval_path, read_eval_items  # noqa: E402
from onlyif.mixing.dedup import exact_duplicates, minhash_signatures, near_duplicates  # noqa: E402
from onlyif.mixing.kcenter import k_center, k_center_naive  # noqa: E402
from onlyif.mixing.normalize import RecordError, normalize_record  # noqa: E402
from onlyif.mixing.text import exact_key  # noqa: E402
from onlyif.ray_utils import init_ray  # noqa: E402

WORDS = [f"{a}{b}{c}" for a in "bcdfgklmnprstvz" for b in "aeiou" for c in "nrstlm"]


def make_sources(root: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    he = [t for _, t in read_eval_items(humaneval_path(), ["prompt", "canonical_solution"], "task_id")]

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    def rowset(n: int) -> list[dict]:
        out = []
        for _ in range(n):
            r = rng.random()
            if out and r < 0.03:  # exact duplicate (case variant)
                prev = rng.choice(out)
                out.append({"instruction": prev["instruction"].upper(), "output": prev["output"]})
            elif out and r < 0.06:  # near duplicate: one word changed
                prev = rng.choice(out)
                w = prev["output"].split()
                w[rng.randrange(len(w))] = "zzz"
                out.append({"instruction": prev["instruction"], "output": " ".join(w)})
            elif r < 0.065:  # contaminated
                out.append({"instruction": "Solve this.", "output": rng.choice(he)})
            else:
                out.append({"instruction": text(rng.randint(8, 30)), "output": text(rng.randint(20, 80))})
        return out

    n_a = int(rows * 0.6)
    lines = [json.dumps(r) for r in rowset(n_a)]
    for i in range(0, len(lines), 200):  # 0.5 % malformed
        lines[i] = lines[i][: len(lines[i]) // 2]
    half = len(lines) // 2
    (root / "a1.jsonl").write_text("\n".join(lines[:half]) + "\n")
    (root / "a2.jsonl").write_text("\n".join(lines[half:]) + "\n")
    b = rowset(rows - n_a)
    pq.write_table(
        pa.table({"prompt": [r["instruction"] for r in b], "response": [r["output"] for r in b]}), root / "b.parquet"
    )


def config(root: Path, rows: int, blocks: int, budget: int | None = None, stream: bool = False) -> MixtureConfig:
    streamed = {"mode": "stream", "dedup": {"exact": False, "near": False}} if stream else {}
    return validate_config(
        MixtureConfig,
        streamed
        | {
            "seed": 0,
            "budget": budget or rows // 2,
            "num_blocks": blocks,
            "sources": [
                {
                    "name": "a",
                    "domain": "general",
                    "path": str(root / "a*.jsonl"),
                    "format": "alpaca",
                    "fraction": 0.6,
                },
                {
                    "name": "b",
                    "domain": "code",
                    "path": str(root / "b.parquet"),
                    "format": "prompt_response",
                    "fraction": 0.4,
                },
            ],
            "decontam": {"eval_sets": [{"name": "humaneval"}], "ngram": 13},
            "diversity": {"enabled": False},
        },
    )


def pandas_pipeline(cfg: MixtureConfig, root: Path, out: Path) -> dict:
    """The same steps in one process with pandas (and the same pure helpers)."""
    index = NgramIndex(
        read_eval_items(humaneval_path(), ["prompt", "canonical_solution"], "task_id"), cfg.decontam.ngram
    )
    frames, counts = [], {}
    for src, want in zip(cfg.sources, cfg.requested(), strict=True):
        if src.name == "a":
            recs = []
            for f in sorted(root.glob("a*.jsonl")):
                recs.extend(pd.read_csv(f, sep="\x01", header=None, names=["line"], quoting=3, dtype=str)["line"])
            raw = pd.Series(recs)

            def parse(line):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    return None

            records = raw.map(parse)
        else:
            records = pd.Series(pd.read_parquet(root / "b.parquet").to_dict("records"))

        def norm(rec, src=src):
            if rec is None:
                return None
            try:
                return normalize_record(rec, src.format, src.name, src.domain, src.columns)
            except RecordError:
                return None

        df = pd.DataFrame([r for r in records.map(norm) if r is not None])
        c = {"read": len(records), "quarantined": len(records) - len(df)}
        df = df[(df.prompt.str.strip() != "") & (df.response.str.strip() != "")]
        hit = (df.prompt + "\n" + df.response).map(lambda t: index.match(t) is not None)
        c["contaminated"] = int(hit.sum())
        df = df[~hit].assign(want=want)
        counts[src.name] = c
        frames.append(df.sort_values("id", kind="stable"))
    df = pd.concat(frames, ignore_index=True)
    df["key"] = [exact_key(p, r) for p, r in zip(df.prompt, df.response, strict=True)]
    dropped = exact_duplicates(df.key.tolist())
    exact = df.iloc[list(dropped)].source.value_counts().to_dict()
    df = df.drop(index=list(dropped)).reset_index(drop=True)
    sigs = minhash_signatures((df.prompt + "\n" + df.response).tolist(), cfg.dedup.num_perm, cfg.dedup.shingle)
    dropped = near_duplicates(list(sigs), cfg.dedup.threshold)
    near = df.iloc[list(dropped)].source.value_counts().to_dict()
    df = df.drop(index=list(dropped))
    picked = [g.sample(n=int(g.want.iloc[0]), random_state=cfg.seed) for _, g in df.groupby("source", sort=True)]
    mix = pd.concat(picked).sample(frac=1.0, random_state=cfg.seed)
    mix[["id", "source", "domain", "messages", "prompt", "response"]].to_parquet(out, index=False)
    for name, c in counts.items():
        c["exact_duplicates"], c["near_duplicates"] = exact.get(name, 0), near.get(name, 0)
    return counts


def bench_kcenter(picks: int, n: int, shards: int = 0) -> None:
    rng = np.random.default_rng(0)
    d = 384
    # structured 384-d unit vectors: 64 clusters on a 24-dim subspace plus isotropic noise
    centers = rng.standard_normal((64, 24)).astype(np.float32)
    z = centers[rng.integers(64, size=n)] + 0.5 * rng.standard_normal((n, 24)).astype(np.float32)
    x = z @ rng.standard_normal((24, d)).astype(np.float32) + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    fast = k_center(x, picks, seed=0)
    t_fast = time.perf_counter() - t
    probe = min(picks, 500)
    t = time.perf_counter()
    ref = k_center_naive(x, probe, seed=0)
    t_probe = time.perf_counter() - t
    t_naive = t_probe * picks / probe  # the reference costs the same per pick: extrapolate linearly
    print(
        f"k-center {n} x {d} -> {picks}: pruned {t_fast:.1f} s; reference ~{t_naive:.0f} s "
        f"(measured {t_probe:.1f} s for {probe} picks); speed-up {t_naive / t_fast:.1f}x; "
        f"first {probe} picks identical: {bool(np.array_equal(fast[:probe], ref))}"
    )
    if shards:
        import ray

        from onlyif.data.kcenter_ray import k_center_sharded

        init_ray(progress=False)
        blocks = [ray.put(b) for b in np.array_split(x, 4 * shards)]
        t = time.perf_counter()
        sharded = k_center_sharded(blocks, picks, seed=0, shards=shards)
        t_sharded = time.perf_counter() - t
        print(
            f"k-center on {shards} Ray actors (embeddings in the object store): {t_sharded:.1f} s "
            f"({t_sharded / picks * 1e3:.1f} ms per pick); picks identical to one process: "
            f"{bool(np.array_equal(sharded, fast))}"
        )


def _plasma_peak(address: str, peak: list[float], stop: threading.Event) -> None:
    """Sample the object store's usage (MiB, all nodes) every 0.5 s into ``peak[0]``."""
    from ray._private.internal_api import memory_summary

    while not stop.wait(0.5):
        m = re.search(r"Plasma memory usage (\d+) MiB", memory_summary(address=address, stats_only=True))
        peak[0] = max(peak[0], float(m.group(1)) if m else 0.0)


def _disk_peak(root: Path, skip: set[str], peak: list[float], stop: threading.Event) -> None:
    """Sample the size (MiB) of everything under ``root`` but the entries in ``skip`` (the sources) every 0.5 s
    into ``peak[0]``: the build's temp folder, then its output."""
    while not stop.wait(0.5):
        peak[0] = max(peak[0], sum(_tree_mb(top) for top in root.iterdir() if top.name not in skip))


def _tree_mb(top: Path) -> float:
    """Size (MiB) of the files under ``top``, while a build may add and remove them."""
    total = 0
    for folder, _, names in os.walk(top):
        for name in names:
            with contextlib.suppress(OSError):  # a file removed while we look
                total += os.stat(os.path.join(folder, name)).st_size
    return total / 2**20


def driver_rss(
    root: Path,
    rows: int,
    cpus: int,
    budget: int | None,
    stream: bool = False,
    blocks: int | None = None,
    sample_store: bool = True,
) -> None:
    """In a fresh process: build the mixture of ``root`` and print the driver's peak RSS (MB) and the time.

    Linux keeps a process's peak RSS across ``exec``, so a child forked from a big parent (the one that just
    made the sources) would report the parent's size: the peak is reset first (``clear_refs`` 5) and read
    from ``VmHWM``.
    """
    import ray

    Path("/proc/self/clear_refs").write_text("5")
    init_ray(num_cpus=cpus, progress=False)
    peak_store, stop = [0.0], threading.Event()
    sampler = threading.Thread(
        target=_plasma_peak, args=(ray.get_runtime_context().gcs_address, peak_store, stop), daemon=True
    )
    peak_disk = [0.0]
    disk = threading.Thread(target=_disk_peak, args=(root, {p.name for p in root.iterdir()}, peak_disk, stop))
    if sample_store:
        sampler.start()
        disk.start()
    t = time.perf_counter()
    cfg = config(root, rows, blocks=blocks or max(2 * cpus, rows // 25_000), budget=budget, stream=stream)
    manifest = build_mixture(cfg, root / "out", overwrite=True, progress=False)
    took = time.perf_counter() - t
    stop.set()
    if sample_store:
        sampler.join()
        disk.join()
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    peak = int(status["VmHWM"].split()[0]) / 1024
    now = {k: status[k].strip() for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem") if k in status}
    now["object_store_peak_mb"] = peak_store[0]
    now["disk_peak_mb"], now["output_mb"] = round(peak_disk[0], 1), round(_tree_mb(root / "out"), 1)
    now["object_store_gb"] = round(ray.cluster_resources().get("object_store_memory", 0) / 2**30, 1)
    print(
        json.dumps(
            {
                "rows": rows,
                "peak_rss_mb": round(peak, 1),
                "seconds": round(took, 1),
                "now": now,
                "timings": manifest["timings"],
                **manifest["totals"],
            }
        )
    )


def bench_scaling(rows: int, repeat: int, blocks: int | None) -> None:
    """Build time of the same mixture on 1 and on 2 CPUs (a fresh process and local Ray each), alternating."""
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        make_sources(Path(tmp), rows)
        for _ in range(repeat):
            for cpus in (1, 2):
                cmd = [sys.executable, __file__, "--driver-rss", tmp, "--rows", str(rows), "--cpus", str(cpus)]
                cmd += ["--no-store-sampler", "--blocks", str(blocks or max(4, rows // 25_000))]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()
                result = json.loads(out[-1])
                times[cpus].append(result["seconds"])
                print(f"{rows:,} rows, {cpus} CPU: build {times[cpus][-1]:.1f} s; {result['timings']}", flush=True)
    one, two = np.mean(times[1]), np.mean(times[2])
    print(f"1 CPU {one:.1f} s, 2 CPUs {two:.1f} s (means of {repeat}): {one / two:.2f}x (goal >= 1.7x)")


def bench_rss(
    sizes: list[int], cpus: int, budget: int | None, stream: bool = False, blocks: int | None = None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for rows in sizes:
            root = Path(tmp) / str(rows)
            root.mkdir()
            make_sources(root, rows)
            cmd = [sys.executable, __file__, "--driver-rss", str(root), "--rows", str(rows), "--cpus", str(cpus)]
            cmd += ["--budget", str(budget)] if budget else []
            cmd += ["--stream"] if stream else []
            cmd += ["--blocks", str(blocks)] if blocks else []
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results.append(json.loads(line))
            r = results[-1]
            print(
                f"{rows:>9,} rows: driver peak RSS {r['peak_rss_mb']:.0f} MB, build {r['seconds']:.1f} s "
                f"({rows / r['seconds']:,.0f} rows/s), selected {r['selected']:,}, object store peak "
                f"{r['now']['object_store_peak_mb']:.0f} MB, build folder peak {r['now']['disk_peak_mb']:.0f} MB "
                f"(output {r['now']['output_mb']:.0f} MB)",
                flush=True,
            )
        first, last = results[0], results[-1]
        if len(results) > 1:
            per_row = (last["peak_rss_mb"] - first["peak_rss_mb"]) * 2**20 / (last["rows"] - first["rows"])
            print(f"driver bytes per input row ({first['rows']:,} -> {last['rows']:,}): {per_row:.0f} (goal <= 100)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--picks", type=int, default=10_000)
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--skip-kcenter", action="store_true")
    ap.add_argument("--kcenter-shards", type=int, default=2, help="also time k-center on this many Ray actors (0: no)")
    ap.add_argument("--rss", help="comma-separated row counts: measure the driver's peak RSS at each")
    ap.add_argument("--budget", type=int, help="with --rss: a fixed mixture budget (default: half the rows)")
    ap.add_argument("--stream", action="store_true", help="with --rss: mode: stream (no dedup)")
    ap.add_argument(
        "--blocks", type=int, help="with --rss or --scaling: num_blocks per source (default: rows / 25 000)"
    )
    ap.add_argument("--scaling", type=int, help="rows: build time on 1 vs 2 CPUs, alternating")
    ap.add_argument("--repeat", type=int, default=2, help="with --scaling: builds per CPU count")
    ap.add_argument("--driver-rss", help=argparse.SUPPRESS)  # internal: one --rss measurement in this process
    ap.add_argument("--no-store-sampler", action="store_true", help=argparse.SUPPRESS)  # internal, with --driver-rss
    ap.add_argument("--nice", type=int, default=15, help="niceness of this process (Ray runs its workers at 15)")
    args = ap.parse_args()
    raise_gc_thresholds()  # the baseline in this process as onlyif runs its own (onlyif.gc_tuning)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.driver_rss:
        return driver_rss(
            Path(args.driver_rss),
            args.rows,
            args.cpus,
            args.budget,
            args.stream,
            args.blocks,
            sample_store=not args.no_store_sampler,
        )
    if args.scaling:
        return bench_scaling(args.scaling, args.repeat, args.blocks)
    if args.rss:
        return bench_rss([int(x) for x in args.rss.split(",")], args.cpus, args.budget, args.stream, args.blocks)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_sources(root, args.rows)
        cfg = config(root, args.rows, blocks=2 * args.cpus)
        t = time.perf_counter()
        init_ray(num_cpus=args.cpus, progress=False)
        (root / "warm").mkdir()
        make_sources(root / "warm", 2000, seed=1)  # start and warm the Ray workers (imports) outside the timing
        build_mixture(config(root / "warm", 2000, blocks=2 * args.cpus), root / "warm_out", progress=False)
        print(f"ray start-up and worker warm-up: {time.perf_counter() - t:.1f} s")
        # Ray runs its workers at niceness 15: on a busy shared machine they would lose every CPU fight with a
        # nice-0 baseline. Running this process (the driver and the pandas baseline) at the same niceness once
        # Ray is up makes contention hit both alike; on an idle machine it changes nothing.
        os.nice(max(0, args.nice - os.nice(0)))
        t = time.perf_counter()
        manifest = build_mixture(cfg, root / "ray_out", progress=False)
        t_ray = time.perf_counter() - t
        t = time.perf_counter()
        counts = pandas_pipeline(cfg, root, root / "pandas.parquet")
        t_pd = time.perf_counter() - t
        keys = ("read", "quarantined", "contaminated", "exact_duplicates", "near_duplicates")
        ray_counts = {s["name"]: {k: s[k] for k in keys} for s in manifest["sources"]}
        print(f"counts: {json.dumps(ray_counts)}; pandas agrees: {ray_counts == counts}")
        n = manifest["totals"]["read"]
        print(f"ray data ({args.cpus} cpus): {t_ray:.1f} s, {n / t_ray:,.0f} rows/s; stages {manifest['timings']}")
        print(f"pandas (1 process):  {t_pd:.1f} s, {n / t_pd:,.0f} rows/s")
        print(f"ratio ray / pandas: {t_pd / t_ray:.2f}x")
    if not args.skip_kcenter:
        bench_kcenter(args.picks, args.candidates, args.kcenter_shards)


if __name__ == "__main__":
    main()
