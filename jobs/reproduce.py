"""Ray job: the embedded-default emergence reproduction (same options as ``onlyif reproduce``).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/reproduce.py --out /shared/runs/reproduce
"""

import sys

from onlyif.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", *sys.argv[1:]]))
