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
DOMAIN = "test_domain/exact_match_applied"


class NoopFinding(Config):
    """No-op share: generalization emerges at a similar I whatever the share of no-op examples."""

    kind: Literal["noop"] = "noop"
    low: float = Field(0.1, ge=0.0, le=1.0)
    """Unseen-rule accuracy (applied examples) at most this at the fewest I, for every share."""
    high: float = Field(0.8, ge=0.0, le=1.0)
    """Unseen-rule accuracy (applied examples) at least this at the most I, and seen-rule accuracy everywhere."""
    max_ratio: float = Field(2.0, ge=1.0)
    """Largest / smallest emergence threshold (logistic fit in log10 I, crossing 0.5) across shares."""


class SkewFinding(Config):
    """Power-law rule frequencies: few rules collapse under strong skew, many rules hold up."""

    kind: Literal["skew"] = "skew"
    high: float = Field(0.8, ge=0.0, le=1.0)
    """Both I values generalize under uniform frequencies: unseen-rule accuracy (applied) at least this."""
    min_drop: float = Field(0.3, ge=0.0, le=1.0)
    """At the fewest I, accuracy falls by at least this from uniform to the most skewed α (collapse)."""
    max_drop: float = Field(0.1, ge=0.0, le=1.0)
    """At the most I, accuracy falls by at most this from uniform at every α (holds up)."""


class DomainsFinding(Config):
    """Semantic domains: rules spread over several families beat one family on a held-out domain, at equal I."""

    kind: Literal["domains"] = "domains"
    min_gap: float = Field(0.1, ge=0.0, le=1.0)
    """Held-out-domain accuracy (applied) of the cross-domain mixture minus the best within-domain one, at
    least this at every I."""


class PatternsFinding(Config):
    """Restricted patterns: too few distinct rules never generalize, however many examples each has."""

    kind: Literal["patterns"] = "patterns"
    low: float = Field(0.1, ge=0.0, le=1.0)
    """Unseen-rule accuracy (applied) at most this at the fewest I, for every examples-per-rule S."""
    high: float = Field(0.8, ge=0.0, le=1.0)
    """Unseen-rule accuracy (applied) at least this at the most I (its largest S); seen-rule accuracy at least this
    at each I's largest S, the points that show the rules were learned (a smaller S may not teach even the seen
    rules, which says nothing about generalization)."""


FindingConfig = Annotated[NoopFinding | SkewFinding | DomainsFinding | PatternsFinding, Field(discriminator="kind")]


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


def _alpha_key(a: object) -> float:
    """Skew order: uniform first, then α from 1 down (density α·x^(α−1): smaller α, heavier skew)."""
    return -np.inf if a == "uniform" else -float(a)


def judge_skew(trials: pd.DataFrame, cfg: SkewFinding) -> Verdict:
    means = _means(trials, ["task.frequency_alpha", "instructions"], [UNSEEN])[UNSEEN]
    alphas = sorted({a for a, _ in means.index}, key=_alpha_key)
    few, many = int(trials["instructions"].min()), int(trials["instructions"].max())
    if alphas[0] != "uniform" or len(alphas) < 2:
        return Verdict(False, ["Finding (skew) NOT SHOWN: the grid needs uniform frequencies and at least one α."])
    row = {i: [float(means[(a, i)]) for a in alphas] for i in (few, many)}
    names = ["uniform" if a == "uniform" else f"α={a:g}" for a in alphas]
    lines = [f"I={i}: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, row[i], strict=True)) for i in (few, many)]
    base_ok = min(row[few][0], row[many][0]) >= cfg.high
    collapse = row[few][0] - row[few][-1]
    worst_many = row[many][0] - min(row[many])
    ok = base_ok and collapse >= cfg.min_drop and worst_many <= cfg.max_drop
    lines.append(
        f"Finding (skew) {'SHOWN' if ok else 'NOT SHOWN'}: criteria — uniform accuracy ≥ {cfg.high:g} at both I "
        f"[{row[few][0]:.2f}, {row[many][0]:.2f}], a drop ≥ {cfg.min_drop:g} at I={few} from uniform to "
        f"{names[-1]} [{collapse:.2f}], a drop ≤ {cfg.max_drop:g} at I={many} at every α [{worst_many:.2f}]."
    )
    return Verdict(bool(ok), lines)


def judge_domains(trials: pd.DataFrame, cfg: DomainsFinding) -> Verdict:
    if DOMAIN not in trials.columns:
        return Verdict(
            False, ["Finding (domains) NOT SHOWN: no held-out-domain accuracy (test_domain) in the trials."]
        )
    means = _means(trials, ["task.families", "instructions"], [DOMAIN])[DOMAIN]
    mixes = sorted({m for m, _ in means.index})
    cross = [m for m in mixes if " + " in m]
    within = [m for m in mixes if " + " not in m]
    if len(cross) != 1 or not within:
        return Verdict(
            False, ["Finding (domains) NOT SHOWN: the grid needs one cross-domain and a within-domain mix."]
        )
    lines, gaps = [], []
    for i in sorted({i for _, i in means.index}):
        best = max(within, key=lambda m: means[(m, i)])
        gaps.append(float(means[(cross[0], i)] - means[(best, i)]))
        lines.append(
            f"I={i}: held-out domain (applied) cross-domain {means[(cross[0], i)]:.2f} vs best within-domain "
            f"{means[(best, i)]:.2f} ({best}); gap {gaps[-1]:+.2f}."
        )
    ok = min(gaps) >= cfg.min_gap
    lines.append(
        f"Finding (domains) {'SHOWN' if ok else 'NOT SHOWN'}: criterion — cross-domain beats every within-domain "
        f"mixture by ≥ {cfg.min_gap:g} at every I [smallest gap {min(gaps):+.2f}]."
    )
    return Verdict(bool(ok), lines)


def judge_patterns(trials: pd.DataFrame, cfg: PatternsFinding) -> Verdict:
    means = _means(trials, ["instructions", "examples_per_instruction"], [UNSEEN])[UNSEEN].sort_index()
    few, many = int(trials["instructions"].min()), int(trials["instructions"].max())
    few_s = means.loc[few]
    many_s = means.loc[many]
    lines = [
        f"I={i}: unseen rules (applied) " + ", ".join(f"S={s} {v:.2f}" for s, v in means.loc[i].items())
        for i in sorted({i for i, _ in means.index})
    ]
    seen_ok, seen_text = True, ""
    if SEEN in trials.columns:
        seen = _means(trials, ["instructions", "examples_per_instruction"], [SEEN])[SEEN].sort_index()
        at_most_s = {i: seen.loc[i].iloc[-1] for i in (few, many)}
        seen_ok = min(at_most_s.values()) >= cfg.high
        seen_text = (
            "seen-rule accuracy (applied) at each I's largest S "
            + ", ".join(f"I={i} {v:.2f}" for i, v in at_most_s.items())
            + f" (criterion ≥ {cfg.high:g})"
        )
    ok = few_s.max() <= cfg.low and many_s.iloc[-1] >= cfg.high and seen_ok
    lines.append(
        f"Finding (restricted patterns) {'SHOWN' if ok else 'NOT SHOWN'}: criteria — at I={few} accuracy ≤ "
        f"{cfg.low:g} for every S up to {few_s.index.max()} [best {few_s.max():.2f}], at I={many} ≥ {cfg.high:g} "
        f"[{many_s.iloc[-1]:.2f} at S={many_s.index[-1]}], {seen_text}."
    )
    return Verdict(bool(ok), lines)


JUDGES = {"noop": judge_noop, "skew": judge_skew, "domains": judge_domains, "patterns": judge_patterns}


def judge(trials: pd.DataFrame, cfg: NoopFinding | SkewFinding | DomainsFinding | PatternsFinding) -> Verdict:
    """The verdict of the finding ``cfg`` states, from one row per finished trial (grid labels + final metrics)."""
    return JUDGES[cfg.kind](trials, cfg)
