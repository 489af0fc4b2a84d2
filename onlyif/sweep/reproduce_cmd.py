"""``onlyif reproduce``: the embedded-default emergence grid (CPU-sized), its report and a computed verdict."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from onlyif.cli import add_config_arguments

PRESET = Path(__file__).with_name("presets") / "reproduce.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.set_defaults(config=None)
    parser.add_argument("--out", metavar="EXP_DIR", help="experiment folder (default: runs/reproduce-<time>)")
    parser.add_argument("--resume", metavar="EXP_DIR", help="continue an interrupted reproduction")


def run(args: argparse.Namespace) -> int:
    from onlyif.config import load_config
    from onlyif.mlflow_names import where_to_look
    from onlyif.sweep.config import SweepConfig
    from onlyif.sweep.run import run_sweep
    from onlyif.sweep.sweep_cmd import check_resume_args, print_conclusions

    if args.resume:
        check_resume_args(args)
        outcome = run_sweep(None, args.resume, resume=True)
    else:
        cfg = load_config(SweepConfig, args.config or PRESET, args.overrides)
        out = args.out or f"runs/reproduce-{time.strftime('%Y%m%d-%H%M%S')}"
        where = (
            "the MLflow server at $MLFLOW_TRACKING_URI"
            if os.environ.get("MLFLOW_TRACKING_URI")
            else "MLflow on sqlite there"
        )
        print(f"onlyif reproduce: {len(cfg.grid.instructions or [])} grid points → {out} ({where})")
        outcome = run_sweep(cfg, out)
    report = outcome.report
    if report is not None:
        print_conclusions(report)
        verdict = "SHOWN" if report["shown"] else "NOT SHOWN"
        print(f"phenomenon {verdict}; report: {outcome.exp_dir / 'report' / 'report.md'}")
    print(f"{outcome.finished}/{outcome.total} trials in {outcome.wall_seconds / 60:.1f} min")
    print(where_to_look(outcome.tracking_uri))
    return 0 if outcome.finished + outcome.stopped == outcome.total else 1
