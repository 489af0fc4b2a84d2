"""Ray job: a budget-vs-diversity sweep (same options as ``onlyif sweep``), plus a CPU ``--smoke-test``.

    ray job submit --working-dir . -- \
        python jobs/sweep.py --config jobs/configs/sweep_main.yaml --out /shared/runs/sweep_main
    python jobs/sweep.py --config jobs/configs/sweep_main.yaml --out /tmp/sweep-smoke --smoke-test
"""

import sys

from onlyif.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("sweep", sys.argv[1:]))
