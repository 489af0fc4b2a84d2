"""Run the tasks of a suite on one model (loaded once) and write one summary.

``OUT/<task>.jsonl`` holds one record per scored example, ``OUT/summary.json`` every task's metrics, its primary
metric and ``suite/score``: the unweighted mean of the tasks' primary metrics (each in [0, 1]), the number a sweep
ranks by. ``OUT`` is written as a whole or not at all.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from onlyif.errors import OnlyIfError
from onlyif.eval.suite.base import KINDS, Context, Task
from onlyif.eval.suite.config import SuiteConfig
from onlyif.redact import redact

SCORE = "suite/score"
SUMMARY_FILE = "summary.json"
DEFAULT_EXPERIMENT = "onlyif-eval-suite"

log = logging.getLogger(__name__)


def build_tasks(cfg: SuiteConfig) -> list[Task]:
    return [KINDS[spec.kind](name, spec) for name, spec in cfg.tasks.items()]


def run_suite(
    model_dir: str | os.PathLike,
    cfg: SuiteConfig,
    out_dir: str | os.PathLike,
    *,
    device: str = "auto",
    overwrite: bool = False,
    mlflow_uri: str | None = None,
    mlflow_experiment: str = DEFAULT_EXPERIMENT,
) -> dict[str, float]:
    """Evaluate ``model_dir`` (an HF model or ``onlyif train`` run directory) on every task of ``cfg``.

    Returns the flat metrics (``<task>/<metric>`` and ``suite/score``). Input files and the model directory are
    checked before anything runs; ``out_dir`` is replaced as a whole (``overwrite``) and refused when it exists
    and is not empty otherwise. With ``mlflow_uri`` the metrics (``@`` spelled ``_at_``) and the summary go to
    one MLflow run of ``mlflow_experiment``.
    """
    from onlyif.io import atomic_dir, ensure_writable_dir, write_json_atomic, write_text_atomic
    from onlyif.lm.models import resolve_device, resolve_model_dir

    tasks = build_tasks(cfg)
    for task in tasks:
        task.check()
    if any(task.needs_model for task in tasks):
        resolve_model_dir(model_dir)
    device = resolve_device(device)
    ensure_writable_dir(out_dir, overwrite)
    tracker = _MlflowRun(mlflow_uri, mlflow_experiment, model_dir, cfg) if mlflow_uri else None
    try:
        with atomic_dir(out_dir, overwrite) as tmp:
            ctx = Context(model_dir, device, cfg.batch_size, cfg.chat_template, tmp)
            metrics: dict[str, float] = {}
            details: dict[str, Any] = {}
            for task in tasks:
                log.info("suite: %s (%s) ...", task.name, task.kind)
                start = time.perf_counter()
                result = task.evaluate(ctx)
                if task.primary not in result.metrics:
                    raise OnlyIfError(f"task {task.name}: no {task.primary} metric in its results")
                task_metrics = {f"{task.name}/{k}": float(v) for k, v in result.metrics.items()}
                metrics.update(task_metrics)
                lines = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in result.records)
                write_text_atomic(tmp / f"{task.name}.jsonl", lines)
                details[task.name] = {
                    "kind": task.kind,
                    "primary": f"{task.name}/{task.primary}",
                    "metrics": task_metrics,
                    "seconds": round(time.perf_counter() - start, 3),
                    **result.info,
                }
            primaries = [metrics[f"{t.name}/{t.primary}"] for t in tasks]
            metrics[SCORE] = math.fsum(primaries) / len(primaries)
            summary = {
                "model": str(model_dir),
                "device": device,
                SCORE: metrics[SCORE],
                "score_definition": "unweighted mean of each task's primary metric",
                "metrics": metrics,
                "tasks": details,
                "mlflow": tracker.where if tracker else None,
                "config": cfg.to_dict(),
            }
            write_json_atomic(tmp / SUMMARY_FILE, redact(summary))
            if tracker:
                tracker.finish(metrics, tmp / SUMMARY_FILE)
    except BaseException:
        if tracker:
            tracker.fail()
        raise
    return metrics


class _MlflowRun:
    """One MLflow run for a suite: created before the tasks run (a bad URI fails at once), filled at the end."""

    def __init__(self, uri: str, experiment: str, model_dir: str | os.PathLike, cfg: SuiteConfig) -> None:
        from onlyif.mlflow_names import log_params
        from onlyif.mlflow_store import artifacts_beside, open_client

        self.client = client = open_client(uri)
        try:
            exp = client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifacts_beside(uri))
        except Exception as exc:  # any store failure is the same user error
            raise OnlyIfError(f"--mlflow-uri {uri}: cannot use it ({str(exc).splitlines()[0]})") from None
        run = client.create_run(exp_id, run_name=f"suite {Path(model_dir).name}", tags={"onlyif.kind": "eval-suite"})
        self.run_id = run.info.run_id
        self.where = {"tracking_uri": uri, "experiment_id": exp_id, "run_id": self.run_id}
        log_params(client, self.run_id, {"model": str(model_dir), **cfg.to_dict()})

    def finish(self, metrics: dict[str, float], summary: Path) -> None:
        from mlflow.entities import Metric

        from onlyif.mlflow_names import to_mlflow

        now = int(time.time() * 1000)
        items = [Metric(to_mlflow(k), v, now, 0) for k, v in metrics.items() if math.isfinite(v)]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i : i + 500])
        self.client.log_artifact(self.run_id, str(summary))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")
