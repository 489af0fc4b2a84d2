"""The processes of a Ray node the tests started: its process group and whatever names its temp dir."""

from __future__ import annotations

import os


def node_pids(group: int, marker: str) -> list[int]:
    """PIDs in process group ``group`` (the node's ``ray start``) or with ``marker`` (its Ray temp dir) in their
    command line (raylet, GCS and workers that left the group)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(p.info["pid"]) == group or any(marker in part for part in p.info["cmdline"] or []):
                found.append(p.info["pid"])
        except (ProcessLookupError, PermissionError):
            continue
    return found
