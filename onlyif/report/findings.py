"""Verdicts of the paper's findings beyond emergence, computed from a sweep's finished trials (pure: no Ray).

Each ``onlyif reproduce --experiment NAME`` preset states its criteria as ``report.finding`` (one config class per
finding, thresholds as fields); :func:`judge` turns the trial table into sentences and a shown / not-shown verdict.
Accuracies are means over seeds per grid point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from onlyif.config import Config
from onlyif.report.threshold import fit_threshold

UNSEEN = "test_unseen/exact_match_applied"
UNSEEN_ALL = "test_unseen/exact_match"
SEEN = "test_seen/exact_match_applied"


class NoopFinding(Config):
    """No-op share: generalization emerges at a similar I whatever the share of no-op examples."""

    kind: Literal["noop"] = "noop"
    low: float = Field(0.1, ge=0.0, le=1.0)
    """Unseen-rule accuracy (applied examples) at most this at the fewest I, for every share."""
    high: float = Field(0.8, ge=0.0, le=1.0)
    """Unseen-rule accuracy (applied examples) at least this at the most I, and seen-rule accuracy everywhere."""
    max_ratio: float = Field(2.0, ge=1.0)
    """Largest / smallest emergence threshold (logistic fit in log10 I, crossing 0.5) across shares."""


FindingConfig = Annotated[NoopFinding, Field(discriminator="kind")]


@dataclass
class Verdict:
    """Sentences computed from the numbers, and whether the finding is shown."""

    shown: bool
    lines: list[str]


def _means(trials: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    cols = [m for m in metrics if m in trials.columns]
    return trials.groupby(keys, sort=False)[cols].mean()  # α mixes 'uniform' and numbers: no sorting


def _seen_ok(trials: pd.DataFrame, high: float) -> tuple[bool, str]:
    if SEEN not in trials.columns:
        return True, ""
    lo = trials.groupby("point_id")[SEEN].mean().min()
    return bool(lo >= high), f"seen-rule accuracy (applied) lowest {lo:.2f} (criterion ≥ {high:g})"


def judge_noop(trials: pd.DataFrame, cfg: NoopFinding) -> Verdict:
    means = _means(trials, ["task.noop_share", "instructions"], [UNSEEN, UNSEEN_ALL]).sort_index()
    lines, ok, thresholds = [], True, []
    for share, sub in means.groupby(level=0):
        inst = sub.index.get_level_values(1).to_numpy()
        acc = sub[UNSEEN].to_numpy()
        copy = sub[UNSEEN_ALL].to_numpy() if UNSEEN_ALL in sub else np.full(len(acc), np.nan)
        rows = trials[trials["task.noop_share"] == share]
        fit = fit_threshold(rows["instructions"].to_numpy(), rows[UNSEEN].to_numpy())
        thresholds.append(fit.threshold)
        emerges = acc[0] <= cfg.low and acc[-1] >= cfg.high
        ok &= emerges and fit.threshold is not None
        at = f"I ≈ {fit.threshold:.0f}" if fit.threshold is not None else "no crossing of 0.5"
        lines.append(
            f"no-op share {share:g}: unseen rules (applied) {acc[0]:.2f} at I={inst[0]} → {acc[-1]:.2f} at "
            f"I={inst[-1]} (all examples, no-op copies included: {copy[0]:.2f} → {copy[-1]:.2f}); crosses 0.5 at {at}."
        )
    found = [t for t in thresholds if t is not None]
    ratio = max(found) / min(found) if len(found) == len(thresholds) and found else float("inf")
    ok &= ratio <= cfg.max_ratio
    seen_ok, seen_text = _seen_ok(trials, cfg.high)
    ok &= seen_ok
    lines.append(
        f"Finding (no-op share) {'SHOWN' if ok else 'NOT SHOWN'}: criteria — applied accuracy ≤ {cfg.low:g} at the "
        f"fewest I and ≥ {cfg.high:g} at the most for every share [see above], emergence thresholds within a factor "
        f"{cfg.max_ratio:g} [{ratio:.2f}], {seen_text}."
    )
    return Verdict(bool(ok), lines)


JUDGES = {"noop": judge_noop}


def judge(trials: pd.DataFrame, cfg: NoopFinding) -> Verdict:
    """The verdict of the finding ``cfg`` states, from one row per finished trial (grid labels + final metrics)."""
    return JUDGES[cfg.kind](trials, cfg)
