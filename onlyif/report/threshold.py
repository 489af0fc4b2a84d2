"""The emergence threshold: where a logistic curve in log10(I) crosses a given accuracy, with a bootstrap interval.

Model: ``acc(I) = 1 / (1 + exp(-(log10 I - t) / w))``, fitted by least squares to every trial's accuracy;
the threshold is the I where the curve crosses ``level`` (``10**t`` for ``level = 0.5``). The interval comes
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
    level: float
    censored: str | None
    """``"below"`` (every point at or above level), ``"above"`` (every point below) or None."""
    method: str
    """How the interval was made: ``seeds``, ``binomial`` or ``none``."""
    resamples: int


def _fit(logi: np.ndarray, acc: np.ndarray) -> tuple[float, float]:
    """Least-squares logistic (center t, width w) in log10 I; w is bounded so a step stays well posed."""
    order = np.argsort(logi)
    lo, hi = float(logi.min()), float(logi.max())
    # Start at the midpoint between the last mean below 0.5 and the first at/above it.
    ulog = np.unique(logi[order])
    means = np.array([acc[logi == u].mean() for u in ulog])
    above = np.nonzero(means >= 0.5)[0]
    t0 = float(ulog[above[0]] - 0.5 * (ulog[above[0]] - ulog[max(above[0] - 1, 0)])) if len(above) else hi
    w0 = max((hi - lo) / 10, _W_MIN * 2)

    def resid(p: np.ndarray) -> np.ndarray:
        t, w = p
        return 1.0 / (1.0 + np.exp(-(logi - t) / w)) - acc

    span = max(hi - lo, 1.0)
    res = least_squares(resid, x0=[t0, w0], bounds=([lo - span, _W_MIN], [hi + span, _W_MAX]))
    return float(res.x[0]), float(res.x[1])


def _crossing(t: float, w: float, level: float) -> float:
    return t + w * math.log(level / (1.0 - level))


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
    logi = np.log10(inst)
    ulog = np.unique(logi)
    means = np.array([acc[logi == u].mean() for u in ulog])
    if (means >= level).all():
        return ThresholdFit(None, None, None, None, level, "below", "none", 0)
    if (means < level).all():
        return ThresholdFit(None, None, None, None, level, "above", "none", 0)

    t, w = _fit(logi, acc)
    point = 10 ** _crossing(t, w, level)
    rng = np.random.default_rng(rng_seed)
    groups = [np.nonzero(logi == u)[0] for u in ulog]
    if seeds is not None and min(len(g) for g in groups) >= 2:
        method = "seeds"
    elif n_examples is not None:
        method = "binomial"
        n = np.maximum(np.asarray(n_examples, dtype=int), 1)
    else:
        return ThresholdFit(point, None, None, w, level, None, "none", 0)
    draws = []
    for _ in range(resamples):
        if method == "seeds":
            idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
            li, ac = logi[idx], acc[idx]
        else:
            li, ac = logi, rng.binomial(n, acc) / n
        bt, bw = _fit(li, ac)
        draws.append(_crossing(bt, bw, level))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return ThresholdFit(point, float(10**lo), float(10**hi), w, level, None, method, resamples)
