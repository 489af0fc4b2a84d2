"""Write offline, license-clean instruction rows (a ``code`` and a ``general`` domain) from documented Python
source, for the CPU specialist sweep (docs/real_model.md).

    python jobs/make_code_sources.py --out data/code_sources
    python jobs/make_code_sources.py --out data/code_sources_s1 --set seed=1 --set heldout=0.2
    python jobs/make_code_sources.py --out data/code_plus --set 'packages=[networkx]'   # + a BSD package
"""

from __future__ import annotations

import argparse
import sys

from onlyif.data.code_sources_cmd import add_arguments, run
from onlyif.errors import OnlyIfError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make_code_sources", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except OnlyIfError as exc:
        print(f"make_code_sources: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
