"""Fewer full garbage collections while a process imports its libraries.

CPython 3.11's thresholds (700, 10, 10) consider a full collection every ≈ 70 000 net allocations of container
objects and run it once the objects that survived the younger collections since the last full one outnumber a
quarter of the rest. Importing torch, Ray Train, transformers and DeepSpeed leaves ≈ 570 000 such objects: 7 full
collections, ≈ 1.4 s of a ≈ 8-s start-up (bench/README.md, "gc thresholds"), paid again by every Ray Train worker,
Tune trial and ``onlyif`` process. At (10 000, 10, 10) none runs during those imports; young collections still run
every 10 000 allocations and full ones later, so garbage cycles are still freed.

Applied by ``onlyif`` commands to their own process and, through Ray's ``worker_process_setup_hook``, to every
Ray worker of the jobs they start or join.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)
WORKER_SETUP_HOOK = f"{__name__}.raise_gc_thresholds"
"""What :func:`onlyif.ray_utils.init_ray` gives Ray as ``runtime_env["worker_process_setup_hook"]``."""


def raise_gc_thresholds() -> None:
    """At least :data:`THRESHOLDS` for this process; a higher threshold set before is kept, and so is a first
    threshold of 0 (automatic collection off)."""
    now = gc.get_threshold()
    if now[0] > 0:
        gc.set_threshold(*(max(a, b) for a, b in zip(now, THRESHOLDS, strict=True)))
