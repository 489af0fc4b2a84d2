"""Ray job: build a real-data mixture (same options as ``onlyif mix``), plus ``--smoke-test`` (the preset with its
budget and per-source counts divided by 100).

    ray job submit --working-dir . -- \
        python jobs/mix.py --config jobs/configs/mix_specialist.yaml --out /shared/data/mix_specialist --overwrite
    # or --out s3://BUCKET/data/mix_specialist (built on the node running the job, uploaded with manifest.json last)
    python jobs/mix.py --config jobs/configs/mix_heldout_code_cpu.yaml --out /tmp/mix-smoke --smoke-test
"""

import sys

from onlyif.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("mix", sys.argv[1:]))
