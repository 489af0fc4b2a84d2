"""``onlyif train``: fine-tune a causal LM with Ray Train + DeepSpeed (see ``onlyif/train/api.py``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onlyif.cli import add_config_arguments
from onlyif.config import apply_overrides, load_config, read_yaml, validate_config
from onlyif.errors import OnlyIfError
from onlyif.train.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--data", metavar="DIR", help="dataset directory or s3://… URI (DIR/train/*.parquet, DIR/test_*/...)"
    )
    parser.add_argument(
        "--eval-data",
        metavar="DIR",
        action="append",
        default=[],
        help="another dataset directory to take eval splits from (repeatable; e.g. held-out sets for a mixture)",
    )
    parser.add_argument("--out", metavar="RUN_DIR", help="new run directory or s3://… URI (must be empty or absent)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (or at its s3://… URI) from its latest checkpoint (its config.yaml and "
        "data, plus any --set)",
    )


def _remote_run_files(uri: str) -> tuple[str, dict, str]:
    """A URI run's config (as a mapping) and run.json text."""
    from onlyif.config import load_yaml
    from onlyif.storage import read_file

    uri = uri.rstrip("/")
    cfg, run = read_file(uri, "config.yaml", "--resume"), read_file(uri, "run.json", "--resume")
    if cfg is None or run is None:
        raise OnlyIfError(f"--resume {uri}: not a run directory (config.yaml / run.json missing)")
    return uri, load_yaml(cfg.decode()) or {}, run.decode()


def run(args: argparse.Namespace) -> int:
    from onlyif.storage import is_uri
    from onlyif.train.api import run_training

    if args.resume:
        if args.out or args.config:
            raise OnlyIfError("--resume RUN_DIR takes the run's own config and output folder (drop --out/--config)")
        if is_uri(args.resume):  # a run written to object storage: its files as last uploaded
            run_dir, raw, run_text = _remote_run_files(args.resume)
            cfg_file = f"{run_dir}/config.yaml"
        else:
            run_dir = Path(args.resume)
            cfg_file, run_file = run_dir / "config.yaml", run_dir / "run.json"
            if not cfg_file.is_file() or not run_file.is_file():
                raise OnlyIfError(f"--resume {run_dir}: not a run directory (config.yaml / run.json missing)")
            raw, run_text = read_yaml(cfg_file), run_file.read_text()
        cfg = validate_config(TrainConfig, apply_overrides(raw, args.overrides), str(cfg_file), args.overrides)
        info = json.loads(run_text)
        data = args.data or info["data"]
        evals = args.eval_data or info.get("eval_data")
        outcome = run_training(cfg, data, run_dir, resume=True, eval_data=evals, progress=True)
    else:
        if not args.data or not args.out:
            raise OnlyIfError("--data DIR and --out RUN_DIR are required (or --resume RUN_DIR)")
        cfg = load_config(TrainConfig, args.config, args.overrides)
        outcome = run_training(cfg, args.data, args.out, eval_data=args.eval_data, progress=True)
    shown = {
        k: round(v, 4)
        for k, v in outcome.metrics.items()
        if k == "train_loss" or k.endswith(("/exact_match", "/loss"))
    }
    where = {"run_dir": outcome.run_uri or str(outcome.run_dir), "model": str(outcome.model_dir)}
    print(json.dumps(where | shown, indent=2))
    return 0
