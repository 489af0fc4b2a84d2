"""PNG plots of a sweep (matplotlib, Agg backend): accuracy vs I, budget × I heatmap, α skew, domains."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from onlyif.report.analysis import METRIC_NAMES, Curve, _setting_text  # noqa: E402

_STYLE = {
    "test_unseen/exact_match_applied": ("tab:red", "-", "o"),
    "test_unseen/exact_match": ("tab:red", ":", "x"),
    "test_seen/exact_match_applied": ("tab:blue", "-", "o"),
    "test_seen/exact_match": ("tab:blue", ":", "x"),
    "test_domain/exact_match_applied": ("tab:green", "-", "o"),
    "test_domain/exact_match": ("tab:green", ":", "x"),
}


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_vs_instructions(curves: list[Curve], metrics: list[str], main_metric: str, path: Path) -> Path | None:
    """Accuracy vs I (log x), one panel per setting of the other factors; the fitted threshold is marked."""
    curves = [c for c in curves if len(c.instructions) >= 2]
    if not curves:
        return None
    n = len(curves)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, curve in zip(axes.flat, curves, strict=False):
        for m in metrics:
            color, ls, marker = _STYLE.get(m, ("gray", "-", "."))
            ax.errorbar(
                curve.instructions, curve.means[m], yerr=curve.stds[m], color=color, ls=ls, marker=marker,
                capsize=3, label=METRIC_NAMES.get(m, m),
            )  # fmt: skip
        fit = curve.fit
        if fit is not None and fit.threshold is not None:
            xs = np.logspace(np.log10(curve.instructions[0]), np.log10(curve.instructions[-1]), 200)
            shift = np.log(fit.level / (fit.top - fit.level))  # the curve passes through (threshold, level)
            ys = fit.top / (1.0 + np.exp(-(np.log10(xs / fit.threshold) / fit.width + shift)))
            ax.plot(xs, ys, color="k", lw=0.8, alpha=0.6, label="logistic fit")
            ax.axvline(fit.threshold, color="k", lw=0.8, ls="--", label=f"threshold I≈{fit.threshold:.0f}")
            if fit.low is not None:
                ax.axvspan(fit.low, min(fit.high, curve.instructions[-1]), color="k", alpha=0.08)
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("distinct instructions I")
        ax.set_ylabel("exact match")
        ax.set_title(_setting_text(curve.setting), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    return _save(fig, path)


def plot_heatmap(summary: pd.DataFrame, metric: str, path: Path) -> Path | None:
    """Budget × I heatmap of the mean ``metric`` (only when the sweep has several budgets)."""
    if "budget" not in summary or summary["budget"].nunique() < 2 or summary["instructions"].nunique() < 2:
        return None
    table = summary.pivot_table(index="budget", columns="instructions", values=f"{metric}:mean", aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * table.shape[1], 1.2 + 0.5 * table.shape[0]))
    im = ax.imshow(table.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=45)
    ax.set_yticks(range(table.shape[0]), [str(r) for r in table.index])
    for (r, c), v in np.ndenumerate(table.to_numpy(dtype=float)):
        if not np.isnan(v):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    ax.set_xlabel("distinct instructions I")
    ax.set_ylabel("budget (examples)")
    ax.set_title(METRIC_NAMES.get(metric, metric), fontsize=9)
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def plot_vs_factor(summary: pd.DataFrame, factor: str, metrics: list[str], path: Path, xlabel: str) -> Path | None:
    """Accuracy vs a categorical factor (e.g. frequency skew α, families), one line per I."""
    if factor not in summary or summary[factor].astype(str).nunique() < 2:
        return None
    cats = list(dict.fromkeys(summary[factor].astype(str)))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(cats) + 2), 3.8))
    for inst, sub in summary.groupby("instructions"):
        sub = sub.assign(_cat=sub[factor].astype(str))
        for m in metrics:
            color, ls, marker = _STYLE.get(m, ("gray", "-", "."))
            vals = sub.groupby("_cat")[f"{m}:mean"].mean()
            ax.plot(
                [cats.index(c) for c in vals.index], vals.to_numpy(), ls=ls, marker=marker,
                label=f"I={inst}: {METRIC_NAMES.get(m, m)}", alpha=0.85,
            )  # fmt: skip
    ax.set_xticks(range(len(cats)), cats, rotation=20, fontsize=8)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("exact match")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    return _save(fig, path)


def plot_comparison(summary: pd.DataFrame, metric: str, factors: list[str], x: str | None, path: Path) -> Path:
    """``metric`` per grid point (mean ± std over seeds): a line over the numeric factor ``x`` when it alone tells
    the points apart, else one bar per point."""
    mean, std = summary[f"{metric}:mean"], summary[f"{metric}:std"].fillna(0.0)
    if x is not None and summary[x].nunique() == len(summary):
        order = summary[x].argsort().to_numpy()
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ax.errorbar(summary[x].to_numpy()[order], mean.to_numpy()[order], yerr=std.to_numpy()[order], marker="o",
                    capsize=3)  # fmt: skip
        ax.set_xlabel(x)
    else:
        names = [", ".join(f"{c.split('.')[-1]}={row[c]}" for c in factors) or "all" for _, row in summary.iterrows()]
        fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(names) + 2), 4.2))
        ax.bar(range(len(names)), mean.to_numpy(), yerr=std.to_numpy(), capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    return _save(fig, path)
