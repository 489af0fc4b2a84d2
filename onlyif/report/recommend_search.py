"""The points the recommender searches (pure: no Ray): each factor's values inside the region the sweep explored —
shares on the convex hull of the mixtures measured, numbers within their min–max — crossed, sampled when large."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from onlyif.report.recommend_fit import LOG_FACTORS, Factor

MAX_CANDIDATES = 6000
GRID_STEPS = 41


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


def candidates(
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
