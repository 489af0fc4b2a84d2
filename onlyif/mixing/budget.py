"""Turn a budget and per-source counts or fractions into exact integer row counts."""

from __future__ import annotations

import math
from collections.abc import Sequence


def allocate(budget: int, fractions: Sequence[float]) -> list[int]:
    """Integer counts summing to ``budget`` in the given proportions (largest remainder; ties → earlier source)."""
    raw = [budget * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: budget - sum(counts)]:
        counts[i] += 1
    return counts


def upsample_plan(requested: int, available: int) -> tuple[int, int]:
    """``(full_repeats, remainder)``: take every row ``full_repeats`` times plus ``remainder`` more."""
    if available <= 0:
        raise ValueError("available must be positive")
    return divmod(requested, available)
