"""The ``onlyif`` command line: one subcommand per job, each implemented in its own module.

Subcommand modules are imported only when selected (``onlyif --help`` stays fast). Each module provides
``add_arguments(parser)`` and ``run(args) -> int``. User errors print one line and exit non-zero
(2 for configuration errors).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback

from onlyif import __version__
from onlyif.errors import OnlyIfError
from onlyif.gc_tuning import raise_gc_thresholds
from onlyif.ray_errors import user_error

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("onlyif.data.generate_cmd", "build the synthetic rewrite-task splits with Ray Data"),
    "mix": ("onlyif.data.mix_cmd", "build a budgeted, diversity-aware mixture of real instruction data"),
    "diversity": ("onlyif.data.diversity_cmd", "diversity metrics of a dataset or mixture"),
    "sources": (
        "onlyif.data.code_sources_cmd",
        "write offline code and general instruction rows from documented Python source",
    ),
    "train": ("onlyif.train.train_cmd", "fine-tune a causal LM with Ray Train + DeepSpeed"),
    "eval": ("onlyif.eval.eval_cmd", "evaluate a model: exact match, code pass@k (sandboxed), an eval suite"),
    "sweep": ("onlyif.sweep.sweep_cmd", "run a budget-vs-diversity grid with Ray Tune and MLflow"),
    "report": ("onlyif.sweep.report_cmd", "turn a sweep into curves, heatmaps and the emergence threshold"),
    "recommend": (
        "onlyif.sweep.recommend_cmd",
        "fit a finished sweep's metric on its grid labels and propose a mixture (or I) for a budget",
    ),
    "reproduce": ("onlyif.sweep.reproduce_cmd", "run the embedded-default emergence reproduction (CPU-sized)"),
    "cluster": ("onlyif.cluster_cmd", "start or stop a local Ray cluster and MLflow server for `ray job submit`"),
}


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """The options every config-driven subcommand shares: ``--config FILE`` and repeatable ``--set k=v``."""
    parser.add_argument("--config", required=required, metavar="FILE", help="YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (dotted keys for nesting, YAML values), repeatable",
    )


def check_resume_args(args: argparse.Namespace) -> None:
    """``--resume EXP_DIR`` takes the experiment's own config: refuse anything that would contradict it."""
    if args.config or args.overrides or args.out:
        raise OnlyIfError("--resume EXP_DIR reads the config from the experiment; drop --config/--set/--out")


def run_job(command: str, argv: list[str]) -> int:
    """Entry of a thin ``jobs/*.py`` script: ``onlyif COMMAND *argv``; ``--smoke-test`` adds the ``--set`` overrides
    of :mod:`onlyif.smoke` that shrink any preset of the job to a CPU-sized run (before the caller's own ``--set``,
    which therefore win)."""
    args = list(argv)
    if "--smoke-test" in args:
        from onlyif.smoke import smoke_overrides

        args.remove("--smoke-test")
        config = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"), None)
        config = config or next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
        try:
            args = [item for kv in smoke_overrides(command, config) for item in ("--set", kv)] + args
        except OnlyIfError as exc:
            print(f"onlyif {command}: error: {exc}", file=sys.stderr)
            return exc.exit_code
    return main([command, *args])


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onlyif", description="Measure and exploit instruction diversity for instruction tuning, on Ray."
    )
    parser.add_argument("--version", action="version", version=f"onlyif {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error, not only its line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    raise_gc_thresholds()  # before the subcommand imports torch, Ray and the rest
    # Quiet by default: MLflow's INFO lines (database set-up, run links) only when asked for.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    if not sys.stderr.isatty():
        # Hugging Face's progress bars (transformers' "Loading weights", downloads) only on a terminal, as ours:
        # none in log files (`ray job logs`, CI). The local Ray workers a command starts inherit it.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not os.environ.get("RAY_ADDRESS"):
        # A local Ray cluster uses token authentication (Ray's default for a new local cluster, token in
        # ~/.ray/auth_token, made on first use), said explicitly so that Ray does not warn about it at every start;
        # RAY_AUTH_MODE=disabled opts out. Set before Ray is imported: Ray reads its config once, at import.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except OnlyIfError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"onlyif {args.command}: error: {user_error(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"onlyif {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        full = _storage_error(exc)
        if full is None:
            raise
        if args.debug:
            traceback.print_exc()
        where = full.filename or (f"--out {args.out}" if getattr(args, "out", None) else "a file")
        print(f"onlyif {args.command}: error: {where}: cannot write ({os.strerror(full.errno)})", file=sys.stderr)
        return 1


# Write failures the user fixes outside onlyif (space, quota, a read-only or size-limited file system): one line.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _storage_error(exc: BaseException) -> OSError | None:
    """The ``OSError`` with a :data:`STORAGE_ERRNOS` code behind ``exc``, also when a Ray task or Ray Data raised it
    (followed through ``cause``, ``__cause__`` and ``__context__``); None for anything else."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
            return e
        todo += [c for c in (getattr(e, "cause", None), e.__cause__, e.__context__) if isinstance(c, BaseException)]
    return None


if __name__ == "__main__":
    sys.exit(main())
