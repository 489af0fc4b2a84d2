"""Ray job: fine-tune with Ray Train + DeepSpeed (same options as ``onlyif train``), plus a CPU ``--smoke-test``.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train.py --config jobs/configs/train_paper_gpu.yaml --data /shared/data/main --out /shared/runs/main
    python jobs/train.py --config jobs/configs/train_tiny.yaml --data DATA --out /tmp/train-smoke --smoke-test
    python jobs/train.py --resume /shared/runs/main      # continue from the latest checkpoint
"""

import sys

from onlyif.cli import run_job

# One epoch of a 1-layer model on 2 CPU workers, 100 eval examples: checks any preset's data and plumbing fast.
SMOKE = [
    "model.pretrained=null", "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "epochs=1", "max_steps=20",
    "scaling={num_workers: 2}", "deepspeed={zero_stage: 2}", "eval.max_examples=100",
]  # fmt: skip

if __name__ == "__main__":
    sys.exit(run_job("train", sys.argv[1:], SMOKE))
