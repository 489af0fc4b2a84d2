"""How onlyif names things in MLflow (Ray-free: the report reads sweeps through it without loading Tune).

Metric names: our keys may hold ``@`` (``humaneval/pass@1``), which MLflow refuses (names are word characters,
``/ . - :`` and spaces); it is spelled ``_at_`` there and read back by the inverse. Tags: a sweep's child runs
carry their Tune trial id and grid point (:mod:`onlyif.sweep.mlflow_log` writes them, the report reads them).
"""

from __future__ import annotations

from typing import Any

TRIAL_TAG = "onlyif.trial_id"
POINT_TAG = "onlyif.point"
POINT_ID_TAG = "onlyif.point_id"
PARENT_TAG = "mlflow.parentRunId"
STOPPED_TAG = "onlyif.stopped_early"


def to_mlflow(key: str) -> str:
    """``humaneval/pass@1`` → ``humaneval/pass_at_1``."""
    return key.replace("@", "_at_")


def from_mlflow(name: str) -> str:
    """``humaneval/pass_at_1`` → ``humaneval/pass@1`` (the inverse of :func:`to_mlflow` for our metric names)."""
    return name.replace("pass_at_", "pass@")


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
