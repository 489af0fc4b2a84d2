"""Config of a budget-vs-diversity sweep: base task/train configs, the grid, Tune resources, MLflow, report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from onlyif.config import Config
from onlyif.eval.model_eval import ModelEvalConfig
from onlyif.report.config import ReportConfig


class GridConfig(Config):
    """The points of the sweep: the Cartesian product of every list given here, times the seeds.

    ``instructions`` with ``budget`` is the budget-constrained grid of the paper: I from a list, S = budget / I
    derived (points with S < 1 are reported and skipped). ``instructions`` with ``examples_per_instruction``
    instead crosses I and S (budget = I × S).
    """

    instructions: list[int] | None = Field(None, min_length=1)
    """I: distinct training instructions (``task.instructions``)."""
    budget: list[int] | None = Field(None, min_length=1)
    """Total training examples (``task.budget``); with ``instructions`` this is the "I × S = budget" grid."""
    examples_per_instruction: list[int] | None = Field(None, min_length=1)
    """S (``task.examples_per_instruction``); crossing it with ``budget`` is refused (over-determined)."""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    """Each point is repeated once per seed (sets ``task.seed`` — or ``mixture.seed`` — and ``train.seed``)."""
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    """Any other field, by dotted key under ``task.`` or ``train.`` (e.g. ``task.noop_share: [0.1, 0.5]``,
    ``task.frequency_alpha: [null, 0.5]``, ``task.families: [[...], [...]]``, ``train.lr: [1e-3]``), or under
    ``mixture.`` in a mixture sweep: ``mixture.fractions: [{code: 0.8, general: 0.2}, ...]`` (shares by source
    name, at fixed budget), ``mixture.counts: [{...}]``, ``mixture.sources.NAME.FIELD`` (e.g. ``selection``) or any
    other mixture field (``mixture.dedup.near: [true, false]``)."""

    @model_validator(mode="after")
    def _check(self) -> GridConfig:
        if self.budget is not None and self.examples_per_instruction is not None:
            raise ValueError("examples_per_instruction: give budget or examples_per_instruction in the grid, not both")
        for name in ("instructions", "budget", "examples_per_instruction"):
            values = getattr(self, name)
            if values is not None and any(v < 1 for v in values):
                raise ValueError(f"{name}: values must be >= 1 (got {values})")
        for key, values in self.axes.items():
            head = key.split(".", 1)[0]
            if head not in ("task", "train", "mixture") or "." not in key:
                raise ValueError(f"axes: key {key!r} must start with 'task.', 'train.' or 'mixture.'")
            if not values:
                raise ValueError(f"axes: {key} has no values")
            if key in ("task.instructions", "task.budget", "task.examples_per_instruction", "task.seed"):
                raise ValueError(f"axes: {key} is a first-class grid field; use grid.{key.split('.')[1]} or seeds")
            if key in ("mixture.budget", "mixture.seed"):
                raise ValueError(f"axes: {key} is a first-class grid field; use grid.budget or seeds")
            if key in ("mixture.fractions", "mixture.counts"):
                for v in values:
                    if not isinstance(v, dict) or not v or not all(isinstance(x, int | float) for x in v.values()):
                        raise ValueError(f"axes: each {key} value maps source names to numbers (got {v!r})")
        return self


class SchedulerConfig(Config):
    """Early stopping of unpromising trials (ASHA), for exploration grids."""

    type: Literal["asha"] = "asha"
    metric: str = "train_loss"
    """A metric the trainer reports every epoch."""
    mode: Literal["min", "max"] = "min"
    grace_period: int = Field(1, ge=1)
    """Epochs every trial runs before it can be stopped."""
    reduction_factor: int = Field(3, ge=2)


class TuneConfig(Config):
    """How trials are scheduled on the cluster."""

    max_concurrent_trials: int = Field(1, ge=1)
    """Trials running at once (1 on a 2-core machine; the number of GPU groups on a cluster)."""
    scheduler: SchedulerConfig | None = None
    trial_cpus: float = Field(0.01, gt=0.0)
    """CPUs held by the trial driver itself (the Ray Train workers hold their own resources)."""
    reuse_actors: bool = True
    """Run the next trial in the process of a finished one (Tune's ``reuse_actors``): saves each trial's process
    start and imports (torch, transformers, Ray Train) — bench/sweep_overhead.py: 85 s vs 102 s for 4 trials.
    Off with a ``scheduler`` (:attr:`reuses_actors`)."""
    tensorboard: bool = False
    """Also write Tune's TensorBoard event files for each trial (a Tune default). Off: MLflow and Tune's own
    ``result.json`` / ``progress.csv`` hold every metric, and the sweep's driver never imports tensorboardX, which
    imports torch (≈ 1–1.7 CPU-s and ≈ 200 MiB per driver)."""
    storage_path: str | None = None
    """Where Tune keeps the experiment state and the trials' results (its restore point): default
    ``EXP_DIR/tune``; an ``s3://bucket/prefix`` URI (credentials and ``AWS_ENDPOINT_URL_S3`` from the environment)
    keeps them in object storage, which every node reaches — and then the trials' training runs too (Ray Train
    checkpoints, models, metrics), under ``STORAGE/NAME/trials/TRIAL_ID``."""

    @property
    def reuses_actors(self) -> bool:
        """``reuse_actors`` as run: off with a scheduler. A trial it stops must end, its Ray Train run with it; Tune
        would keep the process, still training, for the next trial, whose start then fails (after a 2-s wait)."""
        return self.reuse_actors and self.scheduler is None

    def root(self, exp_dir: Path) -> str:
        """The Tune storage path of the experiment in ``exp_dir``."""
        return self.storage_path.rstrip("/") if self.storage_path else str(exp_dir / "tune")


class MlflowConfig(Config):
    """Where the sweep is logged. ``MLFLOW_TRACKING_URI`` overrides ``tracking_uri``."""

    tracking_uri: str | None = None
    """Default: ``sqlite:///EXP_DIR/mlflow.db``."""
    experiment: str | None = None
    """MLflow experiment name (default: the sweep name)."""


class SweepConfig(Config):
    """A sweep: base task and training configs, the grid over them, and how to run and log it."""

    name: str = Field("sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Sweep name (Tune experiment folder and default MLflow experiment)."""
    task: dict[str, Any] = Field(default_factory=dict)
    """Base synthetic-task config (see ``onlyif generate``); grid values are set on top of it."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Base training config (see ``onlyif train``); grid values are set on top of it."""
    grid: GridConfig = Field(default_factory=GridConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    mixture: dict[str, Any] | None = None
    """A base real-data mixture (see ``onlyif mix``). When set, the sweep trains on mixtures instead of the
    synthetic task: each trial builds its point's mixture (cached by config hash in ``data_cache``), ``task`` must
    be empty, ``grid.budget`` sets ``mixture.budget`` and seeds set ``mixture.seed``."""
    eval_data: list[str] = Field(default_factory=list)
    """Dataset folders holding the eval splits named in ``train.eval.splits`` (e.g. held-out sets written by
    ``onlyif mix`` with ``output_split: test_code``); searched before each trial's own data."""
    evaluate: ModelEvalConfig | None = None
    """Evaluate each trial's exported model after training (mixture sweeps): ``code`` (sandboxed pass@k, e.g.
    ``{benchmark: humaneval, max_problems: 20}``) and/or ``suite`` (an ``onlyif eval suite`` config, inline). The
    metrics (``humaneval/pass@1``, ``suite/score``, ...) join the trial's results, its MLflow run and the report,
    which then ranks by them by default."""
    data_cache: str | None = None
    """Folder of generated datasets keyed by config hash (default: ``EXP_DIR/data``); on a cluster a folder every
    node mounts, or an ``s3://…`` URI (trials publish their builds there and download others' builds)."""

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        mixture_axes = [k for k in self.grid.axes if k.startswith("mixture.")]
        if self.mixture is None:
            if mixture_axes:
                raise ValueError(f"grid.axes: {mixture_axes[0]} needs a base mixture (the sweep's mixture: key)")
            if self.evaluate is not None:
                raise ValueError("evaluate: scores models trained on text; it needs a mixture sweep (mixture: key)")
            return self
        if self.task:
            raise ValueError("task: a mixture sweep trains on the mixture; leave task empty")
        for name in ("instructions", "examples_per_instruction"):
            if getattr(self.grid, name) is not None:
                raise ValueError(f"grid.{name}: a synthetic-task axis; a mixture sweep varies budget, seeds and axes")
        task_axes = [k for k in self.grid.axes if k.startswith("task.")]
        if task_axes:
            raise ValueError(f"grid.axes: {task_axes[0]} is a synthetic-task field; a mixture sweep has no task")
        splits = (self.train.get("eval") or {}).get("splits", ["test_seen"])
        if not splits:
            raise ValueError(
                "train.eval.splits: a mixture sweep compares its mixtures on eval splits; name at least one"
            )
        if "metric" not in self.report.model_fields_set:
            self.report.metric = self.evaluate.default_metric() if self.evaluate else f"{splits[0]}/loss"
        return self

    def tune_experiment(self, exp_dir: Path) -> str:
        """Where Tune keeps this sweep's experiment (``tune.storage_path``/NAME, by default ``EXP_DIR/tune/NAME``)."""
        return f"{self.tune.root(exp_dir)}/{self.name}"

    def with_absolute_paths(self, base: str | os.PathLike) -> SweepConfig:
        """A copy whose relative paths (mixture files, ``eval_data``, ``data_cache``, ``train.model.pretrained``)
        are absolute against ``base``: trials run in their own working directories, and a resumed sweep reads
        the saved config from anywhere."""
        from onlyif.data.mixture_config import absolute_paths
        from onlyif.io import absolute
        from onlyif.lm.models import absolute_pretrained

        data = self.to_dict()
        model = data["train"].get("model")
        if isinstance(model, dict) and model.get("pretrained"):
            model["pretrained"] = absolute_pretrained(model["pretrained"], base)
        if data["mixture"] is not None:
            data["mixture"] = absolute_paths(data["mixture"], base)
        data["eval_data"] = [absolute(p, base) for p in data["eval_data"]]
        data["data_cache"] = absolute(data["data_cache"], base)
        if data["tune"]["storage_path"] and "://" not in data["tune"]["storage_path"]:
            data["tune"]["storage_path"] = absolute(data["tune"]["storage_path"], base)
        if self.evaluate is not None:
            data["evaluate"] = self.evaluate.with_absolute_paths(base).to_dict()
        for key, values in data["grid"]["axes"].items():
            if key.endswith((".path", "model.pretrained")):
                fix = absolute_pretrained if key.endswith("model.pretrained") else absolute
                data["grid"]["axes"][key] = [
                    [fix(x, base) for x in v] if isinstance(v, list) else fix(v, base) for v in values
                ]
        return SweepConfig.model_validate(data)
