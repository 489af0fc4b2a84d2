"""``run_training``: Ray Train ``TorchTrainer`` + DeepSpeed on a dataset directory, into a run directory.

Run directory layout::

    RUN_DIR/config.yaml        the resolved TrainConfig        RUN_DIR/run.json      data path, versions, outcome
    RUN_DIR/metrics.jsonl      one line per report             RUN_DIR/mlflow.db     default MLflow store
    RUN_DIR/ray_train/         Ray Train storage (checkpoint_*/ with DeepSpeed engine states)
    RUN_DIR/model/             final HF ``save_pretrained`` export + tokenizer
    RUN_DIR/eval/              final exact-match summaries and failure samples per split

``RUN_DIR`` may be an ``s3://…``-style URI (anything ``pyarrow.fs`` opens): Ray Train then persists its checkpoints
there itself (``RUN_DIR/ray_train/``), and this process keeps the other files in a node-local staging folder
(:func:`stage_dir`) that it uploads — ``metrics.jsonl`` after every report, the rest before training and at the end
(``model/`` and ``eval/`` downloaded from the final checkpoint). A resume, on any node, restores the staging folder's
files from the URI and Ray Train restores the checkpoint from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onlyif.config import save_config
from onlyif.errors import ConfigError, OnlyIfError
from onlyif.io import library_versions, write_json_atomic
from onlyif.lm.batches import join_examples
from onlyif.lm.codec import CharCodec, Codec
from onlyif.lm.datasets import dataset_kind, read_rows, split_files
from onlyif.ray_errors import ERROR_COLUMN, error_record, raise_first_in
from onlyif.ray_utils import started_here
from onlyif.redact import redact
from onlyif.train.config import TrainConfig
from onlyif.train.loop import HF_EXPORT, total_optimizer_steps, train_loop

RAY_RUN_NAME = "ray_train"
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


class _Tokenize:
    """Rows → ``input_ids`` (prompt+response) and ``prompt_len`` (a Ray Data ``map_batches`` callable), plus the
    :data:`~onlyif.ray_errors.ERROR_COLUMN` that carries a bad row's error back as data (one row, no tokens)."""

    def __init__(self, codec: Codec, max_length: int, truncate: bool) -> None:
        self.codec, self.max_length, self.truncate = codec, max_length, truncate

    def __call__(self, batch: dict[str, Any]) -> Any:
        import pyarrow as pa

        rows = {k: list(v) for k, v in batch.items()}
        try:
            prompts, responses = self.codec.encode(rows)
            seqs, plens = join_examples(
                prompts,
                responses,
                self.max_length,
                self.truncate,
                lambda i: f"prompt {self.codec.prompt_texts(rows)[i]!r}",
            )
            ids, errors = [s.tolist() for s in seqs], pa.nulls(len(plens), pa.string())
        except OnlyIfError as exc:
            ids, plens, errors = [[]], [0], pa.array([json.dumps(error_record(exc))])
        return pa.table(
            {
                "input_ids": pa.array(ids, type=pa.list_(pa.int32())),
                "prompt_len": pa.array(plens, type=pa.int32()),
                ERROR_COLUMN: errors,
            }
        )


def _check_resources(cfg: TrainConfig) -> None:
    """Refuse scaling the cluster can never place (instead of waiting forever for workers). On an autoscaling
    cluster, what its node types could add counts too (autoscaler v2 publishes them). A joined cluster that
    publishes none (autoscaler v1, `ray up`'s default) may still grow: the request then waits, with a line saying so,
    as Ray Train itself would; only a local Ray this process started is known never to grow."""
    import ray
    from ray._private.state import state  # the autoscaler's cluster config, as Ray Train's own check reads it

    total = dict(ray.cluster_resources())
    most = state.get_max_resources_from_cluster_config()
    for name, amount in (most or {}).items():
        total[name] = max(float(total.get(name, 0)), float(amount))
    grows = most is None and not started_here()  # a joined cluster whose autoscaler (v1) publishes no node types
    s = cfg.scaling
    need = {"CPU": s.num_workers * s.worker_cpus}
    for name, amount in (s.resources_per_worker or {}).items():
        if name != "CPU":
            need[name] = need.get(name, 0) + s.num_workers * amount
    if s.use_gpu:
        need.setdefault("GPU", float(s.num_workers))
    for name, amount in need.items():
        have = float(total.get(name, 0))
        if amount > have + 1e-9 and grows:
            print(
                f"scaling: {amount:g} {name} asked, the Ray cluster has {have:g} now; waiting for its autoscaler to "
                "add nodes (Ctrl-C if it has none that can)",
                file=sys.stderr,
            )
        elif amount > have + 1e-9:
            per = amount / s.num_workers
            raise ConfigError(
                f"scaling.num_workers: {s.num_workers} workers × {per:g} {name} need {amount:g} {name} but the Ray "
                f"cluster has {have:g} and can never have more; lower scaling.num_workers or "
                "scaling.resources_per_worker"
            )


def _max_length(cfg: TrainConfig) -> int:
    if cfg.data.max_length is not None:
        return cfg.data.max_length
    if cfg.model.pretrained is None:
        return cfg.model.n_positions
    from transformers import AutoConfig

    from onlyif.lm.models import max_positions, resolve_pretrained

    return max_positions(AutoConfig.from_pretrained(resolve_pretrained(cfg.model.pretrained))) or 2048


IN_PROCESS_BYTES = 64 << 20
"""Train splits whose parquet files are smaller than this are tokenized in the driver process: starting a Ray Data
pipeline costs seconds, more than tokenizing ~10^5 rows takes (a sweep trial pays it every time)."""


def _train_shards(
    cfg: TrainConfig, data_dir: Path, codec: Codec, kind: str, uri: str | None = None
) -> tuple[list[Any], int]:
    """Tokenized train split in file order, split into equal per-worker shards (deterministic): tokenized with Ray
    Data ``map_batches`` over the parquet files, or in this process when they are small (the same rows either way).
    ``uri``: where ``data_dir`` was downloaded from; Ray Data's read tasks, which may run on any node, read there."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray.data

    files = split_files(data_dir, "train")
    cols = ["rule_x", "rule_y", "input", "output"] if kind == "synthetic" else ["prompt", "response"]
    tokenize = _Tokenize(codec, _max_length(cfg), truncate=kind == "text")
    bad_row = f"{data_dir / 'train'}: "  # a bad row's error, handed back as data (onlyif.ray_errors)
    if sum(f.stat().st_size for f in files) < IN_PROCESS_BYTES:
        table = pa.concat_tables([pq.read_table(f, columns=cols) for f in files])
        tokens = tokenize({c: table.column(c).to_numpy(zero_copy_only=False) for c in cols})
        raise_first_in(tokens[ERROR_COLUMN], bad_row)
        ds = ray.data.from_arrow(tokens.drop_columns([ERROR_COLUMN]))
    else:
        paths = [f"{uri.rstrip('/')}/train/{f.name}" if uri else str(f) for f in files]
        ds = ray.data.read_parquet(paths, columns=cols, override_num_blocks=max(len(files), 2))
        ds.context.execution_options.preserve_order = True
        ds = ds.map_batches(tokenize, batch_format="numpy", batch_size=4096).materialize()
        for errors in ds.select_columns([ERROR_COLUMN]).iter_batches(batch_format="pyarrow", batch_size=None):
            raise_first_in(errors[ERROR_COLUMN], bad_row)
        ds = ds.drop_columns([ERROR_COLUMN]).materialize()
    rows = ds.count()
    per_worker = rows // cfg.scaling.num_workers
    if per_worker == 0:
        raise OnlyIfError(f"{data_dir / 'train'}: {rows} usable rows for {cfg.scaling.num_workers} workers")
    return ds.split(cfg.scaling.num_workers, equal=True), per_worker


def eval_split_dirs(splits: list[str], data_dir: Path | None, eval_data: list[Path]) -> dict[str, Path]:
    """The dataset folder holding each eval split that exists: an ``eval_data`` folder, else ``data_dir``.

    Splits missing everywhere are skipped (none present at all is an error); a split found in two ``eval_data``
    folders is refused rather than picked silently. ``data_dir=None`` looks in ``eval_data`` only.
    """
    for root in eval_data:
        if not root.is_dir():
            raise OnlyIfError(f"--eval-data {root}: dataset directory not found")
    out = {}
    for split in splits:
        holders = [root for root in eval_data if (root / split).is_dir()]
        if len(holders) > 1:
            raise OnlyIfError(f"--eval-data: split {split!r} is in both {holders[0]} and {holders[1]}")
        if holders:
            out[split] = holders[0]
        elif data_dir is not None and (data_dir / split).is_dir():
            out[split] = data_dir
    if splits and not out:
        roots = [*([data_dir] if data_dir is not None else []), *eval_data]
        where = ", ".join(str(p) for p in roots) or "nowhere: no eval_data given"
        head = f"--data {data_dir}" if data_dir is not None else "eval_data"
        raise OnlyIfError(f"{head}: none of the eval splits {splits} is present (looked in {where})")
    return out


def _eval_items_of(codec: Codec, root: Path, split: str, limit: int | None) -> list[dict]:
    from onlyif.eval.exact_match import eval_items

    return eval_items(codec, read_rows(root, split, limit))


def _eval_items(cfg: TrainConfig, roots: dict[str, Path], codec: Codec, max_length: int) -> dict[str, list[dict]]:
    out = {}
    for split, root in roots.items():
        items = _eval_items_of(codec, root, split, cfg.eval.max_examples)
        longest = max((len(it["prompt_ids"]) + it["budget"] for it in items), default=0)
        if longest > max_length:
            raise OnlyIfError(f"{root / split}: examples need {longest} positions, the model has {max_length}")
        out[split] = items
    return out


def _shard_config(shards: list[Any]) -> Any:
    from ray.train import DataConfig

    class FixedShards(DataConfig):
        """Hands worker i the i-th precomputed equal split (the same rows on every restart and resume)."""

        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            if world_size != len(shards):
                raise ValueError(f"{len(shards)} data shards for {world_size} workers")
            return [{name: shards[i].iterator() for name in datasets} for i in range(world_size)]

    return FixedShards()


def stage_dir(uri: str) -> Path:
    """This node's staging folder of the run at ``uri`` (under :func:`onlyif.storage.cache_root`)."""
    import hashlib

    from onlyif.storage import cache_root

    return cache_root() / "runs" / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]


def _check_run_uri(uri: str, resume: bool) -> None:
    from onlyif.storage import check_target, is_empty, is_folder, join

    if resume:
        if not is_folder(join(uri, RAY_RUN_NAME), "--resume"):
            raise OnlyIfError(f"--resume {uri}: no earlier run found there ({join(uri, RAY_RUN_NAME)} missing)")
        return
    if not is_empty(uri, "--out"):
        raise OnlyIfError(f"--out {uri}: folder exists and is not empty (resume it with --resume, or pick a new one)")
    check_target(uri, overwrite=True)  # can be written


def _check_run_dir(out: Path, resume: bool) -> None:
    ray_dir = out / RAY_RUN_NAME
    if resume:
        if not ray_dir.is_dir():
            raise OnlyIfError(f"--resume {out}: no earlier run found there ({ray_dir} missing)")
        return
    if out.exists() and not out.is_dir():
        raise OnlyIfError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise OnlyIfError(
            f"--out {out}: directory exists and is not empty (resume it with --resume, or pick a new one)"
        )


def run_training(
    cfg: TrainConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    callbacks: list | None = None,
    experiment_name: str | None = None,
    eval_data: list[str | os.PathLike] | None = None,
) -> TrainOutcome:
    """Train ``cfg`` on ``DATA/train`` with Ray Train + DeepSpeed, evaluating exact match and loss on the test splits.

    ``resume=True`` continues the run in ``out_dir`` from its latest checkpoint. ``callbacks`` are extra Ray Train
    ``RunConfig`` callbacks (e.g. Tune's ``TuneReportCallback`` when called inside a Tune trial).
    ``experiment_name`` names the MLflow experiment (default ``cfg.mlflow_experiment``). ``eval_data`` lists other
    dataset folders to take eval splits from (e.g. held-out sets beside a mixture that has only ``train``).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from onlyif.lm.codec import load_codec
    from onlyif.lm.models import check_model_dir, resolve_pretrained
    from onlyif.ray_utils import init_ray
    from onlyif.storage import is_uri, local_path
    from onlyif.train.tracking import MetricsCallback, end_mlflow_run, read_history, start_mlflow_run

    named = [str(p) if is_uri(p) else None for p in [data_dir, *(eval_data or [])]]  # URIs stay in run.json
    data = local_path(data_dir, "--data")  # an s3://… dataset: this node's copy (onlyif.storage.fetch)
    evals = [local_path(p, "--eval-data") for p in eval_data or []]
    remote = str(out_dir).rstrip("/") if is_uri(out_dir) else None  # Ray Train's checkpoints go there
    out = stage_dir(remote) if remote else Path(out_dir).resolve()
    kind = dataset_kind(data, "train")
    model_dir = None
    worker_cfg = cfg.to_dict()  # workers get the HF directory a GGUF model was converted into, here, once
    if cfg.model.pretrained is not None:
        model_dir = check_model_dir(resolve_pretrained(cfg.model.pretrained, "model.pretrained"))
        worker_cfg["model"]["pretrained"] = str(model_dir.resolve())
    codec = load_codec(model_dir, cfg.data.chat_template)
    if kind == "text" and isinstance(codec, CharCodec):
        raise ConfigError(
            f"model.pretrained: {data / 'train'} holds prompt/response text; the from-scratch GPT-2 reads only the "
            "synthetic task — give a pretrained HF model directory"
        )
    if remote:
        _check_run_uri(remote, resume)
    else:
        _check_run_dir(out, resume)
    init_ray()
    _check_resources(cfg)

    max_length = _max_length(cfg)
    shards, per_worker = _train_shards(cfg, data, codec, kind, named[0])
    eval_items = _eval_items(cfg, eval_split_dirs(cfg.eval.splits, data, evals), codec, max_length)
    probe_items = _eval_items_of(codec, data, "train", cfg.early_stop.sample) if cfg.early_stop else []
    total_steps = total_optimizer_steps(per_worker, cfg)
    if total_steps < 1:
        raise OnlyIfError(
            f"{data / 'train'}: {per_worker} rows per worker make no optimizer step at batch_size {cfg.batch_size} × "
            f"grad_accum {cfg.optim.grad_accum}"
        )

    if remote:  # a fresh staging folder; on resume, the run's files as last uploaded (from whichever node)
        from onlyif.storage import download

        shutil.rmtree(out, ignore_errors=True)
        if resume:
            download(remote, out, "--resume", files_only=True)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    sources = [u or str(p) for u, p in zip(named, [data, *evals], strict=True)]
    run_info = {"data": sources[0], "eval_data": sources[1:], "kind": kind}
    write_json_atomic(out / "run.json", redact(run_info | {"versions": library_versions()}))
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
        _upload_files(out, remote)

    s = cfg.scaling
    resources = dict(s.resources_per_worker or {"CPU": 1.0, **({"GPU": 1.0} if s.use_gpu else {})})
    ck = cfg.checkpoint
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "cfg": worker_cfg,
            "codec": codec,
            "eval_items": eval_items,
            "probe_items": probe_items,
            "rows_per_worker": per_worker,
            "total_steps": total_steps,
        },
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
            callbacks=[MetricsCallback(out, mlflow_uri, run_id, mirror=remote), *(callbacks or [])],
        ),
        datasets={"train": shards[0]},
        dataset_config=_shard_config(shards),
    )
    # Ray Train's controller polls its workers every 2 s by default and each ray.train.report waits for a poll
    # (1.4-1.9 s per report, measured on a GPU). Ray passes this variable from the process calling fit() (the
    # driver, or a Tune trial) to the controller and workers, on a local or remote cluster alike.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(HEALTH_CHECK_INTERVAL_S))
    t0 = time.perf_counter()
    ok = False
    try:
        result = trainer.fit()
        ok = True
    finally:
        if run_id is not None:
            end_mlflow_run(mlflow_uri, run_id, ok)
        if remote and run_id is not None and not ok:  # the MLflow store's FAILED status, for a resume elsewhere
            with contextlib.suppress(OnlyIfError):
                _upload_files(out, remote)
    seconds = time.perf_counter() - t0

    if remote:
        model_dir, ckpt_path = _publish_remote(result.checkpoint, out, remote)
    else:
        ckpt_path = Path(result.checkpoint.path) if result.checkpoint is not None else None
        if ckpt_path is None or not (ckpt_path / HF_EXPORT / "config.json").is_file():
            raise OnlyIfError(f"{out}: training finished without a final checkpoint holding the exported model")
        model_dir = _publish(ckpt_path, out)
    history = read_history(out)
    final = dict(result.metrics or {})
    metrics = {k: float(v) for k, v in final.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    write_json_atomic(out / "run.json", redact(run_info | {"versions": library_versions(), "final": metrics}))
    if remote:
        _upload_results(out, remote)
    return TrainOutcome(
        metrics=metrics,
        history=history,
        model_dir=model_dir,
        checkpoint_dir=ckpt_path,
        train_seconds=seconds,
        run_dir=out,
        run_uri=remote,
    )


def _upload_files(out: Path, uri: str) -> None:
    """The staging folder's files (config.yaml, run.json, metrics.jsonl, MLflow ids and store) to ``uri``."""
    from onlyif.storage import upload

    upload(out, uri, "--out", sorted(p.name for p in out.iterdir() if p.is_file()))


def _upload_results(out: Path, uri: str) -> None:
    """``model/`` and ``eval/`` (replacing what an earlier attempt left there), then the files (run.json last
    holds the final metrics)."""
    from onlyif.storage import clear, join, upload

    folders = [name for name in ("model", "eval") if (out / name).is_dir()]
    for name in folders:
        clear(join(uri, name), "--out")
    upload(out, uri, "--out", folders)
    _upload_files(out, uri)


def _publish_remote(checkpoint: Any, out: Path, uri: str) -> tuple[Path, str]:
    """Download the final checkpoint's HF export and eval files (not its engine states) from storage into
    ``out/model`` and ``out/eval``; returns the model folder and the checkpoint's URI."""
    import pyarrow.fs as pafs

    from onlyif.io import atomic_dir
    from onlyif.storage import join

    fs = checkpoint.filesystem if checkpoint is not None else None
    base = checkpoint.path.rstrip("/") if checkpoint is not None else ""
    if fs is None or fs.get_file_info(f"{base}/{HF_EXPORT}/config.json").type != pafs.FileType.File:
        raise OnlyIfError(f"{uri}: training finished without a final checkpoint holding the exported model")
    local = pafs.LocalFileSystem()
    with atomic_dir(out / "model", overwrite=True) as tmp:
        pafs.copy_files(f"{base}/{HF_EXPORT}", str(tmp), fs, local)
    if fs.get_file_info(f"{base}/eval").type == pafs.FileType.Directory:
        with atomic_dir(out / "eval", overwrite=True) as tmp:
            pafs.copy_files(f"{base}/eval", str(tmp), fs, local)
    return out / "model", join(uri, RAY_RUN_NAME, base.rsplit("/", 1)[-1])


def _publish(ckpt: Path, out: Path) -> Path:
    """Copy the final checkpoint's HF export to ``RUN_DIR/model`` and its eval files to ``RUN_DIR/eval``."""
    from onlyif.io import atomic_dir

    with atomic_dir(out / "model", overwrite=True) as tmp:
        shutil.copytree(ckpt / HF_EXPORT, tmp, dirs_exist_ok=True)
    if (ckpt / "eval").is_dir():
        with atomic_dir(out / "eval", overwrite=True) as tmp:
            shutil.copytree(ckpt / "eval", tmp, dirs_exist_ok=True)
    return out / "model"
