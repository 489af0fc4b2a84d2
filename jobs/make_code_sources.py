"""Write offline, license-clean instruction rows (a ``code`` and a ``general`` domain) from documented Python
source, for the CPU specialist sweep (docs/real_model.md); the same as ``onlyif sources``.

    python jobs/make_code_sources.py --out data/code_sources
    python jobs/make_code_sources.py --out data/code_sources_s1 --set seed=1 --set heldout=0.2
    python jobs/make_code_sources.py --out data/code_plus --set 'packages=[networkx]'   # + a BSD package
"""

import sys

from onlyif.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("sources", sys.argv[1:]))
