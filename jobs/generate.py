"""Ray job: build the synthetic rewrite-task splits (same options as ``onlyif generate``).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/generate.py --config jobs/configs/generate_smoke.yaml --out /tmp/onlyif-smoke --overwrite
"""

import sys

from onlyif.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
