"""``onlyif eval TASK``: one sub-subcommand per evaluation kind, each in its own module.

Each module provides ``add_arguments(parser)`` and ``run(args) -> int`` (like the top-level subcommands) and keeps its
heavy imports inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib

TASKS: dict[str, tuple[str, str]] = {
    "exact-match": (
        "onlyif.eval.exact_match_cmd",
        "greedy decoding (KV cache) and exact match on the whole output",
    ),
    "code": (
        "onlyif.eval.code.cmd",
        "pass@k of generated code run in a sandbox (HumanEval, MBPP and EvalPlus files)",
    ),
    "suite": (
        "onlyif.eval.suite.cmd",
        "several tasks (QA exact match, multiple choice by log-likelihood, code pass@k) on one model, one summary",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, (module, help_text) in TASKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(TASKS[args.task][0]).run(args)
