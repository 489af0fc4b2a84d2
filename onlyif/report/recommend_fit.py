"""The recommender's regression (pure: no Ray): which grid labels vary and how each is modelled (:class:`Factor`,
:func:`find_factors`, :func:`encode`), the candidate models, their cross-validation by grid point and the bootstrap
spread of a model's predictions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from onlyif.report.analysis import label_columns

SHARE_PREFIX = "share."
LOG_FACTORS = ("instructions", "budget")
"""Numeric labels that span decades: modelled (and searched) in log10."""
IGNORED = {"seed", "examples_per_instruction"}
"""Labels that are not factors: the seed, and S (= budget / I, so a function of two factors)."""
UNIFORM_ALPHA = "task.frequency_alpha"
"""Its label is ``uniform`` for no skew, which is α = 0 of the power law."""
ALPHAS = np.logspace(-3, 3, 13)


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


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def prepared(trials: pd.DataFrame) -> pd.DataFrame:
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


def models(seed: int) -> dict[str, Any]:
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


def folds(groups: np.ndarray, seed: int) -> tuple[list[np.ndarray], str]:
    """Test-row indices per fold: one grid point per fold up to 12 points, else 5 folds of whole grid points (the
    seeds of a point never straddle a fold: a held-out point is one the model has not seen)."""
    unique = np.unique(groups)
    if len(unique) <= 12:
        return [np.flatnonzero(groups == g) for g in unique], "leave-one-grid-point-out"
    order = np.random.default_rng(seed).permutation(unique)
    return [np.flatnonzero(np.isin(groups, part)) for part in np.array_split(order, 5)], "5-fold by grid point"


def cv_score(model: Any, x: np.ndarray, y: np.ndarray, folds: list[np.ndarray]) -> ModelScore:
    from sklearn.base import clone

    pred = np.empty_like(y)
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        pred[test] = clone(model).fit(x[train], y[train]).predict(x[test])
    sse = float(np.sum((y - pred) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    return ModelScore("", math.sqrt(sse / len(y)), 1.0 - sse / sst if sst > 0 else float("nan"))


def bootstrap_std(
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
