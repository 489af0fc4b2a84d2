"""The emergence threshold: where a logistic curve in log10(I) crosses a given accuracy, with a bootstrap interval.

Model: ``acc(I) = top / (1 + exp(-(log10 I - t) / w))`` (a free plateau ``top`` ≤ 1, since under-trained models
plateau below 1), fitted by least squares to every trial's accuracy; the threshold is the I where the curve
crosses ``level``. The interval comes
from refitting on resampled data: seeds resampled with replacement within each I when there are several seeds,
otherwise the test examples (a binomial draw per trial from its accuracy and example count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

_W_MIN, _W_MAX = 0.01, 5.0


@dataclass(frozen=True)
class ThresholdFit:
    """A fitted emergence threshold; ``censored`` says the crossing lies outside the measured I range."""

    threshold: float | None
    """I where the fitted curve crosses ``level`` (None when censored)."""
    low: float | None
    """Bootstrap interval bounds (None when not available)."""
    high: float | None
    width: float | None
    """Transition width in decades of I (the logistic scale ``w``)."""
    top: float | None
    """Fitted plateau of the accuracy at large I."""
    level: float
    censored: str | None
    """``"below"`` (every point at or above level), ``"above"`` (every point below) or None."""
    method: str
    """How the interval was made: ``seeds``, ``binomial`` or ``none``."""
    resamples: int


def _fit(logi: np.ndarray, acc: np.ndarray) -> tuple[float, float, float]:
    """Least-squares logistic (center t, width w, plateau top) in log10 I; bounded so a step stays well posed."""
    lo, hi = float(logi.min()), float(logi.max())
    # Start at the midpoint between the last mean below half the best mean and the first at/above it.
    ulog = np.unique(logi)
    means = np.array([acc[logi == u].mean() for u in ulog])
    above = np.nonzero(means >= 0.5 * means.max())[0]
    t0 = float(ulog[above[0]] - 0.5 * (ulog[above[0]] - ulog[max(above[0] - 1, 0)])) if len(above) else hi
    w0 = max((hi - lo) / 10, _W_MIN * 2)
    top0 = float(np.clip(means.max(), 0.06, 1.0))

    def resid(p: np.ndarray) -> np.ndarray:
        t, w, top = p
        return top / (1.0 + np.exp(-(logi - t) / w)) - acc

    span = max(hi - lo, 1.0)
    res = least_squares(resid, x0=[t0, w0, top0], bounds=([lo - span, _W_MIN, 0.05], [hi + span, _W_MAX, 1.0]))
    return float(res.x[0]), float(res.x[1]), float(res.x[2])


def _crossing(t: float, w: float, top: float, level: float) -> float:
    """log10 I where the curve reaches ``level`` (inf when its plateau stays below it)."""
    if top <= level:
        return math.inf
    return t + w * math.log(level / (top - level))


def fit_threshold(
    instructions: np.ndarray | list[float],
    accuracy: np.ndarray | list[float],
    *,
    seeds: np.ndarray | list[int] | None = None,
    n_examples: np.ndarray | list[float] | None = None,
    level: float = 0.5,
    resamples: int = 1000,
    rng_seed: int = 0,
) -> ThresholdFit:
    """Fit the threshold from per-trial (I, accuracy) pairs; see the module docstring.

    Args:
        instructions: I of each trial (> 0).
        accuracy: the trial's accuracy in [0, 1].
        seeds: the trial's seed; several seeds per I enable the seed bootstrap.
        n_examples: test examples behind each accuracy, for the binomial bootstrap when there is one seed.
        level: the accuracy level whose crossing is the threshold.
        resamples: bootstrap refits.
    """
    inst = np.asarray(instructions, dtype=float)
    acc = np.clip(np.asarray(accuracy, dtype=float), 0.0, 1.0)
    if inst.shape != acc.shape or inst.size == 0:
        raise ValueError("instructions and accuracy must be non-empty and of the same length")
    if (inst <= 0).any():
        raise ValueError("instructions must be > 0")
    # trials in (I, accuracy) order: the bootstrap draws, hence the interval, do not depend on the trials' order
    order = np.lexsort((np.zeros_like(acc) if n_examples is None else np.asarray(n_examples, dtype=float), acc, inst))
    inst, acc = inst[order], acc[order]
    seeds = None if seeds is None else np.asarray(seeds)[order]
    n_examples = None if n_examples is None else np.asarray(n_examples)[order]
    logi = np.log10(inst)
    ulog = np.unique(logi)
    means = np.array([acc[logi == u].mean() for u in ulog])
    if (means >= level).all():
        return ThresholdFit(None, None, None, None, None, level, "below", "none", 0)
    if (means < level).all():
        return ThresholdFit(None, None, None, None, None, level, "above", "none", 0)

    t, w, top = _fit(logi, acc)
    cross = _crossing(t, w, top, level)
    if not math.isfinite(cross):
        return ThresholdFit(None, None, None, w, top, level, "above", "none", 0)
    point = 10**cross
    rng = np.random.default_rng(rng_seed)
    groups = [np.nonzero(logi == u)[0] for u in ulog]
    if seeds is not None and min(len(g) for g in groups) >= 2:
        method = "seeds"
    elif n_examples is not None:
        method = "binomial"
        n = np.maximum(np.asarray(n_examples, dtype=int), 1)
    else:
        return ThresholdFit(point, None, None, w, top, level, None, "none", 0)
    draws = []
    for _ in range(resamples):
        if method == "seeds":
            idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
            li, ac = logi[idx], acc[idx]
        else:
            li, ac = logi, rng.binomial(n, acc) / n
        draws.append(_crossing(*_fit(li, ac), level))
    lo, hi = np.percentile(draws, [2.5, 97.5])  # a resample whose plateau misses the level counts as +inf
    high = float(10**hi) if math.isfinite(hi) else math.inf
    return ThresholdFit(point, float(10**lo), high, w, top, level, None, method, resamples)
