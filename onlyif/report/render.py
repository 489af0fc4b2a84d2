"""Writing the sweep report: ``report.md``, ``report.json``, ``trials.csv`` and PNG plots in one folder."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from onlyif.io import write_json_atomic, write_text_atomic
from onlyif.report.analysis import METRIC_NAMES, build_curves, factor_columns, fmt_bound, metric_columns, summarize
from onlyif.report.compare import compare, comparison_metrics, lower_is_better, numeric_factor, varying
from onlyif.report.config import ReportConfig
from onlyif.report.findings import judge
from onlyif.report.plots import plot_comparison, plot_heatmap, plot_vs_factor, plot_vs_instructions


def _fmt(mean: float, std: float, seeds: int) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.4g}" if seeds < 2 or pd.isna(std) else f"{mean:.4g} ± {std:.2g}"


def _value(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _table(summary: pd.DataFrame, metrics: list[str], labels: list[str]) -> str:
    names = [f"share {c[6:]}" if c.startswith("share.") else c.split(".")[-1] for c in labels]
    head = [*names, "seeds", *(METRIC_NAMES.get(m, m) for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in summary.iterrows():
        cells = [_value(row[c]) for c in labels] + [_value(row["seeds"])]
        cells += [_fmt(row[f"{m}:mean"], row[f"{m}:std"], row["seeds"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _head(title: str, source: str, n: int, conclusion: list[str]) -> list[str]:
    return [
        f"# {title}",
        "",
        f"Source: {source}. Trials: {n}.",
        "",
        "## Conclusion",
        "",
        *(f"- {c}" for c in conclusion),
    ]


def _tail(plots: list[Path], skipped: list[dict[str, Any]] | None) -> list[str]:
    md = []
    if plots:
        md += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    if skipped:
        md += ["## Skipped grid points", ""] + [f"- `{s['id']}`: {s['reason']}" for s in skipped] + [""]
    return md


def _write_files(
    out: Path,
    trials: pd.DataFrame,
    md: list[str],
    plots: list[Path],
    skipped: list[dict[str, Any]] | None,
    title: str,
    source: str,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """Write ``trials.csv``, ``report.md`` (``md`` + plots + skipped points) and ``report.json`` (``fields`` between
    the heading keys and the plots); return the ``report.json`` dict."""
    trials.to_csv(out / "trials.csv", index=False)
    write_text_atomic(out / "report.md", "\n".join(md + _tail(plots, skipped)))
    result = {
        "title": title,
        "source": source,
        "trials": len(trials),
        **fields,
        "plots": [str(p.relative_to(out)) for p in plots],
        "skipped": skipped or [],
    }
    write_json_atomic(out / "report.json", result)
    return result


def conclusion_lines(report: dict[str, Any]) -> list[str]:
    """The computed conclusions of a ``report.json`` dict (per curve, or of a comparison), in order."""
    return [line for c in report["curves"] for line in c["conclusion"]] + report.get("conclusion", [])


def _write_comparison(
    trials: pd.DataFrame, cfg: ReportConfig, out: Path, *, title: str, source: str, skipped: list | None
) -> dict[str, Any]:
    """The report of a sweep without an instruction axis: points ranked by the metric, table and plot."""
    metrics = comparison_metrics(trials)
    metric = cfg.metric
    if "metric" not in cfg.model_fields_set and metric not in metrics:  # the synthetic default does not apply
        metric = next((m for m in metrics if m.endswith("/loss")), metrics[0] if metrics else None)
    if metric not in metrics:
        raise ValueError(f"report.metric: {metric!r} is not among the trial metrics {metrics}")
    summary = summarize(trials, metrics)
    factors = varying(trials)
    result = compare(summary, metric, factors)
    made = [plot_comparison(summary, metric, factors, numeric_factor(summary, factors), out / "plots" / "points.png")]
    direction = "lower is better" if lower_is_better(metric) else "higher is better"
    md = _head(title, source, len(trials), result.conclusion)
    md += ["", f"## Results by grid point (mean ± std over seeds; `{metric}`: {direction})", ""]
    md += [_table(summary, metrics, factors), ""]
    fields = {"metric": metric, "mode": "comparison", "shown": None, "curves": []}
    return _write_files(
        out,
        trials,
        md,
        made,
        skipped,
        title,
        source,
        fields | {"points": result.points, "conclusion": result.conclusion},
    )


def write_report(
    trials: pd.DataFrame,
    cfg: ReportConfig,
    out_dir: str | Path,
    *,
    title: str,
    source: str,
    skipped: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Analyse finished trials and write the report files into ``out_dir``; returns the ``report.json`` dict.

    Args:
        trials: one row per finished trial (grid labels + final metrics).
        cfg: threshold level, bootstrap size and the criteria of the verbal conclusion.
        title: heading of ``report.md``.
        source: where the trials were read from (shown in the report).
        skipped: grid points that were not run (``{"id", "reason"}``), listed in the report.
    """
    out = Path(out_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    if trials.empty:
        raise ValueError("no finished trials to report on")
    if "instructions" not in trials.columns:
        return _write_comparison(trials, cfg, out, title=title, source=source, skipped=skipped)
    metrics = metric_columns(trials)
    curves = build_curves(trials, cfg)
    summary = summarize(trials, metrics)
    factors = factor_columns(trials)
    labels = [c for c in ("instructions", "examples_per_instruction", "budget") if c in summary] + [
        c for c in factors if c != "budget"
    ]
    made = [
        plot_vs_instructions(curves, metrics, cfg.metric, plots / "accuracy_vs_instructions.png"),
        plot_heatmap(summary, cfg.metric, plots / "heatmap_budget_instructions.png"),
        plot_vs_factor(summary, "task.frequency_alpha", metrics, plots / "accuracy_vs_alpha.png", "frequency skew α"),
        plot_vs_factor(summary, "task.noop_share", metrics, plots / "accuracy_vs_noop_share.png", "no-op share"),
        plot_vs_factor(summary, "task.families", metrics, plots / "domains.png", "training families (within/cross)"),
    ]
    made = [p for p in made if p is not None]

    md = _head(title, source, len(trials), [s for c in curves for s in c.conclusion])
    md += ["", "## Results (mean ± std over seeds)", "", _table(summary, metrics, labels), ""]
    if any(c.fit is not None for c in curves):
        md += ["## Emergence threshold", ""]
        md += [
            f"Logistic fit of `{cfg.metric}` in log10 I; threshold = the I where it crosses {cfg.threshold:g}.",
            "",
            "| setting | threshold I | 95% interval | width (decades) | plateau | interval from |",
            "|---|---|---|---|---|---|",
        ]
        for c in curves:
            f = c.fit
            if f is None:
                continue
            where = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in c.setting.items()) or "all"
            thr = f"{f.threshold:.0f}" if f.threshold is not None else f"outside range ({f.censored})"
            iv = f"{f.low:.0f}–{fmt_bound(f.high)}" if f.low is not None else "–"
            width = f"{f.width:.2f}" if f.width is not None else "–"
            top = f"{f.top:.2f}" if f.top is not None else "–"
            md.append(f"| {where} | {thr} | {iv} | {width} | {top} | {f.method} ({f.resamples} resamples) |")
        md.append("")
    verdict = judge(trials, cfg.finding) if cfg.finding is not None else None
    if verdict is not None:
        md += [f"## Finding: {cfg.finding.kind}", "", *(f"- {line}" for line in verdict.lines), ""]
    fields = {
        "metric": cfg.metric,
        "shown": any(c.shown for c in curves) if curves else False,
        "curves": [
            {
                "setting": c.setting,
                "instructions": c.instructions,
                "means": c.means,
                "stds": c.stds,
                "seeds": c.seeds,
                "fit": asdict(c.fit) if c.fit is not None else None,
                "shown": c.shown,
                "conclusion": c.conclusion,
            }
            for c in curves
        ],
    }
    if verdict is not None:  # the finding's verdict, not the emergence of any one curve
        fields |= {"finding": cfg.finding.kind, "shown": verdict.shown, "conclusion": verdict.lines}
    return _write_files(out, trials, md, made, skipped, title, source, fields)
