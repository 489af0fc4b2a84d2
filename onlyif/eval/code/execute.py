"""Run many programs in the sandbox over parallel lanes; results come back in input order, as a serial run gives.

Each lane is a thread that hands one program at a time to :func:`sandbox.run_program` with its own ``slot`` (the
work happens in the sandbox's child processes, so threads suffice to keep every core busy).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from onlyif.eval.code.sandbox import ExecResult, Limits, run_program


def default_workers() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_programs(
    sources: Sequence[str],
    limits: Limits | Sequence[Limits],
    *,
    workers: int | None = None,
    desc: str = "programs",
    keep_stdout: bool = False,
) -> list[ExecResult]:
    """Run each source once (``limits`` one for all or one per source) over ``workers`` lanes (default: the CPU
    count); a progress bar shows on a terminal. Programs' stdout is dropped unless ``keep_stdout`` (thousands of
    results would otherwise hold up to ``limits.output_bytes`` each)."""
    from tqdm import tqdm

    n = len(sources)
    per = [limits] * n if isinstance(limits, Limits) else list(limits)
    if len(per) != n:
        raise ValueError(f"{n} programs but {len(per)} limits")
    lanes = max(1, min(workers or default_workers(), n))
    results: list[ExecResult | None] = [None] * n
    lock, stop = threading.Lock(), threading.Event()
    todo = iter(range(n))
    bar = tqdm(total=n, desc=desc, unit="prog", disable=n == 0 or not sys.stderr.isatty(), leave=False)

    def lane(slot: int) -> None:
        while not stop.is_set():
            with lock:
                i = next(todo, None)
            if i is None:
                return
            result = run_program(sources[i], per[i], slot=slot)
            results[i] = result if keep_stdout else replace(result, stdout_tail="")
            with lock:
                bar.update()

    try:
        with ThreadPoolExecutor(lanes, thread_name_prefix="sandbox-lane") as pool:
            futures = [pool.submit(lane, slot) for slot in range(lanes)]
            try:
                for future in futures:
                    future.result()
            finally:
                stop.set()  # on an error or Ctrl-C, lanes finish their current program and take no other
    finally:
        bar.close()
    return results  # type: ignore[return-value]
