"""``onlyif report EXP_DIR``: tables, plots, the emergence threshold and the conclusion of a sweep."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onlyif.errors import OnlyIfError

if TYPE_CHECKING:
    import pandas as pd

    from onlyif.sweep.config import SweepConfig

REPORT_DIR = "report"


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """``EXP_DIR`` and ``--from tune|mlflow``: which finished sweep to read, and from where (also `recommend`)."""
    parser.add_argument("exp_dir", metavar="EXP_DIR", help="experiment folder written by `onlyif sweep --out`")
    parser.add_argument(
        "--from",
        dest="source",
        choices=("tune", "mlflow"),
        default="tune",
        help="read trial results from the Tune experiment (default) or from the MLflow child runs",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser)
    parser.add_argument("--out", metavar="DIR", help=f"report folder (default: EXP_DIR/{REPORT_DIR})")
    parser.add_argument("--no-mlflow", action="store_true", help="do not attach the report to the parent MLflow run")


def load_trials(exp_dir: str | Path, source: str = "tune") -> tuple[SweepConfig, dict[str, Any], pd.DataFrame, str]:
    """The config, state and finished trials (one row each) of the sweep in ``exp_dir``, read from its Tune
    experiment or its MLflow child runs, and where they were read from (in words)."""
    from onlyif.report.sources import trials_from_mlflow, trials_from_tune
    from onlyif.sweep.run import load_experiment

    exp = Path(exp_dir).resolve()
    cfg, state = load_experiment(exp)
    if source == "tune":
        trials = trials_from_tune(cfg.tune_experiment(exp))
        where = f"Tune experiment {cfg.tune_experiment(exp)}"
    else:
        trials = trials_from_mlflow(state["tracking_uri"], state["parent_run_id"])
        where = f"MLflow {state['tracking_uri']} (parent run {state['parent_run_id']})"
    if trials.empty:
        raise OnlyIfError(f"{exp}: no finished trials yet (read from {source})")
    return cfg, state, trials, where


def make_report(
    exp_dir: str | Path, *, source: str = "tune", out: str | Path | None = None, log_to_mlflow: bool = True
) -> dict[str, Any]:
    """Write the report of the sweep in ``exp_dir`` (from Tune results or MLflow) and return ``report.json``."""
    from onlyif.report.render import write_report
    from onlyif.sweep.run import GRID_FILE

    exp = Path(exp_dir).resolve()
    cfg, state, trials, where = load_trials(exp, source)
    skipped = json.loads((exp / GRID_FILE).read_text()).get("skipped", [])
    total = len(json.loads((exp / GRID_FILE).read_text()).get("points", []))
    title = f"Sweep {cfg.name}" + ("" if len(trials) >= total else f" (partial: {len(trials)} of {total} trials)")
    out_dir = Path(out) if out is not None else exp / REPORT_DIR
    try:
        result = write_report(trials, cfg.report, out_dir, title=title, source=where, skipped=skipped)
    except ValueError as exc:
        raise OnlyIfError(f"{exp}: {exc}") from None
    if log_to_mlflow:
        from mlflow import MlflowClient

        MlflowClient(state["tracking_uri"]).log_artifacts(state["parent_run_id"], str(out_dir), "report")
    return result


def run(args: argparse.Namespace) -> int:
    result = make_report(args.exp_dir, source=args.source, out=args.out, log_to_mlflow=not args.no_mlflow)
    out = Path(args.out) if args.out else Path(args.exp_dir) / REPORT_DIR
    from onlyif.report.render import conclusion_lines

    for line in conclusion_lines(result):
        print(line)
    print(f"report: {out / 'report.md'}")
    return 0
