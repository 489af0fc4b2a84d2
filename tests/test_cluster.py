"""The cluster path, on real processes: `onlyif cluster up` (a Ray head, a second Ray node or Ray's autoscaler, an
MLflow server and a local S3 server, all bound to 127.0.0.1, Ray with token auth), `ray job submit` of the smoke
sweep, results read back over HTTP and from object storage (Tune's experiment and the trials' runs on S3, the report
and `--resume` reading them back), a worker node lost mid-training (the run resumes on the head from its last
checkpoint), then `onlyif cluster down`. The jobs reach the cluster through `ray job submit` only; the test
process's own Ray (the session's one-node cluster) builds the reference mixture."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from onlyif.local_cluster import (
    START_TIMEOUT_S,
    ClusterSpec,
    alive_nodes,
    cluster_processes,
    processes_in,
    status,
)
from tests._ports import free_port, free_ports

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _cluster(tmp_path: Path, *args: str):
    """`onlyif cluster up` with free ports; yields (spec, client env); always `onlyif cluster down`."""
    port, dash, mlf, agent = free_ports(4)
    state = tmp_path / "cluster"
    spec = ClusterSpec(state, port=port, dashboard_port=dash, mlflow_port=mlf, agent_port=agent)
    flags = ["--dir", str(state), "--port", str(port), "--dashboard-port", str(dash), "--mlflow-port", str(mlf)]
    flags += ["--agent-port", str(agent)]
    try:
        up = subprocess.run(
            [BIN / "onlyif", "cluster", "up", *flags, *args], capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        env = dict(os.environ)
        for line in (state / "env.sh").read_text().splitlines():
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = value
        yield spec, env
    finally:
        subprocess.run([BIN / "onlyif", "cluster", "down", *flags], capture_output=True, timeout=120)
        assert not cluster_processes(spec), "processes of the cluster survived `onlyif cluster down`"
        # and by what PID files cannot hide: nothing listens on the cluster's ports any more
        listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        ports = {port, dash, mlf, agent, *(int(a) for f, a in zip(args, args[1:], strict=False) if f == "--s3-port")}
        assert not listening & ports, (
            f"ports {sorted(listening & ports)} still listened on after `onlyif cluster down`"
        )


def _submit(
    env: dict, working_dir: Path | None, *entrypoint: str, timeout: float = 600, runtime_env: dict | None = None
) -> str:
    shipped = ["--working-dir", str(working_dir)] if working_dir else []
    shipped += ["--runtime-env-json", json.dumps(runtime_env)] if runtime_env else []
    job = subprocess.run(
        [BIN / "ray", "job", "submit", *shipped, "--", *entrypoint],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
    return job.stdout


def test_cluster_yaml_passes_rays_schema_and_our_rules():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` does first: Ray's defaults, then its JSON schema
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0, "the head must not advertise GPUs: no training lands there"
    gpu_types = [name for name, t in types.items() if name != config["head_node_type"]]
    assert gpu_types and all(types[n]["resources"].get("GPU", 0) >= 1 for n in gpu_types)
    assert all(types[n]["min_workers"] == 0 for n in gpu_types), "GPU workers scale from zero"
    assert config["idle_timeout_minutes"] > 0
    setup = " ".join(config.get("setup_commands", []))
    assert "scripts/setup.sh" in setup
    # the dashboard / job server is reached through `ray dashboard cluster.yaml`, never opened to the internet
    assert "0.0.0.0" not in " ".join(config.get("head_start_ray_commands", []))


def test_cluster_down_finds_its_services_after_the_system_clock_moved(tmp_path, monkeypatch):
    """A PID file identifies its process by when it started; a step of the system clock (NTP, a VM's time sync)
    moves psutil's create time on Linux (boot time + start ticks). `onlyif cluster down` once left the MLflow and S3
    servers running, unrecognised, most likely after such a step. The clock moves here as psutil sees it: +1 s."""
    import onlyif.local_cluster as lc

    spec = ClusterSpec(tmp_path / "cluster")
    pid = lc._spawn(spec, "mlflow", [sys.executable, "-c", "import time; time.sleep(120)"], dict(os.environ))
    try:
        if sys.platform.startswith("linux"):
            boot = psutil.boot_time()
            monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: boot + 1.0)
        assert cluster_processes(spec) == [pid]
        assert lc.down(spec) == 1
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


@pytest.mark.slow
def test_job_submit_smoke_sweep_on_two_nodes_logs_to_mlflow_and_s3(ray_cluster, tmp_path, monkeypatch):
    import boto3
    from mlflow import MlflowClient
    from ray.tune import ExperimentAnalysis

    from onlyif.cli import main
    from onlyif.sweep.report_cmd import make_report

    # the reference mixture: built by the session's Ray, one node
    mix_cfg = _mixture_config(tmp_path)
    assert main(["mix", "--config", str(mix_cfg), "--out", str(tmp_path / "mix_local"), "--no-progress"]) == 0

    s3_port = free_port()
    # 2 logical CPUs a node: one for a training worker, one for Ray Data beside it
    flags = ("--head-cpus", "2", "--workers", "1", "--worker-cpus", "2", "--s3-port", str(s3_port))
    with _cluster(tmp_path, *flags) as (spec, env):
        assert alive_nodes(spec) == 2
        out = tmp_path / "runs" / "smoke"
        sweep = ["jobs/sweep.py", "--config", "jobs/configs/sweep_main.yaml", "--smoke-test", "--out", str(out)]
        # each trial trains on 2 workers, one per node (gloo across Ray nodes); the user's --set wins over the smoke
        sweep += ["--set", "train.scaling={num_workers: 2, threads_per_worker: 1, placement_strategy: SPREAD}"]
        sweep += ["--set", "grid.instructions=[4]"]  # one trial
        sweep += ["--set", "tune.storage_path=s3://onlyif/tune"]
        log = _submit(env, REPO, "python", *sweep)
        assert "joined the Ray cluster" in log and "2 node(s), 4 CPU" in log
        assert f"MLflow: {spec.mlflow_uri}" in log
        mlflow_pid = status(spec)["mlflow"]
        assert mlflow_pid, "the MLflow server is not running"
        server = psutil.Process(mlflow_pid)
        assert not [p for p in server.children(recursive=True) if "mlflow.server.jobs" in " ".join(p.cmdline())]

        # the trial's two training workers ran on different Ray nodes
        actors = subprocess.run(
            [BIN / "ray", "list", "actors", "--filter", "class_name=RayTrainWorker", "--detail", "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        groups: dict[str, set[str]] = {}
        for actor in json.loads(actors.stdout):
            groups.setdefault(actor["placement_group_id"], set()).add(actor["node_id"])
        assert len(groups) == 1 and all(len(nodes) == 2 for nodes in groups.values()), groups

        # MLflow over HTTP: parent run with the report, two child runs with metrics
        state = json.loads((out / "state.json").read_text())
        assert state["tracking_uri"] == spec.mlflow_uri
        client = MlflowClient(tracking_uri=spec.mlflow_uri)
        parent = client.get_run(state["parent_run_id"])
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
        assert len(children) == 1
        assert all("train_loss" in c.data.metrics for c in children)
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
        assert any(p.endswith("report.md") for p in artifacts), artifacts

        # object storage holds real data: MLflow's artifacts (through the server) and Tune's experiment
        for key, value in env.items():
            if key.startswith("AWS_"):
                monkeypatch.setenv(key, value)
        s3 = boto3.client("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="onlyif").get("Contents", [])]
        report_key = next(k for k in keys if k.startswith("mlflow/") and k.endswith("report/report.md"))
        body = s3.get_object(Bucket="onlyif", Key=report_key)["Body"].read().decode()
        assert body == (out / "report" / "report.md").read_text()
        assert any(k.startswith("tune/sweep_main/") for k in keys)
        assert not (out / "tune").exists() and not (out / "trials").exists()  # nothing of Tune's or the trials' here
        analysis = ExperimentAnalysis("s3://onlyif/tune/sweep_main")  # the restore point, read back from S3
        assert len(analysis.trials) == 1
        assert all(t.status == "TERMINATED" for t in analysis.trials)
        # the trial's training run (Ray Train's checkpoints and our files) lives beside Tune's experiment
        (trial,) = {k.split("/")[3] for k in keys if k.startswith("tune/sweep_main/trials/") and not k.endswith("/")}
        run = [k.removeprefix(f"tune/sweep_main/trials/{trial}/") for k in keys if f"/trials/{trial}/" in k]
        assert any(k.startswith("ray_train/checkpoint_") and k.endswith("/train_state.json") for k in run), run
        assert {"run.json", "metrics.jsonl", "config.yaml", "model/config.json", "eval/test_unseen.json"} <= set(run)
        assert make_report(out, log_to_mlflow=False)["trials"] == 1  # `onlyif report` reads Tune's experiment there
        metrics_key = f"tune/sweep_main/trials/{trial}/metrics.jsonl"
        metrics = s3.get_object(Bucket="onlyif", Key=metrics_key)["Body"].read()
        # --resume of the finished sweep restores Tune from the URI and trains nothing again; the job's own worker
        # setup hook (Ray merges no two) is kept and ours left out
        hook = {"worker_process_setup_hook": "gc.collect"}
        _submit(env, REPO, "python", "jobs/sweep.py", "--resume", str(out), runtime_env=hook)
        assert s3.get_object(Bucket="onlyif", Key=metrics_key)["Body"].read() == metrics

        # the same mixture built on the two nodes (its record tasks on both) has the same bytes
        _submit(env, REPO, "python", "jobs/mix.py", "--config", str(mix_cfg), "--out", str(tmp_path / "mix_2"))
        tasks = subprocess.run(
            [BIN / "ray", "list", "tasks", "--detail", "--format", "json", "--limit", "10000"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        record_nodes = {t["node_id"] for t in json.loads(tasks.stdout) if "process_batch" in t["name"]}
        assert len(record_nodes) == 2, record_nodes
        for name in ("train.jsonl", "duplicates.jsonl", "decontaminated.jsonl", "quarantine.jsonl"):
            assert (tmp_path / "mix_2" / name).read_bytes() == (tmp_path / "mix_local" / name).read_bytes(), name
        two, one = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("mix_2", "mix_local"))
        assert two["output"] == one["output"] and two["totals"] == one["totals"]

        _node_lost_mid_training(spec, env, tmp_path)


def _mixture_config(tmp_path: Path) -> Path:
    """Five made-up sources with planted problems: exact + near dedup, decontamination, k-center on one."""
    from tests._mix_fixtures import base_config, write_sources

    fx = write_sources(tmp_path / "sources")
    for s in fx["sources"]:
        s["count"] = {"code": 20, "general": 15, "reasoning": 10, "qa": 10, "chat": 5}[s["name"]]
    fx["sources"][0]["selection"] = "kcenter"
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(base_config(fx["sources"], 60, num_blocks=4, write_jsonl=True)))
    return path


def _node_pids(spec: ClusterSpec, name: str) -> list[int]:
    """The processes of one Ray node of the cluster: its ``ray start`` process group and whatever runs in its own
    temp dir (raylet, its workers)."""
    group = int((spec.state_dir / "pids" / f"{name}.pid").read_text().split()[0])
    return processes_in({group}, f"{spec.ray_dir}-{name}")


def _train_worker_nodes(spec: ClusterSpec) -> list[str]:
    """The node of each alive Ray Train worker, from the job server's REST API (what `ray list actors` calls)."""
    from onlyif.local_cluster import _get

    query = "limit=100&detail=true&filter_keys=class_name&filter_predicates=%3D&filter_values=RayTrainWorker"
    query += "&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE"
    body = _get(f"{spec.job_address}/api/v0/actors?{query}", spec.token, timeout=10)
    try:
        return [a["node_id"] for a in json.loads(body)["data"]["result"]["result"]] if body else []
    except (KeyError, ValueError):
        return []


def _node_lost_mid_training(spec: ClusterSpec, env: dict, tmp_path: Path) -> None:
    """A job trains on both nodes (2 Ray Train workers, SPREAD, half a CPU each); once its first epoch is
    checkpointed the worker node is SIGKILLed (``ray start``, raylet and its workers), as a lost spot node. Ray
    Train restarts the worker group on the head from that checkpoint: every epoch and step is reported once, to
    ``metrics.jsonl`` and to MLflow, and the run ends at the step count of an undisturbed one."""
    from mlflow import MlflowClient

    from onlyif.config import validate_config
    from onlyif.data.generate import generate_dataset
    from onlyif.tasks.config import TaskConfig

    task = {"alphabet_size": 4, "input_length": 6, "pattern_length": 2, "instructions": 4, "budget": 256}
    task |= {"test_seen": 16, "test_unseen": 16}
    data, run = tmp_path / "rules", tmp_path / "run_node_lost"
    generate_dataset(validate_config(TaskConfig, task), data, progress=False)  # this small: in this process
    epochs = 4
    sets = [
        "model={n_layer: 1, n_embd: 16, n_head: 2, n_positions: 32}",
        f"epochs={epochs}",
        "batch_size=16",
        "scaling={num_workers: 2, threads_per_worker: 1, placement_strategy: SPREAD, "
        "resources_per_worker: {CPU: 0.5}}",
        "eval={max_examples: 8}",
        f"mlflow_tracking_uri={spec.mlflow_uri}",
    ]
    train = ["python", "-m", "onlyif.cli", "train", "--data", str(data), "--out", str(run)]
    for kv in sets:
        train += ["--set", kv]
    job = subprocess.Popen(
        [BIN / "ray", "job", "submit", "--", *train],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )

    def epoch_lines() -> list[dict]:
        path = run / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []
        return [r for r in map(json.loads, filter(None, lines)) if r.get("kind") == "epoch"]

    deadline = time.monotonic() + 300
    nodes: list[str] = []
    while len(set(nodes)) < 2 and job.poll() is None and time.monotonic() < deadline:
        nodes = _train_worker_nodes(spec)
        time.sleep(0.5)
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes  # one training worker on each node
    while not epoch_lines() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.poll() is None and epoch_lines(), "the training job ended, or reached no epoch, before the kill"
    victims = _node_pids(spec, "worker-1")
    for pid in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    done_at_kill = len(epoch_lines())
    log, _ = job.communicate(timeout=600)
    assert job.returncode == 0 and "succeeded" in log, log[-4000:]
    assert victims and done_at_kill < epochs, (victims, done_at_kill)
    assert alive_nodes(spec) == 1  # the run finished on the head alone

    lines = epoch_lines()
    per_epoch = lines[0]["step"]  # the schedule is fixed by the data and the config: an undisturbed run's steps
    assert [(r["epoch"], r["step"]) for r in lines] == [(e, e * per_epoch) for e in range(1, epochs + 1)]
    run_id = json.loads((run / "mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(spec.mlflow_uri)
    history = client.get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == [r["step"] for r in lines]  # each step once, none missing
    assert client.get_run(run_id).info.status == "FINISHED"


SCALE_JOB = """
import ray, time
ray.init()
from onlyif.train.checks import check_resources
from onlyif.train.config import TrainConfig
# 2 CPUs of workers: more than the 1-CPU head has; the autoscaler (v1: no node types published) may add them
check_resources(TrainConfig.model_validate({"scaling": {"num_workers": 2}}))
print("CHECK passed")
@ray.remote(num_cpus=1, resources={"worker_node": 1})
def where():  # the nodes are counted while the task runs: a busy node is not idle, the autoscaler keeps it
    return ray.get_runtime_context().get_node_id(), sum(n["Alive"] for n in ray.nodes())
node, alive = ray.get(where.remote())
print("ON", node, "HEAD", ray.get_runtime_context().get_node_id(), "ALIVE", alive)
"""


@pytest.mark.slow
def test_autoscaler_brings_a_worker_node_up_and_takes_it_down_when_idle(tmp_path):
    with _cluster(tmp_path, "--head-cpus", "1", "--autoscale", "1", "--idle-timeout", "10") as (spec, env):
        assert alive_nodes(spec) == 1  # the head only
        pids = status(spec)
        assert set(pids) == {"head", "mlflow"} and all(pids.values())
        # `ray start` gives the head's dashboard (the job server) as long to start as `up` waits for it (Ray: 60 s)
        head_env = psutil.Process(pids["head"]).environ()
        assert head_env["RAY_DASHBOARD_STARTUP_TIMEOUT_S"] == f"{START_TIMEOUT_S:.0f}" and head_env["RAY_FAKE_CLUSTER"]
        again = subprocess.run(  # idempotent: a second `up` leaves the running services alone
            [BIN / "onlyif", "cluster", "up", "--dir", str(spec.state_dir), "--port", str(spec.port)]
            + ["--dashboard-port", str(spec.dashboard_port), "--mlflow-port", str(spec.mlflow_port)]
            + ["--agent-port", str(spec.agent_port), "--head-cpus", "1", "--autoscale", "1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0 and status(spec) == pids, again.stderr
        # no working_dir: the autoscaler's nodes share the head's temp dir (see onlyif.local_cluster)
        log = _submit(env, None, "python", "-c", SCALE_JOB, timeout=300)
        assert "CHECK passed" in log and "waiting for its autoscaler" in log
        words = log[log.index("ON ") :].split()
        assert words[1] != words[3], "the task asking for a worker node ran on the head"
        assert words[5] == "2"
        # taken down for being idle, and for nothing else (Ray's node updaters once failed each new node at once);
        # the autoscaler logs the removal just after the node is gone (0.2 s later once, and the log was read first)
        idle_removal = "Removing 1 nodes of type cpu_worker (idle)"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            alive_nodes(spec) != 1 or not any(idle_removal in e for e in _autoscaler_events(spec))
        ):
            time.sleep(2)
        assert alive_nodes(spec) == 1, "the idle worker node was not taken down"
        events = _autoscaler_events(spec)
        assert any(idle_removal in e for e in events), events
        assert not any("launch failed" in e or "lost contact" in e for e in events), events


def _autoscaler_events(spec: ClusterSpec) -> list[str]:
    """The autoscaler's event lines in its log of the head's current Ray session."""
    log = (spec.ray_dir / "session_latest" / "logs" / "monitor.log").read_text()
    return [line for line in log.splitlines() if ":event_summary:" in line]
