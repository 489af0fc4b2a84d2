"""The recommender's outputs: the recommended point's ready-to-run config (``mixture.yaml`` or ``generate.yaml``,
set on the sweep's base the way the grid sets a point), ``recommend.md``, ``recommend.json`` and ``recommend.png``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from onlyif.errors import ConfigError
from onlyif.report.recommend import Recommendation, fmt_labels
from onlyif.report.recommend_fit import LOG_FACTORS, SHARE_PREFIX, UNIFORM_ALPHA


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
    from onlyif.data.mixture_config import MixtureConfig, mixture_point  # as the grid sets a point's labels
    from onlyif.mixing.budget import allocate

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
    from onlyif.config import set_dotted, validate_config
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
        f"- **{fmt_labels(rec.best['labels'])}**: predicted `{rec.metric}` {rec.best['predicted']:.4g} ± "
        f"{rec.best['uncertainty']:.2g} (± = std of {rec.chosen} refitted on bootstrap resamples of the grid "
        f"points; a new point typically misses by the CV RMSE, {rec.chosen_score.rmse:.2g}).",
        f"- Best measured point: {fmt_labels(rec.observed_best['labels'])}: {rec.observed_best['measured']:.4g} "
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
        md += ["", "Held fixed (not varied by the sweep): " + fmt_labels(rec.constants) + "."]
    md += ["", "## Top candidates", "", "| rank | point | predicted ± uncertainty |", "|---|---|---|"]
    for i, c in enumerate(rec.top, 1):
        md.append(f"| {i} | {fmt_labels(c['labels'])} | {c['predicted']:.4g} ± {c['uncertainty']:.2g} |")
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
