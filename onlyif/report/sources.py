"""Reading a sweep's finished trials into one table: from the Tune experiment or from MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from onlyif.errors import OnlyIfError
from onlyif.mlflow_names import FINAL_KEY, from_mlflow


def family_label(families: list[dict[str, Any]] | None) -> str:
    """Short text for a family mixture, e.g. ``repeated k3-4 + periodic k3-4`` (``random`` when unset)."""
    if not families:
        return "random"
    parts = []
    for f in families:
        k = f.get("k")
        ktext = "" if k is None else (f" k{k}" if isinstance(k, int) else f" k{k[0]}-{k[1]}")
        share = f.get("share", 1.0)
        parts.append(f"{f.get('name', 'random')}{ktext}" + ("" if len(families) == 1 else f" ({share:g})"))
    return " + ".join(parts)


def _row(labels: dict[str, Any], metrics: dict[str, Any], trial_id: str, point_id: str) -> dict[str, Any]:
    row: dict[str, Any] = {"trial_id": trial_id, "point_id": point_id}
    for key, value in labels.items():
        if key in ("mixture.fractions", "mixture.counts"):
            continue  # the share.<source> labels carry the same numbers, one column each
        if key == "task.families":
            value = family_label(value)
        elif key == "task.frequency_alpha" and value is None:
            value = "uniform"
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        row[key] = value
    row.update({k: float(v) for k, v in metrics.items() if "/" in k and isinstance(v, int | float)})
    return row


def trials_from_tune(tune_dir: str | Path) -> pd.DataFrame:
    """Finished trials of a Tune experiment folder (``EXP_DIR/tune/NAME``), one row each."""
    from ray.tune import ExperimentAnalysis

    if "://" in str(tune_dir):  # object storage: Tune reads it through pyarrow
        try:
            analysis = ExperimentAnalysis(str(tune_dir))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise OnlyIfError(f"{tune_dir}: no Tune experiment there ({exc})") from None
    else:
        path = Path(tune_dir)
        if not path.is_dir():
            raise OnlyIfError(f"{path}: no Tune experiment there")
        analysis = ExperimentAnalysis(str(path))
    rows = []
    for trial in analysis.trials:
        last = trial.last_result or {}
        if trial.status != "TERMINATED" or last.get(FINAL_KEY) != 1:
            continue
        point = trial.config["point"]
        rows.append(_row(point["labels"], last, trial.trial_id, point["id"]))
    return pd.DataFrame(rows)


def trials_from_mlflow(uri: str, parent_run_id: str) -> pd.DataFrame:
    """Finished child runs of a sweep's parent run, one row each (same columns as :func:`trials_from_tune`)."""
    from onlyif.mlflow_names import POINT_ID_TAG, POINT_TAG, TRIAL_TAG, child_runs

    rows = []
    for run in child_runs(uri, parent_run_id):
        tags = run.data.tags
        if run.info.status != "FINISHED" or POINT_TAG not in tags:
            continue
        metrics = {from_mlflow(k): v for k, v in run.data.metrics.items()}
        rows.append(_row(json.loads(tags[POINT_TAG]), metrics, tags[TRIAL_TAG], tags[POINT_ID_TAG]))
    return pd.DataFrame(rows)
