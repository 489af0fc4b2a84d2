"""Run ``onlyif ARGS`` and SIGKILL its whole process group at one chosen file-system call: a deterministic
"killed mid-write" without sleeps or timing.

    python tests/_kill_at.py EVENT REGEX -- ARGS...

EVENT is a Python audit event (``open`` for a file opened to write, ``os.mkdir``, ``os.rename`` — which
``os.replace`` raises too); the kill happens when the event's first path argument matches REGEX in full, before the
call runs. Only the driver process is hooked: Ray workers are not, which is the point — they have finished or die
with it.
"""

from __future__ import annotations

import os
import re
import signal
import sys


def main() -> None:
    event, pattern = sys.argv[1], re.compile(sys.argv[2])
    argv = sys.argv[sys.argv.index("--") + 1 :]

    def hook(name: str, args: tuple) -> None:
        if name != event or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        if name == "open" and not (isinstance(args[1], str) and any(c in args[1] for c in "wax+")):
            return
        if pattern.fullmatch(os.fsdecode(args[0])):
            os.killpg(os.getpgrp(), signal.SIGKILL)

    sys.addaudithook(hook)
    from onlyif.cli import main as onlyif_main

    sys.exit(onlyif_main(argv))


if __name__ == "__main__":
    main()
