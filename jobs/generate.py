"""Ray job: build the synthetic rewrite-task splits (same options as ``onlyif generate``), plus ``--smoke-test``
(a few thousand short examples with the preset's rule families).

    ray job submit --working-dir . -- \
        python jobs/generate.py --config jobs/configs/generate_main.yaml --out /shared/data/main
    # or --out s3://BUCKET/data/main: built on the node running the job, uploaded with manifest.json last
    python jobs/generate.py --config jobs/configs/generate_main.yaml --out /tmp/gen-smoke --smoke-test
"""

import sys

from onlyif.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("generate", sys.argv[1:]))
