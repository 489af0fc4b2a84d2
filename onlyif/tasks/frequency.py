"""How many training examples each rule gets: uniform, or a power law over rule ranks (pure numpy)."""

from __future__ import annotations

import numpy as np


def power_law_probs(n_rules: int, alpha: float) -> np.ndarray:
    """Probability of each rule rank under density ``α·x^(α−1)`` on (0, 1]: rank r covers (r/n, (r+1)/n].

    With α < 1 the low ranks are frequent (heavy skew as α → 0); α = 1 is uniform; α > 1 favours high ranks.
    """
    edges = (np.arange(n_rules + 1, dtype=np.float64) / n_rules) ** alpha
    return np.diff(edges)


def examples_per_rule(
    n_rules: int, total: int, alpha: float | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Counts per rule summing to ``total``, every rule at least once.

    Uniform (``alpha`` None): ``total // n_rules`` each, the remainder spread over the first rules.
    Power law: one each, the remaining ``total − n_rules`` drawn multinomially from :func:`power_law_probs`.
    """
    if total < n_rules:
        raise ValueError(f"total ({total}) must be >= n_rules ({n_rules})")
    if alpha is None:
        counts = np.full(n_rules, total // n_rules, dtype=np.int64)
        counts[: total % n_rules] += 1
        return counts
    if rng is None:
        raise ValueError("a power law needs an rng")
    return 1 + rng.multinomial(total - n_rules, power_law_probs(n_rules, alpha)).astype(np.int64)
