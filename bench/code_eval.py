"""Code-eval execution speed: the canonical HumanEval solutions through the sandbox, parallel lanes vs one lane.

    .venv/bin/python bench/code_eval.py                  # 164 problems, workers 2 vs 1, ~30 s on 2 quiet cores
    .venv/bin/python bench/code_eval.py --workers 4 --repeat 2

Both runs score the same 164 programs in the same process (a warm-up program first: the sandbox probes the machine
once); every program must pass, and the per-program outcomes of the two runs must be identical. Prints problems/s of
each and their ratio (goal: >= 1.7x with 2 workers on 2 cores). The generation half is bench/code_generation.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="lanes of the parallel run (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="times each solution is run (default 1)")
    args = parser.parse_args()

    from onlyif.eval.code.benchmarks import load_benchmark
    from onlyif.eval.code.programs import canonical_sample
    from onlyif.eval.code.sandbox import Limits, isolation_report, run_program
    from onlyif.eval.code.score import score_samples

    problems = load_benchmark("humaneval")
    samples = {p.task_id: [canonical_sample(p)] * args.repeat for p in problems}
    limits = Limits()
    run_program("pass\n", limits)  # warm-up: the sandbox's one-time probe of the machine
    report = isolation_report()
    print(f"sandbox: user namespace {report['user_namespace']}, network namespace {report['network_namespace']}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    rates, outcomes = {}, {}
    for workers in (args.workers, 1):
        start = time.perf_counter()
        scored, _ = score_samples(problems, samples, limits, workers=workers)
        wall = time.perf_counter() - start
        passed = sum(s.base.passed for s in scored)
        if passed != len(scored):
            raise SystemExit(f"workers={workers}: {passed}/{len(scored)} canonical programs passed")
        outcomes[workers] = [(s.task_id, s.index, s.base.passed, s.base.kind) for s in scored]
        rates[workers] = len(problems) * args.repeat / wall
        print(f"workers={workers}: {len(scored)} programs in {wall:.2f} s = {rates[workers]:.1f} problems/s")
    if outcomes[args.workers] != outcomes[1]:
        raise SystemExit("parallel and serial outcomes differ")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"speed-up workers={args.workers} vs 1: {rates[args.workers] / rates[1]:.2f}x (goal >= 1.7x on 2 cores)")


if __name__ == "__main__":
    main()
