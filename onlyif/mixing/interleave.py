"""The row order of a ``mode: stream`` mixture: its sources spread evenly, decided by row counts alone.

Source ``i`` gives ``n[i]`` rows; its ``j``-th row sits at ``(j + 0.5) / n[i]`` of the way through the output
(ties to the lower source index). So any stretch of the output holds each source in its share, up to a row, and
the order depends on nothing but the counts: not on block boundaries, timing or the cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def next_sources(n: Sequence[int], taken: Sequence[int], size: int) -> np.ndarray:
    """The sources of the next ``size`` output rows, once source ``i`` has given ``taken[i]`` of its ``n[i]``
    rows (``size`` at most the rows left). Each source gives at most ``size`` of them, so its next ``size`` rows
    are the only candidates."""
    keys, srcs = [], []
    for i, (total, done) in enumerate(zip(n, taken, strict=True)):
        j = np.arange(done, min(total, done + size), dtype=np.float64)
        keys.append((j + 0.5) / total)
        srcs.append(np.full(len(j), i, dtype=np.int64))
    key, src = np.concatenate(keys), np.concatenate(srcs)
    if len(key) < size:
        raise ValueError(f"{size} rows asked, {len(key)} left")
    return src[np.lexsort((src, key))[:size]]
