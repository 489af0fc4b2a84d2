"""A mixture (or I) recommender fitted from a finished sweep, as RegMix does for pretraining mixtures (pure: no Ray).

The ranked metric is regressed on the grid labels that vary (``share.<source>``, log10 I, log10 budget, α, no-op
share, any other numeric or categorical axis) with a few scikit-learn models; the one with the lowest
cross-validated error (folds by grid point, seeded) is refitted on every trial and searched over candidates inside
the explored region — shares on the convex hull of the mixtures seen, numeric factors within their min–max — at
the requested budget. The uncertainty of a prediction is the spread (std) of bootstrap refits over grid points.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from onlyif.errors import ConfigError
from onlyif.report.analysis import label_columns
from onlyif.report.compare import lower_is_better

SHARE_PREFIX = "share."
LOG_FACTORS = ("instructions", "budget")
"""Numeric labels that span decades: modelled (and searched) in log10."""
IGNORED = {"seed", "examples_per_instruction"}
"""Labels that are not factors: the seed, and S (= budget / I, so a function of two factors)."""
UNIFORM_ALPHA = "task.frequency_alpha"
"""Its label is ``uniform`` for no skew, which is α = 0 of the power law."""
ALPHAS = np.logspace(-3, 3, 13)
MAX_CANDIDATES = 6000
GRID_STEPS = 41


@dataclass
class Factor:
    """One varying grid label as the regression sees it."""

    column: str
    kind: str
    """``share`` (one coordinate of the mixture simplex), ``log`` (log10 of a positive number), ``numeric`` or
    ``category`` (one-hot over its levels)."""
    low: float | None = None
    high: float | None = None
    levels: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return {"instructions": "log10 I", "budget": "log10 budget"}.get(self.column, self.column)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"column": self.column, "name": self.name, "kind": self.kind}
        return out | ({"levels": self.levels} if self.kind == "category" else {"min": self.low, "max": self.high})


@dataclass
class ModelScore:
    name: str
    rmse: float
    r2: float


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


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _prepared(trials: pd.DataFrame) -> pd.DataFrame:
    df = trials.copy()
    if UNIFORM_ALPHA in df:
        df[UNIFORM_ALPHA] = df[UNIFORM_ALPHA].map(lambda v: 0.0 if v is None or v == "uniform" else v)
    return df


def find_factors(trials: pd.DataFrame) -> list[Factor]:
    """The grid labels that vary across ``trials``, each with how it is modelled."""
    out = []
    for c in label_columns(trials):
        if c in IGNORED or trials[c].astype(str).nunique() <= 1:
            continue
        values = trials[c]
        if all(_is_number(v) for v in values):
            kind = "share" if c.startswith(SHARE_PREFIX) else "log" if c in LOG_FACTORS else "numeric"
            if kind == "log" and (values <= 0).any():
                kind = "numeric"
            out.append(Factor(c, kind, low=float(values.min()), high=float(values.max())))
        else:
            levels = sorted({str(v) if not isinstance(v, bool) else v for v in values}, key=str)
            out.append(Factor(c, "category", levels=levels))
    return out


def free_dims(factors: list[Factor]) -> int:
    """Degrees of freedom of the factors: shares sum to a constant (one fewer), a category counts levels − 1."""
    shares = sum(f.kind == "share" for f in factors)
    return (
        max(shares - 1, 0)
        + sum(f.kind in ("log", "numeric") for f in factors)
        + sum(len(f.levels) - 1 for f in factors if f.kind == "category")
    )


def encode(df: pd.DataFrame, factors: list[Factor]) -> np.ndarray:
    """The design matrix: shares and numbers as they are, log factors in log10, categories one-hot."""
    cols = []
    for f in factors:
        if f.kind == "category":
            text = df[f.column].map(lambda v: v if isinstance(v, bool) else str(v))
            cols += [(text == level).to_numpy(float) for level in f.levels]
        elif f.kind == "log":
            cols.append(np.log10(df[f.column].to_numpy(float)))
        else:
            cols.append(df[f.column].to_numpy(float))
    return np.column_stack(cols)


def _models(seed: int) -> dict[str, Any]:
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    return {
        "constant": DummyRegressor(),
        "ridge (linear)": make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)),
        "ridge (poly 2)": make_pipeline(
            StandardScaler(), PolynomialFeatures(2, include_bias=False), StandardScaler(), RidgeCV(alphas=ALPHAS)
        ),
        "boosted trees": GradientBoostingRegressor(
            n_estimators=100, max_depth=2, learning_rate=0.1, min_samples_leaf=2, random_state=seed
        ),
    }


def _folds(groups: np.ndarray, seed: int) -> tuple[list[np.ndarray], str]:
    """Test-row indices per fold: one grid point per fold up to 12 points, else 5 folds of whole grid points (the
    seeds of a point never straddle a fold: a held-out point is one the model has not seen)."""
    unique = np.unique(groups)
    if len(unique) <= 12:
        return [np.flatnonzero(groups == g) for g in unique], "leave-one-grid-point-out"
    order = np.random.default_rng(seed).permutation(unique)
    return [np.flatnonzero(np.isin(groups, part)) for part in np.array_split(order, 5)], "5-fold by grid point"


def _cv_score(model: Any, x: np.ndarray, y: np.ndarray, folds: list[np.ndarray]) -> ModelScore:
    from sklearn.base import clone

    pred = np.empty_like(y)
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        pred[test] = clone(model).fit(x[train], y[train]).predict(x[test])
    sse = float(np.sum((y - pred) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    return ModelScore("", math.sqrt(sse / len(y)), 1.0 - sse / sst if sst > 0 else float("nan"))


def _share_candidates(observed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mixtures inside the convex hull of those measured: a fine line for two varying shares, else the measured
    ones plus random convex combinations of two or three of them."""
    if observed.shape[1] == 2:
        total = observed.sum(axis=1).mean()
        first = np.linspace(observed[:, 0].min(), observed[:, 0].max(), 101)
        return np.column_stack([first, total - first])
    out = [observed]
    for _ in range(1500):
        k = int(rng.integers(2, min(3, len(observed)) + 1))
        pick = observed[rng.choice(len(observed), size=k, replace=False)]
        out.append(rng.dirichlet(np.ones(k)) @ pick)
    return np.unique(np.round(np.vstack(out), 4), axis=0)


def _candidates(
    factors: list[Factor], observed: pd.DataFrame, budget: int | None, rng: np.random.Generator
) -> pd.DataFrame:
    """Points to search: the product of each factor's values within the explored region (sampled when large)."""
    blocks: list[pd.DataFrame] = []
    shares = [f.column for f in factors if f.kind == "share"]
    if shares:
        values = _share_candidates(observed[shares].drop_duplicates().to_numpy(float), rng)
        blocks.append(pd.DataFrame(values, columns=shares))
    for f in factors:
        if f.kind == "share":
            continue
        if f.column == "budget" and budget is not None:
            values = [budget]
        elif f.kind == "category":
            values = list(observed[f.column].drop_duplicates())
        elif f.kind == "log":
            values = np.logspace(math.log10(f.low), math.log10(f.high), GRID_STEPS)
            if f.column in LOG_FACTORS:
                values = sorted({int(round(v)) for v in values})
        else:
            values = np.linspace(f.low, f.high, GRID_STEPS)
        blocks.append(pd.DataFrame({f.column: list(values)}))
    sizes = [len(b) for b in blocks]
    total = math.prod(sizes)
    if total <= MAX_CANDIDATES:
        combos = list(itertools.product(*(range(n) for n in sizes)))
    else:
        combos = {tuple(int(rng.integers(n)) for n in sizes) for _ in range(MAX_CANDIDATES)}
        combos = sorted(combos)
    parts = [b.iloc[[c[i] for c in combos]].reset_index(drop=True) for i, b in enumerate(blocks)]
    cand = pd.concat(parts, axis=1)
    if "instructions" in cand:  # a synthetic point needs S = budget / I ≥ 1
        b = cand["budget"] if "budget" in cand else budget
        if b is not None:
            cand = cand[cand["instructions"] <= b].reset_index(drop=True)
    return cand


def _bootstrap(
    model: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray, xs: np.ndarray, n: int, seed: int, need: int
) -> np.ndarray:
    """Std over ``n`` refits on grid points drawn with replacement, of the predictions at ``xs``; a resample with
    fewer than ``need`` distinct points (what the fit itself requires) is drawn again."""
    from sklearn.base import clone

    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    preds = []
    need = min(need, len(unique))
    for _ in range(n):
        pick = rng.choice(unique, size=len(unique), replace=True)
        while len(np.unique(pick)) < need:
            pick = rng.choice(unique, size=len(unique), replace=True)
        rows = np.concatenate([np.flatnonzero(groups == g) for g in pick])
        preds.append(clone(model).fit(x[rows], y[rows]).predict(xs))
    return np.std(preds, axis=0) if preds else np.zeros(len(xs))


def _plain(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return round(float(v), 6)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


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
    df = _prepared(trials[trials[metric].notna()].reset_index(drop=True))
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
    folds, cv = _folds(groups, seed)
    models = _models(seed)
    scores = []
    for name, model in models.items():
        score = _cv_score(model, x, y, folds)
        score.name = name
        scores.append(score)
    chosen = min((s for s in scores if s.name != "constant"), key=lambda s: s.rmse).name
    final = models[chosen].fit(x, y)

    low = lower_is_better(metric)
    rng = np.random.default_rng(seed)
    observed = df.groupby(cols, sort=True, dropna=False)[metric].mean().reset_index()
    cand = _candidates(factors, observed, budget, rng)
    if cand.empty:
        raise ConfigError(f"--budget {budget}: no explored point fits it (every I measured is above it)")
    xs = encode(cand, factors)
    cand["predicted"] = final.predict(xs)
    cand["uncertainty"] = _bootstrap(models[chosen], x, y, groups, xs, bootstrap, seed, dims + 2)
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
        if all(_fmt_labels(p["labels"]) != _fmt_labels(r["labels"]) for r in ranked):
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


# ---- the ready-to-run config of the recommended point -------------------------------------------------------


def shares_of(labels: dict[str, Any], constants: dict[str, Any]) -> dict[str, float]:
    """``{source: share}`` of every source, varied or not (normalized to sum to 1)."""
    raw = {
        k.removeprefix(SHARE_PREFIX): float(v) for k, v in {**constants, **labels}.items() if k.startswith("share.")
    }
    total = sum(raw.values()) or 1.0
    return {k: v / total for k, v in raw.items()}


def mixture_config(rec: Recommendation, base: dict[str, Any]) -> dict[str, Any]:
    """The sweep's base mixture with the recommended budget, per-source counts (summing to the budget) and any other
    ``mixture.*`` factor filled in; validated by :class:`MixtureConfig`."""
    from onlyif.config import validate_config
    from onlyif.data.mixture_config import MixtureConfig
    from onlyif.mixing.budget import allocate
    from onlyif.sweep.grid import mixture_point  # the grid's own way of setting a point's labels on the base

    if rec.budget is None:
        raise ConfigError("--budget: the sweep's budget is unknown; give one")
    labels: dict[str, Any] = {"budget": int(rec.budget)}
    shares = shares_of(rec.best["labels"], rec.constants)
    if shares:
        labels["mixture.counts"] = dict(zip(shares, allocate(int(rec.budget), list(shares.values())), strict=True))
    labels |= {k: v for k, v in rec.best["labels"].items() if k.startswith("mixture.")}
    mixture = mixture_point(copy.deepcopy(base), labels)
    return validate_config(MixtureConfig, mixture, source="recommended mixture").to_dict()


def generate_config(rec: Recommendation, base: dict[str, Any]) -> dict[str, Any]:
    """The sweep's base task with the recommended I, budget and ``task.*`` factors; validated by ``TaskConfig``."""
    from onlyif.config import validate_config
    from onlyif.sweep.grid import set_dotted
    from onlyif.tasks.config import TaskConfig

    task = copy.deepcopy(base)
    labels = {**rec.constants, **rec.best["labels"]}
    for key in ("instructions", "budget"):
        if labels.get(key) is not None:
            task[key] = int(labels[key])
    if "budget" in task:
        task.pop("examples_per_instruction", None)
    for key, value in labels.items():
        if key.startswith("task."):
            if key == UNIFORM_ALPHA and (value == "uniform" or value == 0):
                value = None
            set_dotted(task, key.removeprefix("task."), value)
    return validate_config(TaskConfig, task, source="recommended task").to_dict()


# ---- files --------------------------------------------------------------------------------------------------


def _fmt_labels(labels: dict[str, Any]) -> str:
    def one(k: str, v: Any) -> str:
        return f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"

    return ", ".join(one(k, v) for k, v in labels.items())


def _markdown(rec: Recommendation, title: str, source: str, config: str | None, plot: str | None) -> str:
    direction = "lower is better" if rec.lower_is_better else "higher is better"
    md = [
        f"# {title}",
        "",
        f"Source: {source}. Finished trials: {rec.trials} at {rec.points} grid points. Metric: `{rec.metric}` "
        f"({direction}). Budget: {rec.budget}.",
        "",
        "## Recommendation",
        "",
        f"- **{_fmt_labels(rec.best['labels'])}**: predicted `{rec.metric}` {rec.best['predicted']:.4g} ± "
        f"{rec.best['uncertainty']:.2g} (± = std of {rec.chosen} refitted on bootstrap resamples of the grid "
        f"points; a new point typically misses by the CV RMSE, {rec.chosen_score.rmse:.2g}).",
        f"- Best measured point: {_fmt_labels(rec.observed_best['labels'])}: {rec.observed_best['measured']:.4g} "
        f"(model: {rec.observed_best['predicted']:.4g}).",
        *(f"- {n}" for n in rec.notes),
        *([f"- Ready-to-run config: `{config}`."] if config else []),
        "",
        f"## Models (cross-validation: {rec.cv}, seeded)",
        "",
        "| model | CV RMSE | CV R² | |",
        "|---|---|---|---|",
    ]
    for m in rec.models:
        mark = "chosen" if m.name == rec.chosen else ("baseline" if m.name == "constant" else "")
        md.append(f"| {m.name} | {m.rmse:.4g} | {m.r2:.3f} | {mark} |")
    md += ["", f"## Factors ({rec.dims} free dimension(s))", "", "| factor | kind | explored |", "|---|---|---|"]
    for f in rec.factors:
        span = ", ".join(map(str, f.levels)) if f.kind == "category" else f"{f.low:g} – {f.high:g}"
        md.append(f"| `{f.column}` | {f.kind} | {span} |")
    if rec.constants:
        md += ["", "Held fixed (not varied by the sweep): " + _fmt_labels(rec.constants) + "."]
    md += ["", "## Top candidates", "", "| rank | point | predicted ± uncertainty |", "|---|---|---|"]
    for i, c in enumerate(rec.top, 1):
        md.append(f"| {i} | {_fmt_labels(c['labels'])} | {c['predicted']:.4g} ± {c['uncertainty']:.2g} |")
    if plot:
        md += ["", f"![predicted metric]({plot})"]
    return "\n".join(md) + "\n"


def plot_recommendation(rec: Recommendation, path: Path) -> Path | None:
    """Predicted metric over the shares (two sources: a curve with its band; more: a scatter over the first two
    shares), else over log I, else over the first numeric factor; measured points and the proposal marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = [f.column for f in rec.factors if f.kind == "share"]
    numeric = [f.column for f in rec.factors if f.kind in ("log", "numeric") and f.column != "budget"]
    xcol = None if len(shares) >= 2 else ("instructions" if "instructions" in numeric else next(iter(numeric), None))
    cand = rec.curve
    for f in rec.factors:  # every other factor held at its recommended value: the plot is a slice through it
        if f.kind != "share" and f.column != xcol:
            cand = cand[cand[f.column].astype(str) == str(rec.best["labels"].get(f.column))]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    best = rec.best["labels"]
    if len(shares) == 2 or xcol is not None:
        xcol = xcol or shares[0]
        cand = cand.sort_values(xcol)
        xs, ys, us = cand[xcol].to_numpy(float), cand["predicted"].to_numpy(), cand["uncertainty"].to_numpy()
        ax.plot(xs, ys, color="tab:blue", label=f"predicted ({rec.chosen})")
        ax.fill_between(xs, ys - us, ys + us, color="tab:blue", alpha=0.2, label="± bootstrap std")
        ax.scatter(rec.observed[xcol], rec.observed[rec.metric], color="black", s=18, label="measured (mean)")
        ax.axvline(float(best[xcol]), color="tab:red", ls="--", label=f"recommended {xcol}={best[xcol]:.3g}")
        if xcol in LOG_FACTORS:
            ax.set_xscale("log")
        ax.set_xlabel(xcol)
        ax.set_ylabel(rec.metric)
        ax.legend(fontsize=8)
    elif len(shares) >= 3:
        a, b = shares[0], shares[1]
        sc = ax.scatter(cand[a], cand[b], c=cand["predicted"], cmap="viridis_r" if rec.lower_is_better else "viridis")
        fig.colorbar(sc, ax=ax, label=f"predicted {rec.metric}")
        ax.scatter(rec.observed[a], rec.observed[b], facecolors="none", edgecolors="black", s=40, label="measured")
        ax.scatter([best[a]], [best[b]], marker="*", color="tab:red", s=200, label="recommended")
        ax.set_xlabel(a)
        ax.set_ylabel(b)
        ax.legend(fontsize=8)
    else:
        plt.close(fig)
        return None
    ax.set_title(f"{rec.metric}: model over the explored region", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_recommendation(
    rec: Recommendation,
    out: str | Path,
    *,
    title: str = "Recommendation",
    source: str = "trials",
    mixture: dict[str, Any] | None = None,
    task: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``recommend.md``, ``recommend.json``, ``recommend.png`` and the recommended point's config into
    ``out`` (``mixture.yaml`` from a base ``mixture``, else ``generate.yaml`` from a base ``task``); return the
    JSON dict."""
    import yaml

    from onlyif.io import write_json_atomic, write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = None
    if mixture is not None:
        config, data = "mixture.yaml", mixture_config(rec, mixture)
        comment = f"# onlyif mix --config {config} --out OUT   (recommended by onlyif recommend)\n"
    elif task is not None:
        config, data = "generate.yaml", generate_config(rec, task)
        comment = f"# onlyif generate --config {config} --out OUT   (recommended by onlyif recommend)\n"
    if config is not None:
        write_text_atomic(out / config, comment + yaml.safe_dump(data, sort_keys=False))
    plot = plot_recommendation(rec, out / "recommend.png")
    plot_name = plot.name if plot is not None else None
    write_text_atomic(out / "recommend.md", _markdown(rec, title, source, config, plot_name))
    result = {
        "title": title,
        "source": source,
        "metric": rec.metric,
        "lower_is_better": rec.lower_is_better,
        "budget": rec.budget,
        "trials": rec.trials,
        "points": rec.points,
        "factors": [f.to_dict() for f in rec.factors],
        "free_dims": rec.dims,
        "constants": rec.constants,
        "cv": rec.cv,
        "models": [{"name": m.name, "cv_rmse": m.rmse, "cv_r2": m.r2} for m in rec.models],
        "chosen": rec.chosen,
        "beats_baseline": rec.beats_baseline,
        "recommendation": rec.best | ({"counts": _counts(data)} if mixture is not None else {}),
        "top": rec.top,
        "best_measured": rec.observed_best,
        "notes": rec.notes,
        "config": config,
        "plot": plot_name,
    }
    write_json_atomic(out / "recommend.json", result)
    return result


def _counts(mixture: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["count"] for s in mixture["sources"] if s.get("count") is not None}
