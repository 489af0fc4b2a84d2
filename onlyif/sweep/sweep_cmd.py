"""``onlyif sweep``: a budget-vs-diversity grid with Ray Tune, logged to MLflow, ending with the report."""

from __future__ import annotations

import argparse

from onlyif.cli import add_config_arguments, check_resume_args
from onlyif.errors import OnlyIfError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", metavar="EXP_DIR", help="experiment folder (new or empty)")
    parser.add_argument(
        "--resume", metavar="EXP_DIR", help="continue an interrupted sweep (finished trials are kept, not rerun)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the grid points (and skipped ones) and exit")
    parser.add_argument("--no-report", action="store_true", help="skip the report at the end")


def run(args: argparse.Namespace) -> int:
    from onlyif.config import load_config
    from onlyif.sweep.config import SweepConfig

    if args.resume:
        check_resume_args(args)
        cfg = None
    else:
        if not args.config:
            raise OnlyIfError("--config FILE is required (or --resume EXP_DIR)")
        cfg = load_config(SweepConfig, args.config, args.overrides)
        if args.dry_run:
            from onlyif.sweep.grid import expand_grid

            for p in expand_grid(cfg):
                print(
                    f"{'skip' if p.skip_reason else 'run '} {p.id}" + (f": {p.skip_reason}" if p.skip_reason else "")
                )
            return 0
        if not args.out:
            raise OnlyIfError("--out EXP_DIR is required")
    from onlyif.mlflow_names import where_to_look
    from onlyif.sweep.run import run_sweep

    exp = args.resume or args.out
    outcome = run_sweep(cfg, exp, resume=bool(args.resume), report=not args.no_report)
    if outcome.report is not None:
        from onlyif.report.render import conclusion_lines

        for line in conclusion_lines(outcome.report):
            print(line)
        print(f"report: {outcome.exp_dir / 'report' / 'report.md'}")
    print(f"{outcome.finished}/{outcome.total} trials finished in {outcome.wall_seconds:.0f} s")
    print(where_to_look(outcome.tracking_uri))
    return outcome.exit_code
