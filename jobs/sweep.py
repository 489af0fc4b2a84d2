"""Ray job: a budget-vs-diversity sweep (same options as ``onlyif sweep``), plus a CPU ``--smoke-test``.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/sweep.py --config jobs/configs/sweep_main.yaml --out /shared/runs/sweep_main
    python jobs/sweep.py --config jobs/configs/sweep_main.yaml --out /tmp/sweep-smoke --smoke-test
"""

import sys

from onlyif.cli import run_job

# A 2×1 grid with a tiny model, one epoch, CPU workers: checks the whole pipeline of any sweep preset in ~1 min.
SMOKE = [
    "task.input_length=6", "task.pattern_length=2", "task.alphabet_size=4", "task.test_seen=16",
    "task.test_unseen=16", "task.test_domain=null", "train.model={n_layer: 1, n_embd: 16, n_head: 2, n_positions: 32}",
    "train.epochs=1", "train.batch_size=16", "train.scaling={num_workers: 1, threads_per_worker: 1}",
    "train.deepspeed={zero_stage: 0}", "train.eval={max_examples: 16}", "grid.instructions=[2, 4]",
    "grid.budget=[32]", "grid.seeds=[0]", "grid.axes={}", "tune.max_concurrent_trials=1", "report.bootstrap=20",
]  # fmt: skip

if __name__ == "__main__":
    sys.exit(run_job("sweep", sys.argv[1:], SMOKE))
