"""Ray job: fine-tune with Ray Train + DeepSpeed (same options as ``onlyif train``), plus a CPU ``--smoke-test``.

    ray job submit --working-dir . -- \
        python jobs/train.py --config jobs/configs/train_paper_gpu.yaml --data /shared/data/main --out /shared/runs/main
    python jobs/train.py --config jobs/configs/train_tiny.yaml --data DATA --out /tmp/train-smoke --smoke-test
    python jobs/train.py --resume /shared/runs/main      # continue from the latest checkpoint
"""

import sys

from onlyif.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("train", sys.argv[1:]))
