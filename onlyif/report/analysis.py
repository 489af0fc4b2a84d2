"""From a table of finished trials to summaries, emergence fits and computed conclusions (pure: no Ray).

The input is one row per trial: grid labels (``instructions``, ``budget``, ``examples_per_instruction``,
``seed`` and any ``task.*`` / ``train.*`` axis) and final metrics (``test_unseen/exact_match_applied`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from onlyif.report.config import ReportConfig
from onlyif.report.threshold import ThresholdFit, fit_threshold

METRIC_NAMES = {
    "test_unseen/exact_match_applied": "unseen rules, applied examples",
    "test_unseen/exact_match": "unseen rules, all examples",
    "test_seen/exact_match_applied": "seen rules, applied examples",
    "test_seen/exact_match": "seen rules, all examples",
    "test_domain/exact_match_applied": "unseen domain, applied examples",
    "test_domain/exact_match": "unseen domain, all examples",
}
SEEN_METRICS = ("test_seen/exact_match_applied", "test_seen/exact_match")
COUNT_SUFFIX = "_n"
"""``<metric>_n``: how many test examples an accuracy is computed over (used by the binomial bootstrap)."""

DIVERSITY = ("instructions", "examples_per_instruction")
NON_FACTORS = {"instructions", "examples_per_instruction", "seed", "trial_id", "point_id", "status"}


def metric_columns(df: pd.DataFrame) -> list[str]:
    """The known accuracy metrics present in ``df`` (in display order)."""
    return [m for m in METRIC_NAMES if m in df.columns and df[m].notna().any()]


def label_columns(df: pd.DataFrame) -> list[str]:
    """Grid-label columns: everything that is neither a metric nor bookkeeping."""
    return [c for c in df.columns if "/" not in c and c not in ("trial_id", "point_id", "status") and c != "seed"]


def factor_columns(df: pd.DataFrame) -> list[str]:
    """Labels other than I/S/seed that take more than one value (budget, noop share, α, families ...)."""
    out = []
    for c in label_columns(df):
        if c in NON_FACTORS:
            continue
        if df[c].astype(str).nunique() > 1:
            out.append(c)
    return out


def summarize(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, std (over seeds) and number of seeds per grid point."""
    keys = list(label_columns(df))
    work = df.copy()
    for c in keys:  # lists/None become hashable, readable strings for grouping
        if work[c].map(lambda v: isinstance(v, list | dict) or v is None).any():
            work[c] = work[c].map(lambda v: "none" if v is None else str(v))
    agg = work.groupby(keys, dropna=False)[metrics].agg(["mean", "std", "count"])
    agg.columns = [f"{m}:{s}" for m, s in agg.columns]
    out = agg.reset_index()
    out["seeds"] = out[f"{metrics[0]}:count"].astype(int)
    return out.drop(columns=[f"{m}:count" for m in metrics]).sort_values(keys).reset_index(drop=True)


@dataclass
class Curve:
    """Accuracy vs I for one setting of the other factors (e.g. one budget)."""

    setting: dict[str, Any]
    instructions: list[int]
    means: dict[str, list[float]]
    stds: dict[str, list[float]]
    seeds: list[int]
    fit: ThresholdFit | None
    conclusion: list[str] = field(default_factory=list)
    shown: bool | None = None
    """Whether this curve shows the phenomenon: main metric <= low at the fewest I, >= high at the most, seen
    accuracy >= high everywhere (None when there are fewer than two I values)."""


def _setting_text(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in setting.items()) or "all trials"


def build_curves(df: pd.DataFrame, cfg: ReportConfig) -> list[Curve]:
    """One curve per setting of the factors, with the threshold fit and the conclusion in words."""
    metrics = metric_columns(df)
    if cfg.metric not in metrics:
        raise ValueError(f"report.metric: {cfg.metric!r} is not among the trial metrics {metrics}")
    factors = factor_columns(df)
    work = df.copy()
    for c in factors:  # one type per factor column, so settings sort and print consistently
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in work[c]):
            work[c] = work[c].map(lambda v: "none" if v is None else str(v))
    groups = work.groupby(factors, dropna=False, sort=True) if factors else [((), work)]
    curves = []
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        setting = dict(zip(factors, key, strict=True))
        by_i = sub.groupby("instructions")
        inst = sorted(int(i) for i in by_i.groups)
        means = {m: [float(by_i[m].mean()[i]) for i in inst] for m in metrics}
        stds = {m: [float(np.nan_to_num(by_i[m].std()[i])) for i in inst] for m in metrics}
        seeds = [int(by_i.size()[i]) for i in inst]
        fit = None
        if len(inst) >= 2:
            count_col = cfg.metric + COUNT_SUFFIX
            fit = fit_threshold(
                sub["instructions"].to_numpy(),
                sub[cfg.metric].to_numpy(),
                seeds=sub["seed"].to_numpy() if "seed" in sub else None,
                n_examples=sub[count_col].to_numpy() if count_col in sub else None,
                level=cfg.threshold,
                resamples=cfg.bootstrap,
            )
        curve = Curve(setting, inst, means, stds, seeds, fit)
        curve.conclusion, curve.shown = conclude(curve, cfg)
        curves.append(curve)
    return curves


def fmt_bound(x: float) -> str:
    return f"{x:.0f}" if np.isfinite(x) else "beyond the grid"


def conclude(curve: Curve, cfg: ReportConfig) -> tuple[list[str], bool | None]:
    """Sentences describing the curve, computed from its numbers; plus whether the phenomenon is shown."""
    inst, m = curve.instructions, curve.means[cfg.metric]
    name = METRIC_NAMES.get(cfg.metric, cfg.metric)
    where = _setting_text(curve.setting)
    out: list[str] = []
    if len(inst) < 2:
        out.append(f"{where}: only I={inst[0]} was measured ({name}: {m[0]:.2f}); no curve to read.")
        return out, None
    above = [i for i, v in zip(inst, m, strict=True) if v >= cfg.threshold]
    below = [i for i, v in zip(inst, m, strict=True) if v < cfg.threshold]
    if not above:
        best = int(np.argmax(m))
        out.append(
            f"{where}: no generalization to unseen rules at any tested I — {name} stays below "
            f"{cfg.threshold:g} (best {m[best]:.2f} at I={inst[best]})."
        )
    elif not below:
        worst = int(np.argmin(m))
        out.append(
            f"{where}: unseen rules are solved at every tested I — {name} is at least {cfg.threshold:g} "
            f"everywhere (lowest {m[worst]:.2f} at I={inst[worst]})."
        )
    else:
        first_up = min(above)
        last_down = max(i for i in below if i < first_up) if any(i < first_up for i in below) else None
        if last_down is not None:
            a, b = inst.index(last_down), inst.index(first_up)
            out.append(
                f"{where}: generalization to unseen rules emerges between I={last_down} ({name} {m[a]:.2f}) "
                f"and I={first_up} ({m[b]:.2f})."
            )
        if any(i > first_up for i in below):
            drops = [i for i in below if i > first_up]
            out.append(f"{where}: the curve is not monotone — below {cfg.threshold:g} again at I={drops}.")
    fit = curve.fit
    if fit is not None and fit.threshold is not None:
        interval = (
            f" (95% bootstrap interval over {fit.method}: {fit.low:.0f}–{fmt_bound(fit.high)})"
            if fit.low is not None
            else ""
        )
        out.append(
            f"Logistic fit in log10 I: {name} crosses {fit.level:g} at I ≈ {fit.threshold:.0f}{interval}; "
            f"transition width {fit.width:.2f} decades, plateau {fit.top:.2f}."
        )
        lower = [i for i in inst if i <= fit.threshold]
        upper = [i for i in inst if i > fit.threshold]
        gap = np.log10(min(upper)) - np.log10(max(lower)) if lower and upper else 0.0
        if fit.width is not None and fit.width < 0.25 * gap:
            out.append(
                "The transition is sharper than the grid spacing: the threshold is only bracketed by the "
                "neighbouring grid points, whatever the interval says."
            )
    elif fit is not None:
        out.append(
            f"No crossing of {fit.level:g} inside the measured range (threshold "
            f"{'below I=' + str(inst[0]) if fit.censored == 'below' else 'above I=' + str(inst[-1])})."
        )
    seen = next((s for s in SEEN_METRICS if s in curve.means), None)
    seen_ok = True
    if seen is not None:
        lo = min(curve.means[seen])
        arg = inst[int(np.argmin(curve.means[seen]))]
        seen_ok = lo >= cfg.high
        state = "stays high" if seen_ok else "is not high everywhere"
        out.append(f"Seen-rule accuracy ({METRIC_NAMES[seen]}) {state}: lowest {lo:.2f} at I={arg}.")
    shown = m[0] <= cfg.low and m[-1] >= cfg.high and seen_ok
    verdict = "shows" if shown else "does not show"
    out.append(
        f"This curve {verdict} the phenomenon (criteria: {name} ≤ {cfg.low:g} at the fewest I={inst[0]} "
        f"[{m[0]:.2f}], ≥ {cfg.high:g} at the most I={inst[-1]} [{m[-1]:.2f}], seen accuracy ≥ {cfg.high:g})."
    )
    return out, shown
