"""What the machine gave a run, from Linux's ``/proc/stat``: CPU-seconds busy and CPU-seconds the hypervisor took
(steal) — on a shared VM the same tests take 1.5–2.8 thousand CPU-seconds and their wall time follows
(bench/README "test suite"). Printed after ``make test`` and beside benchmark rounds; nothing asserts on them."""

from __future__ import annotations

import os
import time


def cpu_counters() -> tuple[float, float] | None:
    """(busy, stolen) CPU-seconds since boot, all CPUs together; None where there is no ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    except (OSError, ValueError):  # no such file, or a kernel without the steal column
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def loop_cpu_seconds(n: int = 5_000_000) -> float:
    """CPU-seconds a fixed pure-Python loop takes: how much work a CPU-second does on this machine right now."""
    t0 = time.process_time()
    x = 0
    for i in range(n):
        x += i * i % 7
    return time.process_time() - t0


def describe(start: tuple[float, float] | None, wall_s: float) -> str | None:
    """One line: busy and stolen CPU-seconds since ``start`` over ``wall_s`` seconds, and the loop's speed now."""
    end = cpu_counters()
    if start is None or end is None:
        return None
    busy, stolen = end[0] - start[0], end[1] - start[1]
    cpus = os.cpu_count() or 1
    return (
        f"machine: {busy:.0f} CPU-s busy, {stolen:.0f} CPU-s taken by the hypervisor (steal, "
        f"{100 * stolen / max(wall_s * cpus, 1e-9):.0f} % of {cpus} CPUs x {wall_s:.0f} s); "
        f"a fixed Python loop now takes {loop_cpu_seconds():.2f} CPU-s"
    )
