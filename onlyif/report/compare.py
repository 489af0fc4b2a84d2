"""Reading a sweep without an instruction axis (e.g. a mixture sweep): which grid point is best, by how much,
and how the metric moves along a numeric factor such as a source's share (pure: no Ray)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from onlyif.report.analysis import label_columns

HEADLINE = re.compile(r"^[^/]+/(loss|exact_match|accuracy|accuracy_norm|score)$|^[^/]+(/plus)?/pass@\d+$")
"""Headline metrics of a comparison: per split ``loss`` / ``exact_match``; of a model evaluation
``<benchmark>/pass@k`` (and ``/plus/pass@k``), ``<task>/accuracy`` / ``exact_match``, ``suite/score``."""


def comparison_metrics(df: pd.DataFrame) -> list[str]:
    """The headline metrics present in ``df`` (see :data:`HEADLINE`)."""
    return sorted(c for c in df.columns if HEADLINE.match(c) and df[c].notna().any())


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def varying(df: pd.DataFrame) -> list[str]:
    """Label columns (other than the seed) that take more than one value."""
    return [c for c in label_columns(df) if df[c].astype(str).nunique() > 1]


def numeric_factor(summary: pd.DataFrame, factors: list[str]) -> str | None:
    """The factor to draw on an x axis: the first numeric one with at least two values (shares first)."""
    ranked = sorted(factors, key=lambda c: (not c.startswith("share."), factors.index(c)))
    for c in ranked:
        col = summary[c]
        if col.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)).all() and col.nunique() > 1:
            return c
    return None


@dataclass
class Comparison:
    metric: str
    points: list[dict[str, Any]]
    """One per grid point (seeds averaged): ``setting``, ``mean``, ``std``, ``seeds``; best first."""
    conclusion: list[str]


def _setting_text(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.', 1)[-1] if k.startswith('mixture.') else k}={v}" for k, v in setting.items())


def compare(summary: pd.DataFrame, metric: str, factors: list[str]) -> Comparison:
    """Rank the grid points of ``summary`` (from :func:`onlyif.report.analysis.summarize`) by ``metric``."""
    low = lower_is_better(metric)
    points = []
    for row in summary.to_dict("records"):  # per-column types kept (iterrows would turn ints into floats)
        std = row[f"{metric}:std"]
        points.append(
            {
                "setting": {c: row[c].item() if isinstance(row[c], np.generic) else row[c] for c in factors},
                "mean": float(row[f"{metric}:mean"]),
                "std": None if pd.isna(std) else float(std),
                "seeds": int(row["seeds"]),
            }
        )
    points.sort(key=lambda p: p["mean"] if low else -p["mean"])
    word = "lowest" if low else "highest"
    best, worst = points[0], points[-1]
    out = [f"{metric}: {word} at {_setting_text(best['setting']) or 'the only point'} ({best['mean']:.4f})."]
    if len(points) > 1:
        runner = points[1]
        lead = abs(best["mean"] - runner["mean"])
        gap = abs(best["mean"] - worst["mean"])
        out.append(
            f"Its lead over the runner-up ({_setting_text(runner['setting'])}, {runner['mean']:.4f}) is {lead:.4f}."
        )
        out.append(f"Worst at {_setting_text(worst['setting'])} ({worst['mean']:.4f}); spread {gap:.4f}.")
        stds = [p["std"] for p in points if p["std"] is not None]
        if stds:
            noise = max(stds)
            lead_word = "exceeds" if lead > 2 * noise else "does not exceed"
            spread_word = "larger" if gap > 2 * noise else "not clearly larger"
            out.append(
                f"The best point's lead {lead_word} twice the seed-to-seed std ({noise:.4f}, the largest over the "
                f"points); the spread is {spread_word} than that."
            )
        else:
            out.append("One seed per point: no seed-to-seed spread to compare the differences with.")
    x = numeric_factor(summary, factors)
    if x is not None and summary[x].nunique() == len(summary) > 2:  # x alone tells the points apart: a curve
        order = summary.sort_values(x)
        ys = order[f"{metric}:mean"].to_numpy(dtype=float)
        diffs = np.diff(ys)
        if (diffs <= 0).all() or (diffs >= 0).all():
            trend = "falls" if ys[-1] < ys[0] else "rises"
            out.append(
                f"{metric} {trend} monotonically as {x} goes from {order[x].iloc[0]:g} to {order[x].iloc[-1]:g} "
                f"({ys[0]:.4f} → {ys[-1]:.4f})."
            )
        else:
            out.append(f"{metric} is not monotone in {x}.")
    return Comparison(metric, points, out)
