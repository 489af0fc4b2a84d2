"""What tests/test_storage_runs.py runs inside Ray tasks (importable there as ``tests._storage_run_tasks``)."""

from __future__ import annotations


def cli(argv) -> int:
    from onlyif.cli import main

    return main(argv)


def evaluate(model: str, spec: dict, out: str) -> tuple[dict, dict]:
    """What a sweep trial's evaluation task runs (``onlyif.sweep.trainable._evaluate_task``), for a model at a URI."""
    from onlyif.sweep.trainable import _evaluate_task

    return _evaluate_task(model, spec, out, 1)


def finished(uri: str) -> tuple[dict, list, float] | None:
    """What a sweep trial rerun by ``--resume`` reads of a finished run at a URI: metrics, (epoch, step) history."""
    from onlyif.train.api import finished_run

    out = finished_run(uri)
    return None if out is None else (out.metrics, [(h["epoch"], h["step"]) for h in out.history], out.train_seconds)
