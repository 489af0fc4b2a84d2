"""Running a sweep with Ray Tune: the experiment folder, the MLflow parent run, Tune itself, resume, the report.

Experiment folder::

    EXP_DIR/sweep.yaml    the resolved SweepConfig           EXP_DIR/grid.json    points run and points skipped
    EXP_DIR/state.json    MLflow ids and the Tune path        EXP_DIR/mlflow.db    default MLflow store
    EXP_DIR/mlartifacts/  MLflow artifacts (local stores)
    EXP_DIR/tune/NAME/    Tune experiment (restore point; or tune.storage_path/NAME)     EXP_DIR/trials/ID/   each trial's training run
                          (with tune.storage_path on a URI: STORAGE/NAME/trials/ID/, see ``_runs_dir``)
    EXP_DIR/data/HASH/    generated datasets or built mixtures (cache)
    EXP_DIR/report/       report.md, plots/, report.json

One module: the experiment folder, the MLflow parent run and Tune's restore point are written, and resumed,
together by :func:`run_sweep` (live progress and the per-trial MLflow logging are modules of their own). A new
experiment's MLflow side is set up in a thread while Ray and Tune start (:class:`_NewExperiment`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onlyif.config import read_yaml, save_config, validate_config
from onlyif.errors import ConfigError, OnlyIfError
from onlyif.io import write_json_atomic
from onlyif.mlflow_names import FINAL_KEY
from onlyif.sweep.config import SweepConfig
from onlyif.sweep.grid import Point, expand_grid

STATE_FILE = "state.json"
CONFIG_FILE = "sweep.yaml"
GRID_FILE = "grid.json"


@dataclass
class SweepOutcome:
    """What a sweep run produced."""

    exp_dir: Path
    finished: int
    """Trials that trained and evaluated to the end (over the whole sweep, earlier runs included)."""
    stopped: int
    """Trials ended early by the ASHA scheduler."""
    total: int
    errored: int
    report: dict[str, Any] | None
    wall_seconds: float
    tracking_uri: str
    interrupted: bool = False
    """Ctrl-C (or SIGUSR1) stopped Tune: trials are left for ``--resume``."""

    @property
    def exit_code(self) -> int:
        """The commands' exit status: 0 every trial ended, 130 interrupted (as a shell reports Ctrl-C), 1 not."""
        if self.interrupted:
            return 130
        return 0 if self.finished + self.stopped == self.total else 1


def _import_in_background(*modules: str) -> None:
    """Import what the report needs (matplotlib, scipy, pandas: ≈ 1.5 CPU-s) in a daemon thread while the driver
    waits on the trials, so that the report starts as soon as the last trial ends. Never waited for; an import that
    fails here fails again, and is reported, where the report imports it."""

    def load() -> None:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    threading.Thread(target=load, name="onlyif-report-imports", daemon=True).start()


class _TunesRestoreHint(logging.Filter):
    """Tune's "Experiment has been interrupted … Resume experiment with: Tuner.restore(…)" after Ctrl-C: the way back
    here is ``onlyif sweep --resume``, which the sweep prints itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Experiment has been interrupted")


@contextlib.contextmanager
def _without_tunes_restore_hint():
    tune_log, hint = logging.getLogger("ray.tune.tune"), _TunesRestoreHint()
    tune_log.addFilter(hint)
    try:
        yield
    finally:
        tune_log.removeFilter(hint)


def _trial_resources(cfg: SweepConfig) -> dict[str, float]:
    return {"CPU": cfg.tune.trial_cpus}


def _local_cpus(points: list[Point], cfg: SweepConfig) -> int | None:
    """Logical CPUs for a local Ray: the concurrent trials' workers plus two slots for Ray Data tasks."""
    if os.environ.get("RAY_ADDRESS"):
        return None
    from onlyif.train.config import TrainConfig

    need = 0.0
    for p in points:
        s = TrainConfig.model_validate(p.train, strict=False).scaling
        need = max(need, s.num_workers * s.worker_cpus)
    return max(int(need * cfg.tune.max_concurrent_trials + 0.999) + 2, os.cpu_count() or 1)


def trial_dirname(trial: Any) -> str:
    """Short trial folder names (Tune's default spells out the whole config)."""
    return trial.trial_id


def trial_name(trial: Any) -> str:
    return f"{trial.trial_id}[{trial.config['point']['id']}]"


def _scheduler(cfg: SweepConfig) -> Any:
    if cfg.tune.scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = cfg.tune.scheduler
    return ASHAScheduler(
        metric=s.metric,
        mode=s.mode,
        time_attr="training_iteration",
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )


def preflight(cfg: SweepConfig, points: list[Point]) -> None:
    """Refuse, before anything is written or started, inputs that every trial would trip over: a missing model
    directory, a missing mixture source file, eval splits found nowhere. (Reads no data.)"""
    from onlyif.data.mixture_config import SourceConfig
    from onlyif.data.sources import locate_source
    from onlyif.lm.models import check_model_dir, resolve_pretrained
    from onlyif.storage import local_path
    from onlyif.train.inputs import eval_split_dirs

    for model in sorted({p.train["model"]["pretrained"] for p in points if p.train["model"]["pretrained"]}):
        check_model_dir(resolve_pretrained(model, "train.model.pretrained"))  # converts a GGUF model once
    if cfg.mixture is None:
        return
    sources = {json.dumps(s, sort_keys=True) for p in points for s in (p.mixture or {})["sources"]}
    for text in sorted(sources):
        locate_source(SourceConfig.model_validate(json.loads(text)))
    for splits in sorted({tuple(p.train["eval"]["splits"]) for p in points}):
        eval_split_dirs(list(splits), None, [local_path(d, "eval_data") for d in cfg.eval_data])


def _data_cache(cfg: SweepConfig, exp: Path) -> str:
    """Where trials keep their datasets: ``data_cache`` (a folder, or an ``s3://…`` URI), else ``EXP_DIR/data``."""
    from onlyif.storage import is_uri

    if cfg.data_cache is None:
        return str(exp / "data")
    return cfg.data_cache if is_uri(cfg.data_cache) else str(Path(cfg.data_cache).resolve())


def _runs_dir(cfg: SweepConfig, exp: Path) -> str:
    """Where the trials' training runs go: ``EXP_DIR/trials``, or with ``tune.storage_path`` on a URI, beside Tune's
    experiment there (``STORAGE/NAME/trials``): Ray Train persists each run's checkpoints to it, so a trial resumed
    on another node finds them, and the trials' models and outputs are in one place."""
    from onlyif.storage import is_uri, join

    root = cfg.tune.root(exp)
    return join(cfg.tune_experiment(exp), "trials") if is_uri(root) else str(exp / "trials")


@dataclass
class _NewExperiment:
    """A new experiment folder being set up. Its MLflow side — the experiment, the parent run with the config and
    grid as artifacts, then ``state.json`` — runs in a thread while Ray and Tune start (MLflow's imports and store
    take about 2 s), and the sweep's MLflow logger waits for it before the first trial runs. If it fails,
    :meth:`empty` leaves ``--out`` as it was, so that the same command can be rerun."""

    dir: Path
    created: bool
    uri: str
    """The MLflow tracking URI."""
    mlflow: Future

    @classmethod
    def start(cls, cfg: SweepConfig, exp_dir: Path, points: list[Point]) -> _NewExperiment:
        if exp_dir.exists() and any(exp_dir.iterdir()):
            raise OnlyIfError(
                f"--out {exp_dir}: directory exists and is not empty (continue it with --resume {exp_dir}, or pick a "
                "new one)"
            )
        from onlyif.sweep.mlflow_log import tracking_uri

        new = cls(exp_dir, not exp_dir.exists(), tracking_uri(cfg.mlflow.tracking_uri, exp_dir), Future())
        exp_dir.mkdir(parents=True, exist_ok=True)
        try:
            save_config(cfg, exp_dir / CONFIG_FILE)
            write_json_atomic(
                exp_dir / GRID_FILE,
                {
                    "points": [p.to_dict() for p in points if p.skip_reason is None],
                    "skipped": [{"id": p.id, "reason": p.skip_reason} for p in points if p.skip_reason is not None],
                },
            )
        except BaseException:
            new.empty()
            raise
        threading.Thread(target=_resolve, args=(new.mlflow, _start_mlflow, cfg, exp_dir, new.uri), daemon=True).start()
        return new

    def empty(self) -> None:
        """``--out`` as it was before the sweep: removed if the sweep made it, else emptied. (Where
        ``tune.storage_path`` puts Tune's experiment outside it, that folder is left: it holds no trial, and it may
        be shared with other sweeps.)"""
        if self.created:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        for child in self.dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _resolve(future: Future, fn: Any, *args: Any) -> None:
    """``future`` gets ``fn(*args)``'s result or error. Run in a daemon thread: a Ctrl-C that cut an import short in
    the main thread can leave Python's import lock held, and waiting for (or exiting after) a thread stuck on it
    would hang the command."""
    future.set_running_or_notify_cancel()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:
        future.set_exception(exc)


def _start_mlflow(cfg: SweepConfig, exp_dir: Path, uri: str) -> dict[str, Any]:
    """The experiment's MLflow experiment and parent run in the store at ``uri``; ``state.json`` written last. Any
    failure is one line."""
    from onlyif.mlflow_store import open_client
    from onlyif.redact import redact_text
    from onlyif.sweep.mlflow_log import ensure_experiment, start_parent_run

    local = uri.startswith("sqlite:///")  # a local store: keep its artifacts beside it, in the experiment folder
    try:
        client = open_client(uri)
        experiment_id = ensure_experiment(
            client, cfg.mlflow.experiment or cfg.name, exp_dir / "mlartifacts" if local else None
        )
        parent = start_parent_run(client, experiment_id, cfg.name, cfg.to_dict())
        try:
            client.log_artifact(parent, str(exp_dir / CONFIG_FILE))
            client.log_artifact(parent, str(exp_dir / GRID_FILE))
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the server may be the thing that failed
                client.set_terminated(parent, status="FAILED")
            raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OnlyIfError(f"MLflow {redact_text(uri)}: cannot start the sweep's runs ({first})") from None
    state = {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent, "name": cfg.name}
    state["tune_loggers"] = "explicit"  # Tune's result loggers are among the run's callbacks (_tune_loggers)
    write_json_atomic(exp_dir / STATE_FILE, state)
    return state


def load_experiment(exp_dir: str | os.PathLike) -> tuple[SweepConfig, dict[str, Any]]:
    """The config and state of an existing experiment folder."""
    exp = Path(exp_dir)
    if not (exp / STATE_FILE).is_file() or not (exp / CONFIG_FILE).is_file():
        raise OnlyIfError(f"{exp}: not a sweep experiment folder ({STATE_FILE} or {CONFIG_FILE} missing)")
    cfg = validate_config(SweepConfig, read_yaml(exp / CONFIG_FILE), source=str(exp / CONFIG_FILE))
    return cfg, json.loads((exp / STATE_FILE).read_text())


def run_sweep(
    cfg: SweepConfig | None,
    exp_dir: str | os.PathLike,
    *,
    resume: bool = False,
    report: bool = True,
    echo: Any = print,
) -> SweepOutcome:
    """Run (or, with ``resume``, continue) the sweep in ``exp_dir``; write the report when trials finished.

    On resume the config is read from ``exp_dir`` (``cfg`` must be None); Tune restores the experiment, keeps
    finished trials and reruns unfinished or errored ones (a trial's training run continues from its last
    checkpoint). An MLflow failure (the tracking server gone and MLflow's retries spent) becomes one
    :class:`OnlyIfError` naming ``--resume`` once the sweep has started.
    """
    try:
        return _run_sweep(cfg, exp_dir, resume, report, echo)
    except OnlyIfError:
        raise
    except Exception as exc:
        cause = _mlflow_error(exc)  # raised in a Tune callback, it comes wrapped in a TuneError
        if cause is None:
            raise
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise OnlyIfError(
            f"MLflow: {first}; what Tune finished is kept in {exp_dir}: continue with: onlyif sweep --resume {exp_dir}"
        ) from None


def _tune_loggers(cfg: SweepConfig) -> list[Any]:
    """Tune's result loggers for the sweep: JSON (``result.json``, what ``ExperimentAnalysis``, the report and
    ``--resume`` read) and CSV, and TensorBoard's only when ``tune.tensorboard`` asks for it."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    return [CSVLoggerCallback(), JsonLoggerCallback(), *([TBXLoggerCallback()] if cfg.tune.tensorboard else [])]


def _mlflow_error(exc: BaseException | None) -> BaseException | None:
    """The MLflow error in ``exc``'s chain of causes and contexts, if any."""
    from mlflow.exceptions import MlflowException

    while exc is not None and not isinstance(exc, MlflowException):
        exc = exc.__cause__ or exc.__context__
    return exc


def _new_tuner(cfg: SweepConfig, exp: Path, valid: list[Point], trainable: Any, logger: Any) -> Any:
    """The Tuner of a new experiment: one trial per valid point, our callbacks (MLflow, progress, result files)."""
    from ray import tune

    from onlyif.sweep.progress import SweepProgress

    return tune.Tuner(
        trainable,
        param_space={
            "point": tune.grid_search([p.to_dict() for p in valid]),
            "data_cache": _data_cache(cfg, exp),
            "runs_dir": _runs_dir(cfg, exp),
            "eval_data": cfg.eval_data,
            "evaluate": cfg.evaluate.to_dict() if cfg.evaluate else None,
        },
        tune_config=tune.TuneConfig(
            max_concurrent_trials=cfg.tune.max_concurrent_trials,
            reuse_actors=cfg.tune.reuses_actors,
            scheduler=_scheduler(cfg),
            num_samples=1,
            trial_dirname_creator=trial_dirname,
            trial_name_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=cfg.name,
            storage_path=cfg.tune.root(exp),
            verbose=0,
            callbacks=[logger, SweepProgress(len(valid), cfg.report.metric), *_tune_loggers(cfg)],
        ),
    )


def _run_sweep(
    cfg: SweepConfig | None, exp_dir: str | os.PathLike, resume: bool, report: bool, echo: Any
) -> SweepOutcome:
    import time

    # Tune warns when a callback takes > 0.5 s; our MLflow logger writes each result to the tracking store, which
    # on sqlite under load takes about that: a warning a user can do nothing about (read at Tune's import).
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "5")
    from ray import tune

    from onlyif.ray_utils import environ_set, init_ray
    from onlyif.sweep.mlflow_log import MlflowTrialLogger
    from onlyif.sweep.trainable import run_trial

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no experiment tables on the console
    t0 = time.perf_counter()
    exp = Path(exp_dir).resolve()
    new: _NewExperiment | None = None
    if resume:
        if cfg is not None:
            raise OnlyIfError("--resume: the config is read from the experiment folder; drop --config/--set")
        cfg, state = load_experiment(exp)
        points = expand_grid(cfg)
    else:
        if cfg is None:
            raise OnlyIfError("a sweep config is required (--config FILE)")
        cfg = cfg.with_absolute_paths(os.getcwd())
        points = expand_grid(cfg)
        if not any(p.skip_reason is None for p in points):
            raise ConfigError(
                f"grid: all {len(points)} points are invalid, e.g. {points[0].id}: {points[0].skip_reason}"
            )
        preflight(cfg, [p for p in points if p.skip_reason is None])
        new = _NewExperiment.start(cfg, exp, points)
    valid = [p for p in points if p.skip_reason is None]
    for p in points:
        if p.skip_reason is not None:
            echo(f"skipped {p.id}: {p.skip_reason}")

    fitting = False
    try:
        # A trial the scheduler stops is killed with its Ray Train controller; Ray Train's cleaner then frees the
        # run's workers (its placement group) through the dashboard's State API — without them they stay until the
        # driver ends.
        init_ray(num_cpus=_local_cpus(valid, cfg), progress=False, dashboard=cfg.tune.scheduler is not None)
        trainable = tune.with_resources(run_trial, _trial_resources(cfg))
        if new is None:
            from mlflow import MlflowClient

            MlflowClient(state["tracking_uri"]).update_run(state["parent_run_id"], status="RUNNING")
            tuner = tune.Tuner.restore(
                cfg.tune_experiment(exp), trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            if new.mlflow.done():  # e.g. a store that is not a database, found while Ray started: before Tune
                new.mlflow.result()
            logger = MlflowTrialLogger(new.uri, state_file=str(exp / STATE_FILE), pending=new.mlflow)
            tuner = _new_tuner(cfg, exp, valid, trainable, logger)
        # Tune adds its CSV, JSON and TensorBoard loggers itself unless told not to; ours are among the callbacks
        # (a restored experiment's too). One started by an onlyif before them has none and keeps Tune's.
        own_loggers = new is not None or state.get("tune_loggers") == "explicit"
        fitting = True
        if report:
            _import_in_background("onlyif.report.render", "onlyif.report.sources")
        loggers = environ_set("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1") if own_loggers else contextlib.nullcontext()
        with loggers, _without_tunes_restore_hint():
            tuner.fit()
        if new is not None:
            state = new.mlflow.result()
    except Exception:
        if new is not None and (failed := new.mlflow.exception()) is not None:  # nothing trained
            new.empty()
            raise failed from None
        raise
    except BaseException:  # Ctrl-C (within Tune's fit, Tune stops the trials itself and keeps them for --resume)
        if new is not None and not fitting:  # before Tune ran anything: the same command can be rerun
            with contextlib.suppress(Exception):  # let the MLflow thread end its writes, unless it is stuck (_resolve)
                new.mlflow.exception(timeout=5)
            new.empty()
        raise
    # Statuses as saved for a restore (in memory, trials cut short by Ctrl-C also read as terminated).
    trials = tune.ExperimentAnalysis(cfg.tune_experiment(exp)).trials
    done = [t for t in trials if t.status == "TERMINATED"]
    finished = sum(1 for t in done if (t.last_result or {}).get(FINAL_KEY) == 1)
    stopped = len(done) - finished  # ended early by the ASHA scheduler
    errored = sum(1 for t in trials if t.status == "ERROR")
    complete = len(done) + errored == len(valid)  # fit returns with trials left only when Ctrl-C stopped Tune
    wall = time.perf_counter() - t0

    rep = None
    if report and finished:
        from onlyif.sweep.report_cmd import make_report

        rep = make_report(exp, source="tune", log_to_mlflow=True)
    from mlflow import MlflowClient

    status = "KILLED" if not complete else ("FAILED" if errored else "FINISHED")
    MlflowClient(state["tracking_uri"]).set_terminated(state["parent_run_id"], status=status)
    if stopped:
        echo(f"{stopped} trial(s) stopped early by the scheduler (not in the report)")
    if not complete or errored:
        echo(
            f"sweep {'incomplete' if complete else 'interrupted'}: {finished} of {len(valid)} trials finished "
            f"({errored} errored); continue with: onlyif sweep --resume {exp}"
        )
    return SweepOutcome(exp, finished, stopped, len(valid), errored, rep, wall, state["tracking_uri"], not complete)
