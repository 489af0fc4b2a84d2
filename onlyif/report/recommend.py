"""A mixture (or I) recommender fitted from a finished sweep, as RegMix does for pretraining mixtures (pure: no Ray).

The ranked metric is regressed on the grid labels that vary (``share.<source>``, log10 I, log10 budget, α, no-op
share, any other numeric or categorical axis) with a few scikit-learn models; the one with the lowest
cross-validated error (folds by grid point, seeded) is refitted on every trial and searched over candidates inside
the explored region — shares on the convex hull of the mixtures seen, numeric factors within their min–max — at
the requested budget. The uncertainty of a prediction is the spread (std) of bootstrap refits over grid points.

:func:`recommend` chains the steps: the factors, models, cross-validation and bootstrap
(:mod:`~onlyif.report.recommend_fit`), the candidates searched (:mod:`~onlyif.report.recommend_search`); the
ready-to-run config and the files are written by :mod:`~onlyif.report.recommend_output`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from onlyif.errors import ConfigError
from onlyif.report.analysis import label_columns
from onlyif.report.compare import lower_is_better
from onlyif.report.recommend_fit import (
    IGNORED,
    Factor,
    ModelScore,
    bootstrap_std,
    cv_score,
    encode,
    find_factors,
    folds,
    free_dims,
    models,
    prepared,
)
from onlyif.report.recommend_search import candidates


@dataclass
class Recommendation:
    """What :func:`recommend` found: the factors, every model's CV error, the proposal and its runners-up."""

    metric: str
    lower_is_better: bool
    budget: int | None
    factors: list[Factor]
    dims: int
    trials: int
    points: int
    cv: str
    models: list[ModelScore]
    chosen: str
    best: dict[str, Any]
    """``labels`` (grid-label values of the recommended point), ``predicted``, ``uncertainty``."""
    top: list[dict[str, Any]]
    observed_best: dict[str, Any]
    """The best grid point measured (mean over seeds), with the model's prediction there."""
    constants: dict[str, Any]
    """Labels that did not vary (e.g. the budget of a one-budget sweep), as seen in the trials."""
    curve: pd.DataFrame
    """Every candidate searched, with ``predicted`` and ``uncertainty`` (what the plot draws)."""
    observed: pd.DataFrame
    """Mean metric per grid point (factor columns + the metric)."""
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> ModelScore:
        return next(m for m in self.models if m.name == "constant")

    @property
    def chosen_score(self) -> ModelScore:
        return next(m for m in self.models if m.name == self.chosen)

    @property
    def beats_baseline(self) -> bool:
        return self.chosen_score.rmse < self.baseline.rmse


def _plain(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return round(float(v), 6)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def fmt_labels(labels: dict[str, Any]) -> str:
    def one(k: str, v: Any) -> str:
        return f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"

    return ", ".join(one(k, v) for k, v in labels.items())


def recommend(
    trials: pd.DataFrame,
    *,
    metric: str,
    budget: int | None = None,
    seed: int = 0,
    bootstrap: int = 30,
    top: int = 5,
) -> Recommendation:
    """Fit the metric of finished ``trials`` (one row each: grid labels and metrics, as the report reads them) on
    the varying labels and propose the best point at ``budget``.

    Raises:
        ConfigError: the metric is missing, no label varies, or there are fewer grid points than factors + 2.
    """
    metrics = sorted(c for c in trials.columns if "/" in c and trials[c].notna().any())
    if metric not in metrics:
        raise ConfigError(f"--metric {metric}: not among the trial metrics {metrics}")
    df = prepared(trials[trials[metric].notna()].reset_index(drop=True))
    factors = find_factors(df)
    if not factors:
        raise ConfigError(
            f"no grid label varies across the {len(df)} finished trials: nothing to fit (the recommender needs a sweep "
            "over shares, I, budget, α, …)"
        )
    dims = free_dims(factors)
    cols = [f.column for f in factors]
    groups = df[cols].astype(str).agg("|".join, axis=1).to_numpy()
    points = len(np.unique(groups))
    if points < dims + 2:
        raise ConfigError(
            f"{points} finished grid points for {dims} free factor dimension(s) ({', '.join(f.name for f in factors)})"
            f": need at least {dims + 2} (factors + 2) to fit and cross-validate; run more points or fewer factors"
        )
    budget_factor = next((f for f in factors if f.column == "budget"), None)
    notes = []
    constants = {
        c: _plain(df[c].iloc[0])
        for c in label_columns(df)
        if c not in cols and c not in IGNORED and c not in ("trial_id", "point_id")
    }
    if budget is not None and budget_factor is not None:
        if not budget_factor.low <= budget <= budget_factor.high:
            raise ConfigError(
                f"--budget {budget}: outside the explored budgets {budget_factor.low:g}–{budget_factor.high:g}"
            )
    elif budget_factor is not None:
        budget = int(budget_factor.high)
    elif budget is not None and "budget" in constants and budget != constants["budget"]:
        notes.append(
            f"The sweep measured one budget ({constants['budget']}); the recommendation at {budget} assumes its "
            "shares carry over."
        )
    elif budget is None and "budget" in constants:
        budget = int(constants["budget"])

    y = df[metric].to_numpy(float)
    x = encode(df, factors)
    test_rows, cv = folds(groups, seed)
    fitted = models(seed)
    scores = []
    for name, model in fitted.items():
        score = cv_score(model, x, y, test_rows)
        score.name = name
        scores.append(score)
    chosen = min((s for s in scores if s.name != "constant"), key=lambda s: s.rmse).name
    final = fitted[chosen].fit(x, y)

    low = lower_is_better(metric)
    rng = np.random.default_rng(seed)
    observed = df.groupby(cols, sort=True, dropna=False)[metric].mean().reset_index()
    cand = candidates(factors, observed, budget, rng)
    if cand.empty:
        raise ConfigError(f"--budget {budget}: no explored point fits it (every I measured is above it)")
    xs = encode(cand, factors)
    cand["predicted"] = final.predict(xs)
    cand["uncertainty"] = bootstrap_std(fitted[chosen], x, y, groups, xs, bootstrap, seed, dims + 2)
    order = cand["predicted"].to_numpy().argsort()
    order = order if low else order[::-1]

    def point(i: int, frame: pd.DataFrame) -> dict[str, Any]:
        row = frame.iloc[i]
        labels = {c: _plain(row[c]) for c in cols}
        if "budget" not in labels and budget is not None:
            labels["budget"] = budget
        return {"labels": labels, "predicted": float(row["predicted"]), "uncertainty": float(row["uncertainty"])}

    ranked: list[dict[str, Any]] = []
    for i in order:  # the best few, one per point as printed (neighbours on a fine grid look alike)
        p = point(int(i), cand)
        if all(fmt_labels(p["labels"]) != fmt_labels(r["labels"]) for r in ranked):
            ranked.append(p)
        if len(ranked) == top:
            break
    obs_pred = observed.copy()
    obs_pred["predicted"] = final.predict(encode(observed, factors))
    best_obs = int(observed[metric].idxmin() if low else observed[metric].idxmax())
    observed_best = {
        "labels": {c: _plain(observed.iloc[best_obs][c]) for c in cols},
        "measured": float(observed.iloc[best_obs][metric]),
        "predicted": float(obs_pred.iloc[best_obs]["predicted"]),
    }
    rec = Recommendation(
        metric=metric,
        lower_is_better=low,
        budget=budget,
        factors=factors,
        dims=dims,
        trials=len(df),
        points=points,
        cv=cv,
        models=scores,
        chosen=chosen,
        best=ranked[0],
        top=ranked,
        observed_best=observed_best,
        constants=constants,
        curve=cand,
        observed=observed,
        notes=notes,
    )
    if not rec.beats_baseline:
        rec.notes.append(
            f"No model predicts better than a constant (CV RMSE {rec.chosen_score.rmse:.4g} vs "
            f"{rec.baseline.rmse:.4g}): the factors do not explain the metric at this noise level, so the proposal "
            "is not supported by the data; the best measured point is the safer choice."
        )
    return rec
