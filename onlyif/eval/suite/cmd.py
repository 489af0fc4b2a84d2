"""``onlyif eval suite``: several evaluation tasks (QA, multiple choice, code) on one model, one summary."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from onlyif.cli import add_config_arguments
    from onlyif.eval.suite.runner import DEFAULT_EXPERIMENT

    parser.add_argument("--model", required=True, metavar="RUN_DIR|HF_DIR", help="a run directory or an HF model dir")
    add_config_arguments(parser, required=True)
    parser.add_argument("--out", required=True, metavar="DIR", help="write <task>.jsonl and summary.json here")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="run the model on this device (default auto: a GPU when one is visible)",
    )
    parser.add_argument(
        "--mlflow-uri", metavar="URI", help="log one MLflow run (default: $MLFLOW_TRACKING_URI when set, else none)"
    )
    parser.add_argument(
        "--mlflow-experiment", default=DEFAULT_EXPERIMENT, metavar="NAME", help=f"default {DEFAULT_EXPERIMENT}"
    )


def run(args: argparse.Namespace) -> int:
    from onlyif.config import load_config
    from onlyif.eval.suite.config import SuiteConfig
    from onlyif.eval.suite.runner import SCORE, SUMMARY_FILE, run_suite

    cfg = load_config(SuiteConfig, args.config, args.overrides)
    metrics = run_suite(
        args.model,
        cfg,
        args.out,
        device=args.device,
        overwrite=args.overwrite,
        mlflow_uri=args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or None,
        mlflow_experiment=args.mlflow_experiment,
    )
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        if key != SCORE and not key.endswith("/n"):
            print(f"{key:<{width}}  {value:.4f}")
    print(f"summary: {os.path.join(args.out, SUMMARY_FILE)}")
    print(f"{SCORE} = {metrics[SCORE]:.4f}")
    return 0
