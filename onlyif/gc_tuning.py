"""Fewer full garbage collections while a process imports its libraries.

CPython 3.11's thresholds (700, 10, 10) run a full collection each time ≈ 70 000 new container objects have
outlived two younger collections, once the heap has grown by a quarter since the last one. Importing torch, Ray
Train, transformers and DeepSpeed makes ≈ 570 000 of them: 7 full collections, ≈ 1.4 s of a ≈ 8-s start-up (the
measurement in bench/README.md "gc thresholds"), paid again by every Ray Train worker, Tune trial and ``onlyif``
process. At (10 000, 10, 10) none runs during those imports; young collections still run every 10 000
allocations and full ones later, so garbage cycles are still freed.

Applied by ``onlyif`` commands to their own process and, through Ray's ``worker_process_setup_hook``, to every
Ray worker of the jobs they start or join.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)
WORKER_SETUP_HOOK = f"{__name__}.raise_gc_thresholds"
"""What :func:`onlyif.ray_utils.init_ray` gives Ray as ``runtime_env["worker_process_setup_hook"]``."""


def raise_gc_thresholds() -> None:
    """At least :data:`THRESHOLDS` for this process (a higher threshold set before is kept)."""
    gc.set_threshold(*(max(now, ours) for now, ours in zip(gc.get_threshold(), THRESHOLDS, strict=True)))
