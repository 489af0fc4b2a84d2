"""MLflow layout of a sweep: one experiment, a parent run for the sweep, one child run per Tune trial.

Child runs are written from the Tune driver by :class:`MlflowTrialLogger` (a Tune ``Callback``), so only one
process writes the sqlite store. Each child run is tagged with its Tune trial id; a trial restarted by
``onlyif sweep --resume`` finds and continues its run instead of creating a duplicate, and does not log again the
(metric, step) pairs the run already holds (the epochs it reports again since its last checkpoint).
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ray.tune import Callback

from onlyif.mlflow_names import (
    FINAL_KEY,
    PARENT_TAG,
    POINT_ID_TAG,
    POINT_TAG,
    STOPPED_TAG,
    TRIAL_TAG,
    log_params,
    to_mlflow,
)
from onlyif.train.tracking import numeric

MANIFEST_KEY = "dataset_manifest"
"""Key of the final Tune result that carries the dataset manifest (a JSON string) to the driver."""
EVALUATION_KEY = "evaluation_summary"
"""Key of the final Tune result that carries the model evaluation's summary (code pass@k, suite) as JSON."""

_TUNE_KEYS = {
    "training_iteration", "timestamp", "time_this_iter_s", "time_total_s", "pid", "time_since_restore",
    "iterations_since_restore", "done", "date", "hostname", "node_ip", "trial_id", "experiment_tag",
    "checkpoint_dir_name", "should_checkpoint", FINAL_KEY,
}  # fmt: skip


def tracking_uri(configured: str | None, exp_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the configured URI, else a sqlite DB in the experiment dir."""
    import os

    return os.environ.get("MLFLOW_TRACKING_URI") or configured or f"sqlite:///{exp_dir.resolve() / 'mlflow.db'}"


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The metrics of a Tune result worth logging: finite numbers, without Tune's bookkeeping."""
    return {k: v for k, v in numeric(result).items() if k not in _TUNE_KEYS and not k.startswith("config/")}


def ensure_experiment(client: Any, name: str, artifacts: Path | None = None) -> str:
    """The id of experiment ``name`` in ``client``'s store (created when missing, storing artifacts under
    ``artifacts`` if given, instead of MLflow's default ``./mlruns`` in whatever the working directory is)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifacts.resolve().as_uri() if artifacts else None)


def start_parent_run(client: Any, experiment_id: str, name: str, params: dict[str, Any]) -> str:
    """Create the sweep's parent run with the flattened sweep config as params; returns its id."""
    run = client.create_run(experiment_id, run_name=name, tags={"onlyif.kind": "sweep"})
    log_params(client, run.info.run_id, params)
    return run.info.run_id


class MlflowTrialLogger(Callback):
    """Tune callback: a child run per trial with params, per-epoch metrics, final metrics and the manifest."""

    def __init__(
        self,
        uri: str,
        experiment_id: str | None = None,
        parent_run_id: str | None = None,
        state_file: str | None = None,
        pending: Future | None = None,
    ) -> None:
        self.uri, self.experiment_id, self.parent_run_id = uri, experiment_id, parent_run_id
        self.state_file = state_file
        """The experiment's ``state.json``, where the ids are read when not given (a new experiment's are written
        there while Tune starts)."""
        self.pending = pending
        """The new experiment's MLflow set-up (a future of its state), waited for before the first trial runs."""
        self._client: Any = None
        self._runs: dict[str, str] = {}
        self._logged: dict[str, dict[str, tuple[int, float]]] = {}
        self._in_store: dict[str, set[tuple[str, int]]] = {}  # (MLflow key, step) of runs continued on resume

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks into its experiment state
        keys = ("uri", "experiment_id", "parent_run_id", "state_file")
        return {k: getattr(self, k) for k in keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def _ids(self) -> tuple[str, str]:
        """The experiment and parent run ids (waiting for a new experiment's MLflow set-up)."""
        if self.experiment_id is None:
            state = (
                self.pending.result() if self.pending is not None else json.loads(Path(self.state_file).read_text())
            )
            self.experiment_id, self.parent_run_id = state["experiment_id"], state["parent_run_id"]
        return self.experiment_id, self.parent_run_id

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self.pending is not None and self.pending.done():
            self._ids()  # a failed MLflow set-up stops the sweep at once, before a trial starts

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(self.uri)
        return self._client

    def _existing(self, trial_id: str) -> str | None:
        experiment_id, parent_run_id = self._ids()
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_run_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        point = trial.config["point"]
        run_id = self._existing(trial.trial_id)  # waits for a new experiment's MLflow set-up
        if run_id is not None:  # a resumed trial continues its run
            self.client.update_run(run_id, status="RUNNING")
            self._in_store[trial.trial_id] = self._logged_steps(run_id)
        else:
            run = self.client.create_run(
                self.experiment_id,
                run_name=point["id"],
                tags={
                    PARENT_TAG: self.parent_run_id,
                    TRIAL_TAG: trial.trial_id,
                    POINT_ID_TAG: point["id"],
                    POINT_TAG: json.dumps(point["labels"]),
                },
            )
            run_id = run.info.run_id
            data = {"mixture": point["mixture"]} if point.get("mixture") is not None else {"task": point["task"]}
            log_params(self.client, run_id, data | {"train": point["train"], "grid": point["labels"]})
        self._runs[trial.trial_id] = run_id

    def _logged_steps(self, run_id: str) -> set[tuple[str, int]]:
        keys = self.client.get_run(run_id).data.metrics
        return {(key, m.step) for key in keys for m in self.client.get_metric_history(run_id, key)}

    def _run_id(self, trial: Any) -> str:
        if trial.trial_id not in self._runs:
            self.on_trial_start(0, [], trial)
        return self._runs[trial.trial_id]

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from mlflow.entities import Metric

        run_id = self._run_id(trial)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        ts = int(float(result.get("timestamp", 0)) * 1000)
        seen = self._logged.setdefault(trial.trial_id, {})
        fresh = {k: v for k, v in numeric_metrics(result).items() if seen.get(k) != (step, v)}
        seen.update({k: (step, v) for k, v in fresh.items()})  # the final result repeats the last epoch's values
        stored = self._in_store.get(trial.trial_id, set())
        metrics = [Metric(to_mlflow(k), v, ts, step) for k, v in fresh.items() if (to_mlflow(k), step) not in stored]
        for i in range(0, len(metrics), 500):
            self.client.log_batch(run_id, metrics=metrics[i : i + 500])
        if MANIFEST_KEY in result:
            self.client.log_text(run_id, result[MANIFEST_KEY], "dataset_manifest.json")
        if EVALUATION_KEY in result:
            self.client.log_text(run_id, result[EVALUATION_KEY], "evaluation_summary.json")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_id(trial)
        if (trial.last_result or {}).get(FINAL_KEY) == 1:
            self.client.set_terminated(run_id, status="FINISHED")
        else:  # stopped early by the scheduler: no final metrics, so not a finished point of the grid
            self.client.set_tag(run_id, STOPPED_TAG, "true")
            self.client.set_terminated(run_id, status="KILLED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.client.set_terminated(self._run_id(trial), status="FAILED")
