"""Ray job: build a real-data mixture (same options as ``onlyif mix``).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/mix.py --config jobs/configs/mix_specialist.yaml --out /shared/data/mix_specialist --overwrite
"""

import sys

from onlyif.cli import main

if __name__ == "__main__":
    sys.exit(main(["mix", *sys.argv[1:]]))
