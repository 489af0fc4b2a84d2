"""Sweep overhead: how much of a sweep's wall time is not trial training (goal: ≤ 10 %).

Runs a small 2×2 grid with ``run_sweep`` (Ray Tune + MLflow + report) and prints

* ``overhead = (wall − Σ trial training time) / wall`` where a trial's training time is the wall time of the
  ``TorchTrainer.fit`` in its ``run_training`` call (Ray Train start, training, evaluation, checkpoints);
* the same grid run as a plain loop of ``run_training`` calls in the same process and Ray session (the
  baseline), and the ratio sweep wall / loop wall;
* where the sweep's other time goes: inside the trial functions but outside ``run_training`` (data generation,
  the rest), between them (Tune starting each trial's process, its imports, result hand-off, MLflow), and the
  report.

    .venv/bin/python bench/sweep_overhead.py [--epochs 3] [--budget 4000] [--reuse-actors]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


def sweep_config(epochs: int, budget: int) -> dict:
    return {
        "name": "overhead",
        "task": {"alphabet_size": 6, "input_length": 10, "pattern_length": 3, "test_seen": 200, "test_unseen": 200},
        "train": {
            "model": {"n_layer": 2, "n_embd": 32, "n_head": 4, "n_positions": 40},
            "epochs": epochs,
            "batch_size": 64,
            "deepspeed": {"zero_stage": 0},
            "scaling": {"num_workers": 1, "threads_per_worker": 1},
            "eval": {"max_examples": 200, "every_epochs": 0},
            "checkpoint": {"keep": 1},
        },
        "grid": {"instructions": [10, 1000], "budget": [budget // 2, budget]},
        "report": {"bootstrap": 100},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--reuse-actors", action="store_true", help="tune.reuse_actors: true for the sweep")
    args = parser.parse_args()

    from ray.tune import ExperimentAnalysis

    from onlyif.config import validate_config
    from onlyif.ray_utils import init_ray
    from onlyif.sweep.config import SweepConfig
    from onlyif.sweep.datasets import ensure_dataset
    from onlyif.sweep.grid import expand_grid
    from onlyif.sweep.run import run_sweep
    from onlyif.tasks.config import TaskConfig
    from onlyif.train.api import run_training
    from onlyif.train.config import TrainConfig

    raw = sweep_config(args.epochs, args.budget)
    raw["tune"] = {"reuse_actors": args.reuse_actors}
    cfg = validate_config(SweepConfig, raw)
    init_ray(num_cpus=4, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Baseline: the same points as a plain loop (data generation + run_training), same Ray session.
        t0 = time.perf_counter()
        loop_train = 0.0
        for i, p in enumerate(q for q in expand_grid(cfg) if q.skip_reason is None):
            data, _ = ensure_dataset(validate_config(TaskConfig, p.task), root / "loop_data")
            train = validate_config(TrainConfig, {**p.train, "mlflow": False})
            loop_train += run_training(train, data, root / f"loop_{i}").train_seconds
        loop_wall = time.perf_counter() - t0

        t0 = time.perf_counter()
        outcome = run_sweep(cfg, root / "sweep", echo=lambda *_: None)  # the report, logged to MLflow, included
        wall = time.perf_counter() - t0
        tuner_wall = outcome.wall_seconds  # up to the report
        trials = ExperimentAnalysis(str(root / "sweep" / "tune" / cfg.name)).trials
        train = sum(t.last_result["train_seconds"] for t in trials)
        data = sum(t.last_result["data_seconds"] for t in trials)
        in_trials = sum(t.last_result["time_total_s"] for t in trials)  # each trial function, start to last report
    print(
        json.dumps(
            {
                "trials": outcome.finished,
                "sweep_wall_s": round(wall, 1),
                "sum_trial_train_s": round(train, 1),
                "sum_trial_data_s": round(data, 1),
                "overhead": round((wall - train) / wall, 3),
                "overhead_without_data_generation": round((wall - train - data) / wall, 3),
                "breakdown_s": {
                    "data_generation": round(data, 1),
                    "rest_of_trial_functions": round(in_trials - train - data, 1),
                    "outside_trial_functions": round(tuner_wall - in_trials, 1),
                    "report": round(wall - tuner_wall, 1),
                },
                "loop_wall_s": round(loop_wall, 1),
                "loop_overhead": round((loop_wall - loop_train) / loop_wall, 3),
                "sweep_wall_over_loop_wall": round(wall / loop_wall, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
