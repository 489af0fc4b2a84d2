"""How onlyif names things in MLflow (Ray-free: the report reads sweeps through it without loading Tune).

Metric names: our keys may hold ``@`` (``humaneval/pass@1``), which MLflow refuses (names are word characters,
``/ . - :`` and spaces); it is spelled ``_at_`` there and read back by the inverse. Tags: a sweep's child runs
carry their Tune trial id and grid point (:mod:`onlyif.sweep.mlflow_log` writes them, the report reads them).
Params: every run's params go through :func:`log_params` (flattened, secrets redacted, cut at MLflow's limits).
A trial's last Tune result carries :data:`FINAL_KEY` (the trainable sets it; the MLflow logger, the sweep's progress
and summary and the report read it); it is bookkeeping, not a metric, so it is not logged to MLflow.
"""

from __future__ import annotations

import json
from typing import Any

from onlyif.redact import redact

TRIAL_TAG = "onlyif.trial_id"
POINT_TAG = "onlyif.point"
POINT_ID_TAG = "onlyif.point_id"
PARENT_TAG = "mlflow.parentRunId"
STOPPED_TAG = "onlyif.stopped_early"

FINAL_KEY = "final"
"""Set to 1 in a trial's last result: the trial trained and evaluated to the end."""


def to_mlflow(key: str) -> str:
    """``humaneval/pass@1`` → ``humaneval/pass_at_1``."""
    return key.replace("@", "_at_")


def from_mlflow(name: str) -> str:
    """``humaneval/pass_at_1`` → ``humaneval/pass@1`` (the inverse of :func:`to_mlflow` for our metric names)."""
    return name.replace("pass_at_", "pass@")


PARAM_KEY_MAX, PARAM_VALUE_MAX = 250, 6000  # MLflow's limits on a param's key and value


def flatten_params(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict → ``{"a.b.c": "value"}``: lists as JSON, secrets redacted (:mod:`onlyif.redact`), keys and
    values cut at MLflow's limits."""
    out: dict[str, str] = {}
    for k, v in redact(data).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_params(v, key + "."))
        else:
            out[key[:PARAM_KEY_MAX]] = (json.dumps(v) if isinstance(v, list | tuple) else str(v))[:PARAM_VALUE_MAX]
    return out


def log_params(client: Any, run_id: str, params: dict[str, Any], prefix: str = "") -> None:
    """Log ``params`` (nested) on run ``run_id``, flattened by :func:`flatten_params`, 100 per request."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in flatten_params(params, prefix).items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def child_runs(uri: str, parent_run_id: str) -> list[Any]:
    """All child runs of the sweep's parent run."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=50000
    )


def where_to_look(uri: str) -> str:
    """How a user opens ``uri``: the server's address, or the ``mlflow ui`` command for a local store."""
    if uri.startswith(("http://", "https://", "databricks")):
        return f"MLflow: {uri}"
    return f"MLflow UI: mlflow ui --backend-store-uri {uri} --workers 1"
