"""Ray job: the embedded-default emergence reproduction (same options as ``onlyif reproduce``), plus
``--smoke-test`` (a 2-point grid of a tiny model, to check the cluster and its MLflow server first).

    ray job submit --working-dir . -- python jobs/reproduce.py --out /shared/runs/reproduce
    ray job submit --working-dir . -- python jobs/reproduce.py --experiment skew --out /shared/runs/skew
    python jobs/reproduce.py --out /tmp/reproduce-smoke --smoke-test
"""

import sys

from onlyif.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("reproduce", sys.argv[1:]))
