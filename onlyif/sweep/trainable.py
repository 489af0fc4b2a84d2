"""The Tune function trainable of a sweep: build (or reuse) the point's dataset, train, evaluate, report.

Tune cannot wrap a Train V2 ``TorchTrainer`` directly, so each trial is a small function (holding a sliver of a
CPU) that calls :func:`onlyif.train.api.run_training`; its per-epoch ``ray.train.report`` reaches Tune through
``TuneReportCallback``. With an ``evaluate`` block the exported model is then scored (code pass@k, an eval suite) in one Ray task that
holds the resources the training workers held. The trial ends with one more report holding the final metrics, the
time spent training, evaluating and generating data, the dataset manifest and the evaluation summary (logged to
MLflow by the driver).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from onlyif.mlflow_names import FINAL_KEY
from onlyif.sweep.mlflow_log import EVALUATION_KEY, MANIFEST_KEY


def _applied_counts(roots: dict[str, Path], limit: int | None) -> dict[str, float]:
    """How many evaluated examples per split are applied / no-op (for intervals on ``*_applied`` accuracy)."""
    from onlyif.lm.datasets import read_rows

    out = {}
    for split, root in roots.items():
        noop = read_rows(root, split, limit).get("noop")
        if noop is not None:
            out[f"{split}/exact_match_applied_n"] = float(sum(not x for x in noop))
            out[f"{split}/exact_match_noop_n"] = float(sum(bool(x) for x in noop))
            out[f"{split}/exact_match_n"] = float(len(noop))
    return out


def _dataset(point: dict[str, Any], cache: str) -> tuple[Path, dict[str, Any], dict[str, float]]:
    """The point's training data (generated task or built mixture, cached), its manifest and data metrics."""
    from onlyif.config import validate_config
    from onlyif.sweep.datasets import ensure_dataset, ensure_mixture

    if point.get("mixture") is None:
        from onlyif.tasks.config import TaskConfig

        task = validate_config(TaskConfig, point["task"], source=f"point {point['id']}: task")
        data_dir, manifest = ensure_dataset(task, cache)
        return data_dir, manifest, {}
    from onlyif.data.mixture_config import MixtureConfig
    from onlyif.mixing.metrics import flat_metrics

    mixture = validate_config(MixtureConfig, point["mixture"], source=f"point {point['id']}: mixture")
    data_dir, manifest = ensure_mixture(mixture, cache)
    totals = {f"mixture.{k}": float(v) for k, v in manifest["totals"].items()}
    diversity = flat_metrics(manifest["diversity"]) if manifest.get("diversity") else {}
    return data_dir, manifest, {"mixture.rows": float(manifest["rows"]), **totals, **diversity}


def _evaluate_task(model_dir: str, spec: dict[str, Any], out: str, threads: int) -> tuple[dict, dict]:
    import torch

    from onlyif.eval.model_eval import ModelEvalConfig, evaluate_model
    from onlyif.storage import is_uri

    torch.set_num_threads(threads)
    cfg = ModelEvalConfig.model_validate(spec)
    if not is_uri(model_dir):
        return evaluate_model(model_dir, cfg, out, device="auto", workers=threads)
    # a run in object storage: this task may run on any node; the model comes from there, the outputs go there
    import tempfile

    from onlyif.storage import download, upload

    with tempfile.TemporaryDirectory(prefix="onlyif-evaluate-") as tmp:
        download(model_dir, Path(tmp) / "model", "evaluate")
        result = evaluate_model(str(Path(tmp) / "model"), cfg, str(Path(tmp) / "out"), device="auto", workers=threads)
        upload(Path(tmp) / "out", out, "evaluate")
    return result


def _evaluate(model_dir: Path | str, spec: dict[str, Any], out: Path | str, train: Any) -> tuple[dict, dict]:
    """``evaluate_model`` as a Ray task holding the training workers' CPUs (and one GPU when they had GPUs), so that
    concurrent trials never oversubscribe the cluster."""
    import ray

    s = train.scaling
    cpus = max(1.0, s.num_workers * s.worker_cpus)
    # outside the trial's own placement group (a sliver of a CPU), like the training workers
    task = ray.remote(num_cpus=cpus, num_gpus=1 if s.use_gpu else 0, max_retries=0, scheduling_strategy="DEFAULT")(
        _evaluate_task
    )
    return ray.get(task.remote(str(model_dir), spec, str(out), max(1, int(cpus))))


def run_trial(config: dict[str, Any]) -> None:
    """Tune trainable. ``config``: ``point`` (a grid point dict), ``data_cache`` and ``runs_dir`` (folders, or
    ``s3://…`` URIs), ``eval_data`` (extra folders of eval splits), ``evaluate`` (a ``ModelEvalConfig`` dict or
    None)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from onlyif.config import validate_config
    from onlyif.storage import clear, is_folder, is_uri, join, local_path
    from onlyif.train.api import finished_run, run_training
    from onlyif.train.config import TrainConfig
    from onlyif.train.inputs import eval_split_dirs
    from onlyif.train.run_files import RAY_RUN_NAME

    point = config["point"]
    train = validate_config(TrainConfig, {**point["train"], "mlflow": False}, source=f"point {point['id']}: train")
    eval_data = [local_path(p, "eval_data") for p in config.get("eval_data", [])]  # s3://…: this node's copy

    t0 = time.perf_counter()
    data_dir, manifest, data_metrics = _dataset(point, config["data_cache"])
    data_seconds = time.perf_counter() - t0

    trial_id = ray.tune.get_context().get_trial_id()
    if is_uri(config["runs_dir"]):  # the run in object storage (Ray Train's checkpoints included), seen by every node
        run_dir = join(config["runs_dir"], trial_id)
        resume = is_folder(join(run_dir, RAY_RUN_NAME), "runs_dir")
        if not resume:  # an attempt that died before Ray Train started: start clean
            clear(run_dir, "runs_dir")
    else:
        run_dir = Path(config["runs_dir"]) / trial_id
        resume = (run_dir / RAY_RUN_NAME).is_dir()
        if run_dir.exists() and not resume:  # an attempt that died before Ray Train started: start clean
            shutil.rmtree(run_dir)
    outcome = finished_run(run_dir) if resume else None
    if outcome is not None:  # trained before Tune recorded it (e.g. the sweep's driver was killed): report it again
        for epoch in outcome.history:
            ray.tune.report(epoch)
    else:
        outcome = run_training(
            train, data_dir, run_dir, resume=resume, callbacks=[TuneReportCallback()], eval_data=eval_data
        )
    last_epoch = max((int(h.get("epoch", 0)) for h in outcome.history), default=train.epochs)
    evaluated = sorted(outcome_splits(outcome.metrics))
    model_metrics, evaluation, eval_seconds = {}, None, 0.0
    if config.get("evaluate"):
        t0 = time.perf_counter()
        model = join(run_dir, "model") if outcome.run_uri else outcome.model_dir
        out = join(run_dir, "evaluate") if outcome.run_uri else run_dir / "evaluate"
        model_metrics, evaluation = _evaluate(model, config["evaluate"], out, train)
        eval_seconds = time.perf_counter() - t0
    ray.tune.report(
        {
            **outcome.metrics,
            **model_metrics,
            **data_metrics,
            **_applied_counts(eval_split_dirs(evaluated, data_dir, eval_data), train.eval.max_examples),
            "epoch": last_epoch,
            "train_seconds": outcome.train_seconds,
            "data_seconds": data_seconds,
            "evaluate_seconds": eval_seconds,
            FINAL_KEY: 1,
            MANIFEST_KEY: json.dumps(manifest),
            **({EVALUATION_KEY: json.dumps(evaluation)} if evaluation is not None else {}),
        }
    )


def outcome_splits(metrics: dict[str, float]) -> set[str]:
    """Splits that have an exact-match metric in ``metrics``."""
    return {k.split("/", 1)[0] for k in metrics if k.endswith("/exact_match")}
