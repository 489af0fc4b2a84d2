"""``run_training``: Ray Train ``TorchTrainer`` + DeepSpeed on a dataset directory, into a run directory.

Run directory layout::

    RUN_DIR/config.yaml        the resolved TrainConfig        RUN_DIR/run.json      data path, versions, outcome
    RUN_DIR/metrics.jsonl      one line per report             RUN_DIR/mlflow.db     default MLflow store
    RUN_DIR/ray_train/         Ray Train storage (checkpoint_*/ with DeepSpeed engine states)
    RUN_DIR/model/             final HF ``save_pretrained`` export + tokenizer
    RUN_DIR/eval/              final exact-match summaries and failure samples per split

``RUN_DIR`` may be an ``s3://…``-style URI (anything ``pyarrow.fs`` opens): Ray Train then persists its checkpoints
there itself (``RUN_DIR/ray_train/``), and this process keeps the other files in a node-local staging folder
(:func:`~onlyif.train.run_files.stage_dir`) that it uploads — ``metrics.jsonl`` after every report, the rest before
training and at the end (``model/`` and ``eval/`` downloaded from the final checkpoint). A resume, on any node,
restores the staging folder's files from the URI and Ray Train restores the checkpoint from it.

The steps, each in its own module: checks before anything is written (:mod:`onlyif.train.checks`), the workers'
inputs (:mod:`onlyif.train.inputs`), the run's files and their upload (:mod:`onlyif.train.run_files`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onlyif.config import save_config
from onlyif.errors import ConfigError, OnlyIfError
from onlyif.io import library_versions, write_json_atomic
from onlyif.lm.codec import CharCodec, Codec
from onlyif.lm.datasets import dataset_kind
from onlyif.ray_errors import user_error
from onlyif.ray_utils import started_here
from onlyif.redact import redact
from onlyif.train.checks import check_resources, check_run_target
from onlyif.train.config import TrainConfig
from onlyif.train.inputs import (
    eval_items,
    eval_split_dirs,
    model_max_length,
    probe_items,
    shard_config,
    train_shards,
)
from onlyif.train.loop import HF_EXPORT, total_optimizer_steps, train_loop
from onlyif.train.run_files import RAY_RUN_NAME, publish, publish_remote, stage_dir, upload_files, upload_results

HEALTH_CHECK_INTERVAL_S = 0.2
"""Ray Train's worker poll interval for our runs (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` in the environment wins)."""


@dataclass
class TrainOutcome:
    """What a finished training run produced."""

    metrics: dict[str, float]
    """Final metrics: ``train_loss``, ``<split>/exact_match`` (+ ``_applied``, ``_noop``, breakdowns), ..."""
    history: list[dict[str, Any]]
    """One dict per epoch (as reported)."""
    model_dir: Path
    checkpoint_dir: Path | str | None
    train_seconds: float
    """Wall time of ``TorchTrainer.fit`` (worker start-up, training, evaluation, checkpoints)."""
    run_dir: Path
    """The run folder (for a URI run: this node's staging copy, without ``ray_train/``)."""
    run_uri: str | None = None
    """The run's URI when it was given one (``checkpoint_dir`` is then under it too)."""


def run_training(
    cfg: TrainConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    callbacks: list | None = None,
    experiment_name: str | None = None,
    eval_data: list[str | os.PathLike] | None = None,
    progress: bool = False,
) -> TrainOutcome:
    """Train ``cfg`` on ``DATA/train`` with Ray Train + DeepSpeed, evaluating exact match and loss on the test splits.

    ``resume=True`` continues the run in ``out_dir`` from its latest checkpoint. ``callbacks`` are extra Ray Train
    ``RunConfig`` callbacks (e.g. Tune's ``TuneReportCallback`` when called inside a Tune trial).
    ``experiment_name`` names the MLflow experiment (default ``cfg.mlflow_experiment``). ``eval_data`` lists other
    dataset folders to take eval splits from (e.g. held-out sets beside a mixture that has only ``train``).
    ``progress`` shows the run's reports on the console as they come (:mod:`onlyif.train.progress`).
    """
    from onlyif.ray_utils import init_ray
    from onlyif.storage import is_uri, local_path

    named = [str(p) if is_uri(p) else None for p in [data_dir, *(eval_data or [])]]  # URIs stay in run.json
    data = local_path(data_dir, "--data")  # an s3://… dataset: this node's copy (onlyif.storage.fetch)
    evals = [local_path(p, "--eval-data") for p in eval_data or []]
    remote = str(out_dir).rstrip("/") if is_uri(out_dir) else None  # Ray Train's checkpoints go there
    out = stage_dir(remote) if remote else Path(out_dir).resolve()
    kind = dataset_kind(data, "train")
    codec, worker_cfg = _load_model(cfg, data, kind)
    check_run_target(out, remote, resume)
    init_ray()
    check_resources(cfg)

    # The workers' inputs, all prepared (and refused) here before anything is written.
    shards, per_worker = train_shards(cfg, data, codec, kind, named[0])
    probe_metric, probe = probe_items(cfg, codec, data)
    loop_config = {
        "cfg": worker_cfg,
        "codec": codec,
        "eval_items": eval_items(cfg, eval_split_dirs(cfg.eval.splits, data, evals), codec, model_max_length(cfg)),
        "probe_metric": probe_metric,
        "probe_items": probe,
        "rows_per_worker": per_worker,
        "total_steps": total_optimizer_steps(per_worker, cfg),
    }
    if loop_config["total_steps"] < 1:
        raise OnlyIfError(
            f"{data / 'train'}: {per_worker} rows per worker make no optimizer step at batch_size {cfg.batch_size} × "
            f"grad_accum {cfg.optim.grad_accum}"
        )

    sources = [u or str(p) for u, p in zip(named, [data, *evals], strict=True)]
    run_info = {"data": sources[0], "eval_data": sources[1:], "kind": kind}
    _start_run_folder(cfg, out, remote, resume, run_info)
    result, seconds = _fit(cfg, loop_config, shards, out, remote, callbacks, experiment_name, sources, progress)

    if remote:
        model_dir, ckpt_path = publish_remote(result.checkpoint, out, remote)
    else:
        ckpt_path = Path(result.checkpoint.path) if result.checkpoint is not None else None
        if ckpt_path is None or not (ckpt_path / HF_EXPORT / "config.json").is_file():
            raise OnlyIfError(f"{out}: training finished without a final checkpoint holding the exported model")
        model_dir = publish(ckpt_path, out)
    from onlyif.train.tracking import read_history

    history = read_history(out)
    final = dict(result.metrics or {})
    metrics = {k: float(v) for k, v in final.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    done = {"final": metrics, "train_seconds": seconds, "checkpoint": str(ckpt_path)}
    write_json_atomic(out / "run.json", redact(run_info | {"versions": library_versions(), **done}))
    if remote:
        upload_results(out, remote)
    return TrainOutcome(
        metrics=metrics,
        history=history,
        model_dir=model_dir,
        checkpoint_dir=ckpt_path,
        train_seconds=seconds,
        run_dir=out,
        run_uri=remote,
    )


def finished_run(out_dir: str | os.PathLike) -> TrainOutcome | None:
    """The outcome of the run in ``out_dir`` if its training already ended (``run.json`` holds the final metrics,
    written last), else ``None``. A sweep trial rerun by ``--resume`` after its run finished reports this instead of
    starting Ray Train again. For a URI run, its files are fetched into this node's staging folder (the model stays
    at ``RUN_DIR/model`` in storage)."""
    import json

    from onlyif.storage import download, is_uri, read_file

    remote = str(out_dir).rstrip("/") if is_uri(out_dir) else None
    out = stage_dir(remote) if remote else Path(out_dir).resolve()
    raw = read_file(remote, "run.json", "runs_dir") if remote else _read_bytes(out / "run.json")
    info = json.loads(raw) if raw else {}
    if not {"final", "train_seconds", "checkpoint"} <= info.keys():
        return None
    if remote:
        download(remote, out, "runs_dir", files_only=True)
    elif not (out / "model" / "config.json").is_file():
        return None
    from onlyif.train.tracking import read_history

    return TrainOutcome(
        metrics=info["final"],
        history=read_history(out),
        model_dir=out / "model",
        checkpoint_dir=info["checkpoint"] if remote else Path(info["checkpoint"]),
        train_seconds=float(info["train_seconds"]),
        run_dir=out,
        run_uri=remote,
    )


def _read_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _load_model(cfg: TrainConfig, data: Path, kind: str) -> tuple[Codec, dict[str, Any]]:
    """The codec of ``cfg``'s model and the config the workers get: there ``model.pretrained`` is the HF directory
    (a GGUF model converted into one here, once). A from-scratch model reads only the synthetic task."""
    from onlyif.lm.codec import load_codec
    from onlyif.lm.models import check_model_dir, resolve_pretrained

    model_dir = None
    worker_cfg = cfg.to_dict()
    if cfg.model.pretrained is not None:
        model_dir = check_model_dir(resolve_pretrained(cfg.model.pretrained, "model.pretrained"))
        worker_cfg["model"]["pretrained"] = str(model_dir.resolve())
    codec = load_codec(model_dir, cfg.data.chat_template)
    if kind == "text" and isinstance(codec, CharCodec):
        raise ConfigError(
            f"model.pretrained: {data / 'train'} holds prompt/response text; the from-scratch GPT-2 reads only the "
            "synthetic task — give a pretrained HF model directory"
        )
    return codec, worker_cfg


def _start_run_folder(cfg: TrainConfig, out: Path, remote: str | None, resume: bool, run_info: dict) -> None:
    """The run folder with ``config.yaml`` and ``run.json``; for a URI run a fresh staging folder, on resume holding
    the run's files as last uploaded (from whichever node)."""
    if remote:
        from onlyif.storage import download

        shutil.rmtree(out, ignore_errors=True)
        if resume:
            download(remote, out, "--resume", files_only=True)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    write_json_atomic(out / "run.json", redact(run_info | {"versions": library_versions()}))


def _fit(
    cfg: TrainConfig,
    loop_config: dict[str, Any],
    shards: list[Any],
    out: Path,
    remote: str | None,
    callbacks: list | None,
    experiment_name: str | None,
    sources: list[str],
    progress: bool,
) -> tuple[Any, float]:
    """Run the ``TorchTrainer`` (inside an MLflow run when ``cfg.mlflow``); its result and wall time."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from onlyif.train.progress import TrainProgress
    from onlyif.train.tracking import METRICS_FILE, MetricsCallback, end_mlflow_run, start_mlflow_run
    from onlyif.train.user_errors import StopOnUserError

    mlflow_uri = run_id = None
    if cfg.mlflow:
        mlflow_uri = cfg.mlflow_tracking_uri or f"sqlite:///{out / 'mlflow.db'}"
        run_id = start_mlflow_run(
            mlflow_uri,
            experiment_name or cfg.mlflow_experiment,
            out,
            out.name,
            cfg.to_dict() | {"data": sources[0], "eval_data": sources[1:]},
        )
    if remote:
        upload_files(out, remote)

    s = cfg.scaling
    resources = dict(s.resources_per_worker or {"CPU": 1.0, **({"GPU": 1.0} if s.use_gpu else {})})
    ck = cfg.checkpoint
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=s.num_workers,
            use_gpu=s.use_gpu,
            resources_per_worker=resources,
            placement_strategy=s.placement_strategy,
        ),
        run_config=RunConfig(
            name=RAY_RUN_NAME,
            storage_path=remote or str(out),
            failure_config=FailureConfig(max_failures=2),
            checkpoint_config=CheckpointConfig(
                num_to_keep=ck.keep,
                checkpoint_score_attribute=ck.metric,
                checkpoint_score_order=ck.mode,
            ),
            callbacks=[
                MetricsCallback(out, mlflow_uri, run_id, mirror=remote),
                StopOnUserError(),
                *(callbacks or []),
            ],
        ),
        datasets={"train": shards[0]},
        dataset_config=shard_config(shards),
    )
    # Ray Train's controller polls its workers every 2 s by default and each ray.train.report waits for a poll
    # (1.4-1.9 s per report, measured on a GPU). Ray passes this variable from the process calling fit() (the
    # driver, or a Tune trial) to the controller and workers, on a local or remote cluster alike.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(HEALTH_CHECK_INTERVAL_S))
    if started_here():
        # A local Ray this command started is one node that nothing drains: Ray Train's preemption watcher (an actor
        # per run, polling for node drains) would only take a process start from the two training workers.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    shown = TrainProgress(out / METRICS_FILE, loop_config["total_steps"], cfg.epochs) if progress else None
    t0 = time.perf_counter()
    ok = False
    try:
        with shown or contextlib.nullcontext():
            result = trainer.fit()
        ok = True
    except Exception as exc:
        found = user_error(exc)
        if isinstance(found, OnlyIfError):  # raised in a worker and stopped by StopOnUserError: one line, no retry
            raise found from None
        raise
    finally:
        if run_id is not None:
            end_mlflow_run(mlflow_uri, run_id, ok)
        if remote and run_id is not None and not ok:  # the MLflow store's FAILED status, for a resume elsewhere
            with contextlib.suppress(OnlyIfError):
                upload_files(out, remote)
    return result, time.perf_counter() - t0
