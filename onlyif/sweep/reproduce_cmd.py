"""``onlyif reproduce``: an embedded CPU-sized experiment (default: emergence), its report and a computed verdict."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from onlyif.cli import add_config_arguments

PRESET = Path(__file__).with_name("presets") / "reproduce.yaml"
EXPERIMENTS = {"emergence": PRESET} | {p.stem: p for p in sorted(PRESET.parent.glob("*.yaml")) if p != PRESET}
"""``--experiment NAME`` → its preset: ``emergence`` is ``reproduce.yaml``, every other preset file is its stem."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.set_defaults(config=None)
    parser.add_argument(
        "--experiment",
        metavar="NAME",
        help=f"which finding to reproduce: {', '.join(EXPERIMENTS)} (default: emergence)",
    )
    parser.add_argument("--out", metavar="EXP_DIR", help="experiment folder (default: runs/<preset name>-<time>)")
    parser.add_argument("--resume", metavar="EXP_DIR", help="continue an interrupted reproduction")


def run(args: argparse.Namespace) -> int:
    from onlyif.cli import check_resume_args
    from onlyif.config import load_config
    from onlyif.errors import ConfigError
    from onlyif.mlflow_names import where_to_look
    from onlyif.sweep.config import SweepConfig
    from onlyif.sweep.grid import expand_grid
    from onlyif.sweep.run import run_sweep

    if args.experiment is not None and args.experiment not in EXPERIMENTS:
        raise ConfigError(f"--experiment: unknown experiment {args.experiment!r}; one of {', '.join(EXPERIMENTS)}")
    if args.experiment is not None and (args.config or args.resume):
        raise ConfigError("--experiment: names an embedded preset; drop --config/--resume")
    if args.resume:
        check_resume_args(args)
        outcome = run_sweep(None, args.resume, resume=True)
    else:
        preset = EXPERIMENTS[args.experiment or "emergence"]
        cfg = load_config(SweepConfig, args.config or preset, args.overrides)
        out = args.out or f"runs/{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        where = (
            "the MLflow server at $MLFLOW_TRACKING_URI"
            if os.environ.get("MLFLOW_TRACKING_URI")
            else "MLflow on sqlite there"
        )
        points = sum(p.skip_reason is None for p in expand_grid(cfg))
        print(f"onlyif reproduce: {points} grid points → {out} ({where})")
        outcome = run_sweep(cfg, out)
    report = outcome.report
    if report is not None:
        from onlyif.report.render import conclusion_lines

        for line in conclusion_lines(report):
            print(line)
        verdict = "SHOWN" if report["shown"] else "NOT SHOWN"
        what = f"finding {report['finding']}" if report.get("finding") else "phenomenon"
        print(f"{what} {verdict}; report: {outcome.exp_dir / 'report' / 'report.md'}")
    print(f"{outcome.finished}/{outcome.total} trials in {outcome.wall_seconds / 60:.1f} min")
    print(where_to_look(outcome.tracking_uri))
    return outcome.exit_code
