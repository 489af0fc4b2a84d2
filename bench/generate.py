"""Benchmark: examples/s of ``onlyif generate`` (Ray Data, 2 CPUs) vs a single-process pure-Python generator.

Both build 10⁶ training examples of the paper's main setting (input 50, pattern 20, alphabet 8, I = 1000,
no-op share 0.2) and write them as parquet, in the same run. Ray start-up is timed separately. The reference runs
in this process with the garbage-collection thresholds ``onlyif`` gives its own processes and Ray workers
(:mod:`onlyif.gc_tuning`; its million row dicts would otherwise pay CPython's full collections).

    .venv/bin/python bench/generate.py [--examples 1000000] [--cpus 2] [--repeat 3]

``--repeat N`` times both sides N times, interleaved, and reports the fastest run of each (on a shared machine
the fastest run is the one least slowed by the other work; ``uptime`` load is printed before each run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from reference_generator import reference_examples  # noqa: E402

from onlyif.config import validate_config  # noqa: E402
from onlyif.data.generate import generate_dataset  # noqa: E402
from onlyif.gc_tuning import raise_gc_thresholds  # noqa: E402
from onlyif.ray_utils import init_ray  # noqa: E402
from onlyif.tasks.config import TaskConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1_000_000)
    ap.add_argument("--reference-examples", type=int, default=None, help="default: same as --examples")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="time each side N times (interleaved), keep the fastest")
    args = ap.parse_args()
    n, n_ref = args.examples, args.reference_examples or args.examples
    raise_gc_thresholds()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cfg = validate_config(
        TaskConfig,
        {
            "alphabet_size": 8,
            "input_length": 50,
            "pattern_length": 20,
            "noop_share": 0.2,
            "instructions": 1000,
            "budget": n,
            "test_seen": 0,
            "test_unseen": 0,
        },
        "bench",
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        init_ray(num_cpus=args.cpus, progress=False)
        startup = time.perf_counter() - t0

        generate_dataset(cfg, Path(tmp) / "warmup", progress=False)  # workers up, imports done
        ray_times, ref_times = [], []
        for i in range(args.repeat):
            print(f"run {i + 1}/{args.repeat}: load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            t0 = time.perf_counter()
            manifest = generate_dataset(cfg, Path(tmp) / f"ray{i}", progress=False)
            ray_times.append(time.perf_counter() - t0)
            assert manifest["splits"]["train"]["rows"] == n
            shutil.rmtree(Path(tmp) / f"ray{i}")

            t0 = time.perf_counter()
            rows = reference_examples(1000, n_ref, 8, 50, 20, 0.2)
            pq.write_table(pa.Table.from_pylist(rows), Path(tmp) / "reference.parquet", compression="snappy")
            ref_times.append(time.perf_counter() - t0)
            del rows
            print(f"  onlyif generate {ray_times[-1]:.2f} s, reference {ref_times[-1]:.2f} s")
        ray_s, ref_s = min(ray_times), min(ref_times)

    ray_rate, ref_rate = n / ray_s, n_ref / ref_s
    print(f"ray start-up (separate):        {startup:6.2f} s")
    print(f"onlyif generate ({args.cpus} CPUs):     {ray_s:6.2f} s for {n:,} examples = {ray_rate:12,.0f} ex/s")
    print(f"pure-Python reference (1 proc): {ref_s:6.2f} s for {n_ref:,} examples = {ref_rate:12,.0f} ex/s")
    print(
        f"speed-up: {ray_rate / ref_rate:.1f}x   (goal >= 20x; 10^6 in <= 5 s: {'yes' if n / ray_rate <= 5 else 'no'})"
    )


if __name__ == "__main__":
    main()
