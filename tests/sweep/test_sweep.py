"""Sweeps: grid expansion, a tiny 2×2 grid (one point skipped) end to end on local Ray + MLflow sqlite, ASHA, and
resume after the MLflow server is lost, after SIGINT and after SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from onlyif.config import load_config, validate_config
from onlyif.errors import ConfigError
from onlyif.sweep.config import SweepConfig
from onlyif.sweep.grid import expand_grid
from tests.conftest import TEST_CLUSTER_CPUS, free_cpus_once_idle

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "name": "tiny",
    "task": {
        "alphabet_size": 4,
        "input_length": 6,
        "pattern_length": 2,
        "noop_share": 0.25,
        "test_seen": 16,
        "test_unseen": 16,
    },
    "train": {
        "model": {"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 32},
        "epochs": 1,
        "batch_size": 16,
        "scaling": {"num_workers": 1, "threads_per_worker": 1},
        "eval": {"max_examples": 16},
        "checkpoint": {"keep": 1},
    },
    "grid": {"instructions": [2, 4], "budget": [32, 48]},
    "report": {"bootstrap": 20},
}


def _cfg(**grid) -> SweepConfig:
    data = json.loads(json.dumps(TINY))
    data["grid"] = grid or data["grid"]
    return validate_config(SweepConfig, data)


def test_budget_grid_derives_s_and_skips_invalid_points():
    points = expand_grid(_cfg(instructions=[10, 100, 1000], budget=[500], seeds=[0, 1]))
    valid = [p for p in points if p.skip_reason is None]
    skipped = [p for p in points if p.skip_reason is not None]
    assert [p.id for p in skipped] == ["I=1000,B=500,seed=0", "I=1000,B=500,seed=1"]
    assert "S = budget / I = 500 / 1000 < 1" in skipped[0].skip_reason
    assert [(p.labels["instructions"], p.labels["examples_per_instruction"]) for p in valid] == [
        (10, 50),
        (10, 50),
        (100, 5),
        (100, 5),
    ]
    assert {(p.task["seed"], p.train["seed"]) for p in valid} == {(0, 0), (1, 1)}
    assert all(p.task["budget"] == 500 and p.task["examples_per_instruction"] is None for p in valid)


def test_grid_axes_cross_with_instructions_and_validate_each_point():
    cfg = _cfg(
        instructions=[2, 4],
        examples_per_instruction=[3],
        axes={"task.noop_share": [0.1, 0.5], "train.optim.lr": [1e-3], "task.frequency_alpha": [None, 0.5]},
    )
    points = expand_grid(cfg)
    assert len(points) == 8 and all(p.skip_reason is None for p in points)
    p = next(p for p in points if p.labels["task.noop_share"] == 0.5 and p.labels["task.frequency_alpha"] == 0.5)
    assert p.task["noop_share"] == 0.5 and p.task["frequency_alpha"] == 0.5 and p.train["optim"]["lr"] == 1e-3
    assert p.labels["budget"] == p.task["instructions"] * 3
    # A point the task config refuses is skipped with the config's own one-line reason.
    bad = expand_grid(_cfg(instructions=[2], budget=[32], axes={"task.pattern_length": [2, 9]}))
    assert bad[0].skip_reason is None
    assert bad[1].skip_reason is not None and "pattern_length" in bad[1].skip_reason


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"budget": [10], "examples_per_instruction": [2]}, "examples_per_instruction"),
        ({"instructions": [0]}, "instructions"),
        ({"axes": {"noop_share": [0.1]}}, "must start with 'task.', 'train.' or 'mixture.'"),
        ({"axes": {"task.instructions": [1]}}, "first-class grid field"),
    ],
)
def test_bad_grid_configs_name_the_key(grid, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**grid)


def test_trial_processes_are_reused_only_without_a_scheduler():
    assert _cfg().tune.reuses_actors
    data = json.loads(json.dumps(TINY)) | {"tune": {"scheduler": {"metric": "train_loss"}, "reuse_actors": True}}
    assert not validate_config(SweepConfig, data).tune.reuses_actors


def test_tune_writes_tensorboard_files_only_when_asked():
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    from onlyif.sweep.run import _tune_loggers

    assert [type(c) for c in _tune_loggers(_cfg())] == [CSVLoggerCallback, JsonLoggerCallback]
    data = json.loads(json.dumps(TINY)) | {"tune": {"tensorboard": True}}
    assert TBXLoggerCallback in [type(c) for c in _tune_loggers(validate_config(SweepConfig, data))]


def test_shipped_sweep_configs_expand():
    from onlyif.sweep.reproduce_cmd import PRESET

    files = sorted((REPO / "jobs" / "configs").glob("sweep_*.yaml"))
    assert len(files) >= 4, "sweep presets missing under jobs/configs"
    for f in [*files, PRESET]:
        cfg = load_config(SweepConfig, f)
        points = expand_grid(cfg)
        assert any(p.skip_reason is None for p in points), f
    # trials start in the listed order: the reproduction lists its slowest (many-rule) points first
    assert [p.labels["instructions"] for p in expand_grid(load_config(SweepConfig, PRESET))] == [20000, 1000, 100, 10]


def _child_runs(exp: Path):
    from onlyif.mlflow_names import child_runs

    state = json.loads((exp / "state.json").read_text())
    return state, child_runs(state["tracking_uri"], state["parent_run_id"])


def _is_png(path: Path) -> bool:
    import matplotlib.image

    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(path).ndim == 3


def test_tiny_grid_end_to_end(ray_cluster, tmp_path):
    from mlflow import MlflowClient
    from ray.tune import ExperimentAnalysis

    from onlyif.sweep.report_cmd import make_report
    from onlyif.sweep.run import run_sweep

    exp = tmp_path / "exp"
    data = {**json.loads(json.dumps(TINY)), "tune": {"max_concurrent_trials": 2}}  # two at a time, as reproduce
    # 3 trials, the fewest that still give two budgets × two I (a heatmap) and a curve with two I: I=40 at B=32 is
    # skipped (S < 1)
    data["grid"] = {"instructions": [2, 40], "budget": [32, 48]}
    skipped = []
    out = run_sweep(validate_config(SweepConfig, data), exp, echo=skipped.append)
    assert (out.finished, out.total, out.errored) == (3, 3, 0)
    assert skipped == ["skipped I=40,B=32,seed=0: S = budget / I = 32 / 40 < 1"]
    assert [p["id"] for p in json.loads((exp / "grid.json").read_text())["skipped"]] == ["I=40,B=32,seed=0"]

    analysis = ExperimentAnalysis(str(exp / "tune" / "tiny"))
    assert len(analysis.trials) == 3 and all(t.status == "TERMINATED" for t in analysis.trials)
    # Tune's JSON and CSV results per trial, no TensorBoard files (tune.tensorboard is off)
    assert len(list((exp / "tune" / "tiny").glob("*/result.json"))) == 3
    assert len(list((exp / "tune" / "tiny").glob("*/progress.csv"))) == 3
    assert not list((exp / "tune").rglob("events.out.tfevents*"))
    assert all(
        t.last_result["final"] == 1 and "test_unseen/exact_match_applied" in t.last_result for t in analysis.trials
    )

    state, runs = _child_runs(exp)
    client = MlflowClient(state["tracking_uri"])
    experiment = client.get_experiment(state["experiment_id"])
    all_runs = client.search_runs([experiment.experiment_id])
    assert len(all_runs) == 4 and len(runs) == 3  # 1 parent + 3 children
    assert {r.data.tags["onlyif.point_id"] for r in runs} == {"I=2,B=32,seed=0", "I=2,B=48,seed=0", "I=40,B=48,seed=0"}
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.params["task.alphabet_size"] == "4" and r.data.params["train.model.n_embd"] == "16"
        assert r.data.params["grid.instructions"] in ("2", "40")
        assert {"train_loss", "test_seen/exact_match", "test_unseen/exact_match_applied"} <= set(r.data.metrics)
        assert [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")] == [1]
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["dataset_manifest.json"]
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED"
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "grid.json", "report"} <= parent_files

    report = json.loads((exp / "report" / "report.json").read_text())
    assert report["trials"] == 3 and len(report["curves"]) == 2  # one curve per budget
    assert (exp / "report" / "report.md").read_text().startswith("# Sweep tiny")
    pngs = sorted((exp / "report" / "plots").glob("*.png"))
    assert {p.name for p in pngs} >= {"accuracy_vs_instructions.png", "heatmap_budget_instructions.png"}
    assert all(_is_png(p) for p in pngs)

    # The same report can be rebuilt from MLflow alone, with the same numbers.
    again = make_report(exp, source="mlflow", out=tmp_path / "from_mlflow", log_to_mlflow=False)
    assert [c["means"] for c in again["curves"]] == [c["means"] for c in report["curves"]]


def test_asha_stops_a_worse_trial_early(ray_cluster, tmp_path):
    from onlyif.sweep.run import run_sweep

    data = json.loads(json.dumps(TINY)) | {
        "name": "asha",
        "grid": {"instructions": [4], "budget": [48], "axes": {"train.optim.lr": [0.01, 1.0e-7, 0.03]}},
        "tune": {"scheduler": {"metric": "train_loss", "mode": "min", "grace_period": 1, "reduction_factor": 2}},
    }
    data["train"] |= {"epochs": 2, "eval": {"max_examples": 16, "every_epochs": 0}}
    exp = tmp_path / "exp"
    out = run_sweep(validate_config(SweepConfig, data), exp, echo=lambda *_: None)
    # Trials run one at a time: the second (lr 1e-7) is worse than the first at the first rung and is stopped; the
    # third runs after it.
    assert out.stopped >= 1 and out.finished >= 1 and (out.finished + out.stopped, out.errored) == (3, 0), out
    # The stopped trial's Ray Train workers are freed (Ray Train's cleaner, through the dashboard's State API),
    # not held until this driver ends.
    assert free_cpus_once_idle() == TEST_CLUSTER_CPUS, ray_cluster.available_resources()
    _, runs = _child_runs(exp)
    by_lr = {r.data.params["train.optim.lr"]: r for r in runs}
    assert by_lr["0.01"].info.status == "FINISHED" and "test_unseen/exact_match_applied" in by_lr["0.01"].data.metrics
    stopped = by_lr["1e-07"]
    assert stopped.info.status == "KILLED" and stopped.data.tags["onlyif.stopped_early"] == "true"
    assert "test_unseen/exact_match_applied" not in stopped.data.metrics
    assert json.loads((exp / "report" / "report.json").read_text())["trials"] == out.finished


def _wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"sweep ended before {what}:\n{proc.stdout.read()}"
    assert ready(), f"no {what} within {timeout} s"


def _child_count(exp: Path, status: str | None = None) -> int:
    """The sweep's MLflow child runs (with ``status`` only, if given); 0 while the driver is still creating them."""
    try:
        return sum(status in (None, r.info.status) for r in _child_runs(exp)[1])
    except Exception:  # the subprocess is still creating the experiment or its store, or the server is down
        return 0


def test_ctrl_c_as_a_sweep_starts_leaves_out_gone_or_resumable(ray_cluster, tmp_path):
    """Ctrl-C once a new sweep has written its grid (its MLflow side is then being set up in a thread while Ray and
    Tune start): exit 130; before Tune runs, ``--out`` is removed, so the same command can be rerun; once Tune runs,
    Tune stops the trials and ``--out`` holds an experiment ``--resume`` continues. Never a folder that both a rerun
    (not empty) and ``--resume`` (not an experiment) refuse — what the first version of the thread left."""
    data = json.loads(json.dumps(TINY)) | {"name": "ctrl-c", "grid": {"instructions": [2], "budget": [32]}}
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(data))
    exp = tmp_path / "exp"
    env = dict(os.environ, RAY_ADDRESS=ray_cluster.get_runtime_context().gcs_address)
    proc = subprocess.Popen(
        [sys.executable, "-m", "onlyif.cli", "sweep", "--config", str(config), "--out", str(exp)],
        **{"env": env, "cwd": REPO, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True},
    )
    _wait_for(proc, lambda: (exp / "grid.json").exists(), "the sweep's grid.json", timeout=120)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    # 130, or 0 if the interrupt was lost (CPython drops a KeyboardInterrupt raised in a callback it runs itself —
    # seen once in importlib's module-lock callback, "Exception ignored in …")
    assert proc.returncode in (0, 130), output[-2000:]
    if not exp.exists():
        assert proc.returncode == 130, output[-2000:]
        return
    assert (exp / "state.json").is_file() and (exp / "tune").is_dir(), (sorted(p.name for p in exp.iterdir()), output)
    if "sweep interrupted:" in output:  # Tune stopped the trial (the interrupt may also land after it, in the report)
        assert f"continue with: onlyif sweep --resume {exp}" in output, output[-2000:]
        assert "Tuner.restore" not in output, output[-2000:]  # Tune's own hint is not ours to give


@pytest.mark.slow
def test_interrupted_killed_and_mlflow_lost_sweep_resumes_without_duplicate_or_lost_metrics(
    ray_cluster, tmp_path, monkeypatch
):
    """A 3-point sweep logging to a real MLflow server, its driver in its own process (joined to the session's Ray,
    as `ray job submit` runs it), stopped three ways and resumed each time:

    1. the MLflow server SIGKILLed as the first trial's child run appears: after MLflow's retries one error line
       naming ``--resume``, exit 1;
    2. the server back, ``--resume`` interrupted (SIGINT) after the first trial: the one-line "continue with
       --resume" and the live progress lines;
    3. ``--resume`` SIGKILLed once the second trial finished and the third has its MLflow run (no handler runs; a
       child run is left RUNNING);
    4. ``--resume`` here: only the unfinished trial trains (a finished one Tune had not recorded reports its run).
       MLflow ends with one FINISHED child run per grid point, each holding every metric Tune recorded for its
       trial, no step logged twice."""
    from mlflow import MlflowClient

    from onlyif.mlflow_names import to_mlflow
    from onlyif.sweep.mlflow_log import numeric_metrics
    from onlyif.sweep.run import run_sweep
    from tests._mlflow_server import mlflow_server
    from tests._ports import free_port

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = json.loads(json.dumps(TINY)) | {"name": "resume", "grid": {"instructions": [2, 4, 8], "budget": [32]}}
    data["mlflow"] = {"tracking_uri": uri}
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(data))
    exp = tmp_path / "exp"
    env = dict(os.environ, RAY_ADDRESS=ray_cluster.get_runtime_context().gcs_address)
    env |= {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # default: ~4 min of retries
    popen = {"env": env, "cwd": REPO, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    resume = [sys.executable, "-m", "onlyif.cli", "sweep", "--resume", str(exp)]
    server = mlflow_server(tmp_path / "mlflow", port)
    try:
        # 1. the tracking server SIGKILLed as the first trial's child run appears
        proc = subprocess.Popen(
            [sys.executable, "-m", "onlyif.cli", "sweep", "--config", str(config), "--out", str(exp)], **popen
        )
        _wait_for(proc, lambda: _child_count(exp) == 1, "the first trial's MLflow run")
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        output, _ = proc.communicate(timeout=600)  # a bound: the trial trains its epoch first
        lines = [line for line in output.splitlines() if line.startswith("onlyif sweep: error:")]
        assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in output, output[-3000:]
        assert lines[0].startswith("onlyif sweep: error: MLflow: API request to ") and str(exp) in lines[0], lines
        assert lines[0].endswith(f"continue with: onlyif sweep --resume {exp}"), lines

        # 2. the server back on the same store; `--resume` interrupted (Ctrl-C) after the first trial finished
        server = mlflow_server(tmp_path / "mlflow", port)
        proc = subprocess.Popen(resume, **popen)
        _wait_for(proc, lambda: _child_count(exp, "FINISHED") >= 1, "the first trial finished")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, output
        assert _child_count(exp, "FINISHED") == 1, output
        assert re.search(
            rf"sweep interrupted: \d of 3 trials .*; continue with: onlyif sweep --resume {re.escape(str(exp))}",
            output,
        )
        assert "Tuner.restore" not in output
        # Live progress, as plain lines off a terminal: each trial's start and end with its point, epoch and loss.
        assert "sweep [0/3 done, 1 running" in output and " start I=" in output
        assert re.search(
            r"sweep \[1/3 done, \d running, \d+ s\] done  I=\d,B=32,seed=0  epoch 1/1  loss \d", output
        ), output

        # 3. `--resume`, its driver SIGKILLed once the second trial finished and the third has its MLflow run: no
        # handler runs, nothing is closed (Ray ends the dead driver's trial actors)
        proc = subprocess.Popen(resume, start_new_session=True, **popen)
        _wait_for(
            proc, lambda: _child_count(exp, "FINISHED") >= 2 and _child_count(exp) == 3, "the third trial started"
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert _child_count(exp, "FINISHED") == 2
        state, runs = _child_runs(exp)
        client = MlflowClient(uri)
        assert [r.info.status for r in runs].count("RUNNING") >= 1  # what the kill left behind

        # 4. `--resume` again (in this process): the unfinished trial only. Tune may not have saved the second
        # trial's end before the kill; rerun, that trial reports its finished run again without training again.
        trained = {p: p.read_bytes() for p in (exp / "trials").glob("*/run.json") if b'"final"' in p.read_bytes()}
        assert len(trained) == 2, trained
        out = run_sweep(None, exp, resume=True, echo=lambda *_: None)
        assert (out.finished, out.total, out.errored) == (3, 3, 0)
        assert all(p.read_bytes() == before for p, before in trained.items())  # run.json is rewritten by a run
        _, runs = _child_runs(exp)
        points = sorted(r.data.tags["onlyif.point_id"] for r in runs)
        assert points == ["I=2,B=32,seed=0", "I=4,B=32,seed=0", "I=8,B=32,seed=0"]  # one child run per grid point
        assert len({r.data.tags["onlyif.trial_id"] for r in runs}) == 3
        assert [r.info.status for r in runs] == ["FINISHED"] * 3, [
            (r.data.tags["onlyif.point_id"], r.info.status) for r in runs
        ]
        recorded: dict[str, set[str]] = {}  # what Tune recorded, by trial (a restarted trial may have 2 folders)
        for result_file in (exp / "tune" / "resume").glob("*/result.json"):
            for line in result_file.read_text().splitlines():
                result = json.loads(line)
                recorded.setdefault(result["trial_id"], set()).update(numeric_metrics(result))
        by_trial = {r.data.tags["onlyif.trial_id"]: r for r in runs}
        assert set(recorded) == set(by_trial)
        for trial_id, run in by_trial.items():
            assert {to_mlflow(k) for k in recorded[trial_id]} <= set(run.data.metrics), run.info.run_name  # all there
            for key in ("train_loss", "test_unseen/exact_match_applied"):  # and no step logged twice
                assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1], (
                    run.info.run_name,
                    key,
                )
        assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"
        assert json.loads((exp / "report" / "report.json").read_text())["trials"] == 3

        # the recommender on these real trials (3 points, one factor: log I): an explored I and a loadable config
        from onlyif.cli import main
        from onlyif.tasks.config import TaskConfig

        assert main(["recommend", str(exp)]) == 0
        result = json.loads((exp / "recommend" / "recommend.json").read_text())
        assert [f["name"] for f in result["factors"]] == ["log10 I"]
        assert result["metric"] == "test_unseen/exact_match_applied" and result["trials"] == 3
        assert 2 <= result["recommendation"]["labels"]["instructions"] <= 8
        task = load_config(TaskConfig, exp / "recommend" / "generate.yaml")
        assert (task.instructions, task.budget) == (result["recommendation"]["labels"]["instructions"], 32)
    finally:
        if proc.poll() is None:
            proc.kill()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_cli_dry_run_lists_points_and_refuses_bad_combinations(tmp_path, capsys):
    from onlyif.cli import main

    config = tmp_path / "sweep.yaml"
    config.write_text(
        yaml.safe_dump(json.loads(json.dumps(TINY)) | {"grid": {"instructions": [2, 64], "budget": [32]}})
    )
    assert main(["sweep", "--config", str(config), "--dry-run", "--set", "grid.seeds=[0, 1]"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["run  I=2,B=32,seed=0", "run  I=2,B=32,seed=1"]
    assert lines[2] == "skip I=64,B=32,seed=0: S = budget / I = 32 / 64 < 1"
    assert main(["sweep", "--config", str(config)]) == 1
    assert "--out EXP_DIR is required" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(tmp_path), "--config", str(config)]) == 1
    assert main(["sweep", "--resume", str(tmp_path)]) == 1
    assert "not a sweep experiment folder" in capsys.readouterr().err
    assert main(["sweep", "--config", str(config), "--set", "grid.budget=[0]", "--dry-run"]) == 2
