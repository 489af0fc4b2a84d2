"""What tests/test_storage_runs.py runs inside Ray tasks (importable there as ``tests._storage_run_tasks``)."""

from __future__ import annotations


def cli(argv) -> int:
    from onlyif.cli import main

    return main(argv)


def sweep(cfg: dict | None, exp: str, resume: bool = False) -> tuple[int, int, int]:
    """``run_sweep`` (or its ``--resume``); returns (finished, total, errored)."""
    from onlyif.config import validate_config
    from onlyif.sweep.config import SweepConfig
    from onlyif.sweep.run import run_sweep

    out = run_sweep(None if resume else validate_config(SweepConfig, cfg), exp, resume=resume, echo=lambda _: None)
    return out.finished, out.total, out.errored


def evaluate(model: str, spec: dict, out: str) -> tuple[dict, dict]:
    """What a sweep trial's evaluation task runs (``onlyif.sweep.trainable._evaluate_task``), for a model at a URI."""
    from onlyif.sweep.trainable import _evaluate_task

    return _evaluate_task(model, spec, out, 1)
