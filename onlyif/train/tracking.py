"""Where training metrics go: ``metrics.jsonl`` in the run dir and (optionally) an MLflow run.

:class:`MetricsCallback` is a Ray Train ``UserCallback``: it runs in the Train controller after every
``ray.train.report`` and appends rank 0's metrics as one JSON line, and logs the numeric ones to MLflow with
``MlflowClient`` (stateless, so a resumed run keeps logging into the same MLflow run). The driver creates and
closes the MLflow run (:func:`start_mlflow_run`, :func:`end_mlflow_run`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ray.train import UserCallback

from onlyif.errors import OnlyIfError

METRICS_FILE = "metrics.jsonl"
MLFLOW_RUN_FILE = "mlflow_run.json"


def read_history(run_dir: str | Path, kind: str = "epoch") -> list[dict[str, Any]]:
    """Reported metrics of one kind (``epoch`` or ``step``), one dict each, later reports replacing earlier ones."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows: dict[tuple, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("kind") == kind:
                rows[(rec.get("epoch"), rec.get("step"))] = rec
    return sorted(rows.values(), key=lambda r: (r.get("step", 0), r.get("epoch", 0)))


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of ``metrics`` (bools and text left out), as floats."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def start_mlflow_run(uri: str, experiment: str, run_dir: Path, run_name: str, params: dict[str, Any]) -> str:
    """Create (or, on resume, reuse) the MLflow run of ``run_dir``; returns its id."""
    from onlyif.mlflow_names import log_params
    from onlyif.mlflow_store import open_client

    saved = run_dir / MLFLOW_RUN_FILE
    client = open_client(uri)
    if saved.is_file():
        info = json.loads(saved.read_text())
        if info.get("tracking_uri") == uri:
            client.update_run(info["run_id"], status="RUNNING")
            return info["run_id"]
    try:
        exp = client.get_experiment_by_name(experiment)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else client.create_experiment(
                experiment,
                artifact_location=(run_dir / "mlartifacts").as_uri() if uri.startswith("sqlite:///") else None,
            )
        )
        run = client.create_run(exp_id, run_name=run_name)
    except Exception as exc:  # any tracking failure is a user-facing setup problem
        raise OnlyIfError(f"mlflow_tracking_uri {uri}: cannot start a run ({str(exc).splitlines()[0]})") from None
    log_params(client, run.info.run_id, params)
    saved.write_text(json.dumps({"tracking_uri": uri, "run_id": run.info.run_id, "experiment": experiment}))
    return run.info.run_id


def end_mlflow_run(uri: str, run_id: str, ok: bool) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri).set_terminated(run_id, status="FINISHED" if ok else "FAILED")


class MetricsCallback(UserCallback):
    """Appends every report to ``metrics.jsonl`` and logs it to MLflow (when a run id is given)."""

    def __init__(
        self,
        run_dir: Path,
        mlflow_uri: str | None = None,
        mlflow_run_id: str | None = None,
        mirror: str | None = None,
    ) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.mlflow_uri, self.mlflow_run_id = mlflow_uri, mlflow_run_id
        self.mirror = mirror
        """A run URI: the file is uploaded to ``MIRROR/metrics.jsonl`` after each report (the controller runs on the
        node of the process that called ``fit``, where ``run_dir`` is)."""

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        rec = dict(metrics[0])
        if checkpoint is not None:
            rec["checkpoint"] = Path(checkpoint.path).name
        with self.path.open("a") as f:
            f.write(json.dumps(rec, default=str) + "\n")
        if self.mirror:
            from onlyif.storage import upload

            upload(self.path.parent, self.mirror, "--out", [METRICS_FILE])
        if self.mlflow_run_id:
            from mlflow import MlflowClient
            from mlflow.entities import Metric

            step = int(rec.get("step", 0))
            stamp = int(1000 * time.time())
            values = [Metric(k, v, stamp, step) for k, v in numeric(rec).items() if k not in ("step", "kind")]
            MlflowClient(tracking_uri=self.mlflow_uri).log_batch(self.mlflow_run_id, metrics=values)
