"""A sweep driver's own cost: CPU seconds and peak memory of the process that runs ``onlyif sweep``.

Runs a 1-trial tiny sweep in a fresh interpreter (its own local Ray) with ``tune.tensorboard`` off (the default)
and on (Tune's TensorBoard logger, whose tensorboardX imports torch into the driver), alternating, and prints each
run, the medians and the ratios off/on:

    .venv/bin/python bench/sweep_driver.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
from onlyif.config import validate_config
from onlyif.sweep.config import SweepConfig
from onlyif.sweep.run import run_sweep
cfg = validate_config(SweepConfig, json.loads(sys.argv[1]))
out = run_sweep(cfg, sys.argv[2], echo=lambda *_: None)
assert out.finished == 1, out
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu_s": r.ru_utime + r.ru_stime, "max_rss_mib": r.ru_maxrss / 1024, "torch": "torch" in sys.modules}))
"""


def sweep_config(tensorboard: bool) -> dict:
    return {
        "name": "driver",
        "task": {"alphabet_size": 4, "input_length": 6, "pattern_length": 2, "test_seen": 16, "test_unseen": 16},
        "train": {
            "model": {"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 32},
            "epochs": 1,
            "batch_size": 16,
            "scaling": {"num_workers": 1, "threads_per_worker": 1},
            "eval": {"max_examples": 16},
            "checkpoint": {"keep": 1},
        },
        "grid": {"instructions": [4], "budget": [48]},
        "tune": {"tensorboard": tensorboard},
        "report": {"bootstrap": 20},
    }


def run_driver(tensorboard: bool, root: Path) -> dict:
    exp = tempfile.mkdtemp(dir=root)
    args = [sys.executable, "-c", CHILD, json.dumps(sweep_config(tensorboard)), exp]
    env = {"RAY_AUTH_MODE": "disabled", **os.environ}
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (off, on), alternating")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, tensorboard in (("off", False), ("on", True)):
                runs[name].append(run_driver(tensorboard, Path(tmp)))
                print(name, runs[name][-1], flush=True)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("cpu_s", "max_rss_mib")} for n, rs in runs.items()}
    ratios = {k: round(med["off"][k] / med["on"][k], 3) for k in ("cpu_s", "max_rss_mib")}
    print(
        json.dumps({"median_tensorboard_off": med["off"], "median_tensorboard_on": med["on"], "off_over_on": ratios})
    )


if __name__ == "__main__":
    main()
