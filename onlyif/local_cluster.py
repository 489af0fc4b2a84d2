"""A real Ray cluster and MLflow tracking server on this machine, for ``ray job submit`` and the cluster tests.

``up`` starts, each as its own process group with a PID file under the state folder (default ``.cluster``):

- a Ray head (``ray start --head --block``): GCS on ``port``, the dashboard and job server bound to 127.0.0.1,
  token authentication (``RAY_AUTH_MODE=token``, a fresh token in ``STATE/auth_token``, mode 0600) unless
  ``auth="disabled"``;
- ``workers`` more Ray nodes joined to it (``ray start --address``), each with ``worker_cpus`` CPUs, a
  ``worker_node`` resource and its own temp dir — several Ray nodes on one machine, as Ray's own multi-node tests
  run;
- or, with ``autoscale=N``, no fixed workers but Ray's autoscaler with its fake multi-node provider: it starts up
  to N such worker nodes when tasks ask for more than the head has and stops them after ``idle_timeout_s``;
- with ``s3_port``, a local S3-compatible server (moto in server mode, objects in its memory) with a bucket
  ``onlyif``;
- an MLflow tracking server (``mlflow server``, sqlite backend, artifacts under ``STATE/mlflow/artifacts``, on the
  local S3 server, or at any ``s3://`` destination; clients upload through the server), bound to 127.0.0.1.

``STATE/env.sh`` exports what a client needs (``RAY_ADDRESS`` of the job server, the auth variables,
``MLFLOW_TRACKING_URI``, and with the S3 server ``AWS_ENDPOINT_URL_S3`` and its credentials). ``up`` is idempotent
(a running service is left alone). ``down`` stops every process whose command line names the cluster's Ray
directory (``/tmp/onlyif-ray-<hash of the state folder>``) and the rest of each recorded process group, SIGTERM
first and SIGKILL after a grace period (5 s), and removes the PID files. Also ``onlyif cluster up|down|status``.

One module: every service is started, recorded and stopped by the same PID-file and signal handling below; split
the services out if another one is added.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from onlyif.errors import OnlyIfError
from onlyif.net import connect_error
from onlyif.ray_utils import LOCAL_RAY_ENV

HOST = "127.0.0.1"
S3_BUCKET = "onlyif"
"""The bucket ``up`` creates on the local S3 server."""
S3_REGION = "us-east-1"
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
"""The MLflow server's defaults here (the caller's environment wins): no job execution — MLflow 3's GenAI job
runner (a job runner and its huey consumers, eight processes, ~13 CPU-s at start, polling after), which onlyif
never uses."""
WORKER_RESOURCE = "worker_node"
"""Custom resource every worker node advertises (one per node), so that work can be pinned off the head."""
START_TIMEOUT_S = 180.0
"""How long ``up`` waits for each service to answer (and the Ray head for its dashboard, Ray's default 60 s). A
service whose process exits fails at once; a slow one is waited for: on a loaded 2-core VM the head's dashboard,
our job server, did not start within 60 s, nor answer within 90 (1 Dec 2026)."""


@dataclass(frozen=True)
class ClusterSpec:
    """Where and what to start; ports must be free on 127.0.0.1."""

    state_dir: Path
    port: int = 6379
    dashboard_port: int = 8265
    mlflow_port: int = 5000
    agent_port: int = 52365
    """The head's dashboard agent (which runs submitted jobs); worker nodes take free ports."""
    head_cpus: int = 2
    workers: int = 0
    worker_cpus: int = 1
    autoscale: int = 0
    idle_timeout_s: float = 10.0
    auth: str = "token"
    artifacts: str | None = None
    """MLflow artifact destination (default ``STATE/mlflow/artifacts``, or ``s3://onlyif/mlflow`` on the local S3
    server; any ``s3://bucket/prefix`` the server's AWS credentials reach works too)."""
    s3_port: int = 0
    """Also start a local S3-compatible server (moto, in memory) on this port; 0 = none."""

    @property
    def ray_dir(self) -> Path:
        """Ray's temp dir: short and under /tmp (Ray's socket paths in it must fit 107 bytes), one per state
        folder."""
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"onlyif-ray-{digest}"

    @property
    def token_path(self) -> Path:
        return self.state_dir / "auth_token"

    @property
    def token(self) -> str | None:
        return self.token_path.read_text().strip() if self.auth == "token" else None

    @property
    def job_address(self) -> str:
        return f"http://{HOST}:{self.dashboard_port}"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def s3_endpoint(self) -> str | None:
        return f"http://{HOST}:{self.s3_port}" if self.s3_port else None


def _bin(name: str) -> str:
    """An executable of this Python environment (``ray``, ``mlflow``), so that the cluster runs our packages."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def client_env(spec: ClusterSpec) -> dict[str, str]:
    """Variables a client of the cluster needs: the job server, the auth token and the MLflow server."""
    env = {"RAY_ADDRESS": spec.job_address, "MLFLOW_TRACKING_URI": spec.mlflow_uri}
    if spec.s3_endpoint:  # boto3, pyarrow and MLflow read these; moto accepts any credentials
        env |= {"AWS_ENDPOINT_URL_S3": spec.s3_endpoint, "MLFLOW_S3_ENDPOINT_URL": spec.s3_endpoint}
        env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": S3_REGION}
    if spec.auth == "token":
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(spec.token_path.resolve())}
    else:
        env |= {"RAY_AUTH_MODE": "disabled"}
    return env


def _server_env(spec: ClusterSpec) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", LOCAL_RAY_ENV):  # a cluster to join, which may grow
        env.pop(key, None)
    # job entrypoints (`python jobs/...`) and the autoscaler's nodes run this environment's Python
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env |= {k: v for k, v in client_env(spec).items() if k.startswith("RAY_AUTH")}
    env["MLFLOW_TRACKING_URI"] = spec.mlflow_uri  # jobs submitted to this cluster log to its MLflow server
    env |= {k: v for k, v in client_env(spec).items() if k.startswith(("AWS_", "MLFLOW_S3"))}
    return env


def _pid_file(spec: ClusterSpec, name: str) -> Path:
    return spec.state_dir / "pids" / f"{name}.pid"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _started(pid: int) -> str:
    """When process ``pid`` started, as its PID file records it. On Linux: clock ticks since boot
    (``/proc/PID/stat``), which no step of the system clock moves; psutil's create time there is the boot time as
    the clock now puts it plus those ticks, so a clock step (NTP, a VM's time sync) between `up` and `down` would
    hide the running services from `down`. Elsewhere psutil's create time, fixed when the process starts."""
    import psutil

    if sys.platform.startswith("linux"):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after the command's name
        return "ticks:" + fields[19]  # field 22, starttime
    return f"{psutil.Process(pid).create_time():.2f}"


def _recorded_pid(f: Path) -> int | None:
    """The PID a PID file records, if that process still runs (the file also holds its start, so a PID the system
    has reused for another program does not count; files of older versions hold psutil's create time)."""
    import psutil

    pid, _, started = f.read_text().strip().partition(" ")
    try:
        proc = psutil.Process(int(pid))
        same = started in (_started(proc.pid), f"{proc.create_time():.2f}")
        return proc.pid if same and _alive(proc.pid) else None
    except (ValueError, OSError, psutil.NoSuchProcess):
        return None


def _running(spec: ClusterSpec, name: str) -> int | None:
    f = _pid_file(spec, name)
    return _recorded_pid(f) if f.is_file() else None


def _spawn(spec: ClusterSpec, name: str, cmd: list[str], env: dict[str, str]) -> int:
    """Start ``cmd`` as the leader of a new process group, logging to ``STATE/logs/NAME.log``."""
    logs = spec.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    pid_file = _pid_file(spec, name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{proc.pid} {_started(proc.pid)}\n")
    return proc.pid


def _wait(what: str, ready, spec: ClusterSpec, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if _running(spec, name) is None:
            break
        time.sleep(0.5)
    log = spec.state_dir / "logs" / f"{name}.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
    raise OnlyIfError(
        f"{what} did not come up within {START_TIMEOUT_S:.0f} s (log {log}: {tail[0] if tail else 'empty'})"
    )


def _get(url: str, token: str | None = None, timeout: float = 2) -> bytes | None:
    """The body of a GET answered 200 (with the Ray token as a bearer header when given), else None."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read() if r.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


def _http_ok(url: str, token: str | None = None) -> bool:
    return _get(url, token) is not None


def alive_nodes(spec: ClusterSpec) -> int:
    """Alive Ray nodes, from the job server's REST API (the same call `ray list nodes` makes)."""
    query = "limit=100&detail=false&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE"
    body = _get(f"{spec.job_address}/api/v0/nodes?{query}", spec.token, timeout=5)
    try:
        return len(json.loads(body)["data"]["result"]["result"]) if body else 0
    except (KeyError, ValueError):
        return 0


def _check_free(port: int) -> None:
    if connect_error(HOST, port, 0.5) is None:
        raise OnlyIfError(f"cluster: port {port} on {HOST} is taken by another program; choose another")


def _autoscaling_config(spec: ClusterSpec) -> Path:
    """Ray's fake multi-node provider: worker nodes are local Ray nodes the autoscaler starts and stops."""
    from ray._private.services import get_node_ip_address

    config = {
        "cluster_name": "onlyif-local",
        "max_workers": spec.autoscale,
        "idle_timeout_minutes": spec.idle_timeout_s / 60,
        "upscaling_speed": 1.0,
        # as Ray's fake multi-node example: the provider starts each node's Ray itself, so no node updaters (theirs
        # failed at once on this provider and took the node down as "launch failed" ~1 s after its start: a job
        # lost its task there when the machine was slow); its nodes share one IP, so they are told apart by node ID
        "provider": {
            "type": "fake_multinode",
            "gcs_address": f"{get_node_ip_address()}:{spec.port}",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": spec.head_cpus}, "node_config": {}, "max_workers": 0},
            "cpu_worker": {
                "resources": {"CPU": spec.worker_cpus, WORKER_RESOURCE: 1},
                "node_config": {},
                "min_workers": 0,
                "max_workers": spec.autoscale,
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {"ssh_user": "ubuntu"},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }
    path = spec.state_dir / "autoscaler.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def up(spec: ClusterSpec) -> dict[str, str]:
    """Start what is not running yet; returns :func:`client_env` (also written to ``STATE/env.sh``)."""
    if spec.workers and spec.autoscale:
        raise OnlyIfError("cluster: give fixed workers or autoscale, not both")
    if spec.auth not in ("token", "disabled"):
        raise OnlyIfError(f"cluster.auth: {spec.auth!r} is not one of token, disabled")
    spec.state_dir.mkdir(parents=True, exist_ok=True)
    if spec.auth == "token" and not spec.token_path.is_file():
        spec.token_path.write_text(secrets.token_hex(32) + "\n")
        spec.token_path.chmod(0o600)
    env = _server_env(spec)

    # the S3 and MLflow servers start beside the head (nothing of theirs needs Ray); each is waited for after it
    start = {name: _running(spec, name) is None for name in ("head", "mlflow")}
    start["s3"] = bool(spec.s3_port) and _running(spec, "s3") is None
    ports = {"head": [spec.port, spec.dashboard_port], "s3": [spec.s3_port], "mlflow": [spec.mlflow_port]}
    for port in (port for name, wanted in start.items() if wanted for port in ports[name]):
        _check_free(port)
    if start["head"]:
        cmd = [_bin("ray"), "start", "--head", "--block", f"--port={spec.port}", f"--num-cpus={spec.head_cpus}"]
        cmd += [f"--dashboard-host={HOST}", f"--dashboard-port={spec.dashboard_port}", "--include-dashboard=true"]
        cmd += [f"--dashboard-agent-listen-port={spec.agent_port}"]
        cmd += [f"--temp-dir={spec.ray_dir.resolve()}", "--disable-usage-stats"]
        # Ray gives its dashboard (our job server) 60 s to start, then fails `ray start`: on a loaded machine that
        # was too little (1 Dec 2026); as long as `up` waits, unless the environment says otherwise
        head_env = {"RAY_DASHBOARD_STARTUP_TIMEOUT_S": str(int(START_TIMEOUT_S))} | env
        if spec.autoscale:
            cmd.append(f"--autoscaling-config={_autoscaling_config(spec)}")
            head_env |= {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        _spawn(spec, "head", cmd, head_env)
    if start["s3"]:
        _spawn(spec, "s3", [_bin("moto_server"), "-H", HOST, "-p", str(spec.s3_port)], env)
    if start["mlflow"]:
        store = (spec.state_dir / "mlflow").resolve()
        store.mkdir(parents=True, exist_ok=True)
        local = f"s3://{S3_BUCKET}/mlflow" if spec.s3_port else str(store / "artifacts")
        artifacts = spec.artifacts or local
        cmd = [_bin("mlflow"), "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}"]
        cmd += ["--artifacts-destination", artifacts, "--host", HOST, "--port", str(spec.mlflow_port)]
        cmd += ["--workers", "1"]
        _spawn(spec, "mlflow", cmd, MLFLOW_SERVER_ENV | env)
    token = spec.token
    # the job server, and the head's agent that runs the jobs it accepts (a job submitted before the agent is up
    # is refused: "No available agent to submit job")
    _wait("the Ray head", lambda: _http_ok(f"{spec.job_address}/api/version", token), spec, "head")
    _wait("the head's job agent", lambda: _http_ok(f"http://{HOST}:{spec.agent_port}/api/healthz"), spec, "head")

    for i in range(1, spec.workers + 1):
        name = f"worker-{i}"
        if _running(spec, name) is None:
            cmd = [_bin("ray"), "start", "--block", f"--address={HOST}:{spec.port}", f"--num-cpus={spec.worker_cpus}"]
            cmd += [f"--resources={json.dumps({WORKER_RESOURCE: 1})}", "--disable-usage-stats"]
            cmd += ["--dashboard-agent-listen-port=0"]
            # its own temp dir: nodes sharing one would unpack a job's working_dir into the same folder, and a
            # process whose current directory is replaced under it dies (MKL aborts loading torch without a cwd)
            cmd += [f"--temp-dir={spec.ray_dir}-{name}"]
            _spawn(spec, name, cmd, env)
    if spec.workers:
        _wait(f"{spec.workers} Ray worker node(s)", lambda: alive_nodes(spec) >= 1 + spec.workers, spec, "head")

    if spec.s3_port:
        _wait("the S3 server", lambda: _http_ok(f"{spec.s3_endpoint}/moto-api/"), spec, "s3")
        _ensure_bucket(spec)
    _wait("the MLflow server", lambda: _http_ok(f"{spec.mlflow_uri}/health"), spec, "mlflow")

    client = client_env(spec)
    lines = [f"export {k}={shlex.quote(v)}" for k, v in client.items()]
    (spec.state_dir / "env.sh").write_text("\n".join(lines) + "\n")
    return client


def _ensure_bucket(spec: ClusterSpec) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=spec.s3_endpoint,
        region_name=S3_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if S3_BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=S3_BUCKET)


def cluster_processes(spec: ClusterSpec) -> list[int]:
    """PIDs of the cluster's running processes: each PID file's process group, and anything naming our Ray
    directory (Ray's workers and the autoscaler's nodes)."""
    pid_dir = spec.state_dir / "pids"
    groups = {pid for f in (pid_dir.glob("*.pid") if pid_dir.is_dir() else []) if (pid := _recorded_pid(f))}
    return processes_in(groups, str(spec.ray_dir.resolve()))


def processes_in(groups: set[int], marker: str) -> list[int]:
    """PIDs of the running processes in one of the process ``groups`` or with ``marker`` (a Ray temp dir) in their
    command line — a node's raylet, GCS and workers leave its group. Zombies (dead, not yet reaped) and this
    process do not count."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            in_group = os.getpgid(p.info["pid"]) in groups
        except (ProcessLookupError, PermissionError):
            continue
        if in_group or any(marker in part for part in p.info["cmdline"] or []):
            found.append(p.info["pid"])
    return [pid for pid in found if pid != os.getpid()]


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def down(spec: ClusterSpec, grace_s: float = 5.0) -> int:
    """Stop every process of the cluster in ``spec.state_dir``; returns how many were running. SIGTERM first (the
    MLflow server closes its store); Ray's GCS, raylets and ``ray start --block`` often outlive the grace period
    and are then killed, as ``ray stop --force`` would."""
    pids = cluster_processes(spec)
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.3)
    # SIGKILL what is left, again until nothing is: a worker Ray was launching for a job may start meanwhile
    deadline = time.monotonic() + grace_s
    while (left := cluster_processes(spec) + [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        _signal(left, signal.SIGKILL)
        time.sleep(0.2)
    pid_dir = spec.state_dir / "pids"
    for f in pid_dir.glob("*.pid") if pid_dir.is_dir() else []:
        f.unlink()
    return len(pids)


def status(spec: ClusterSpec) -> dict[str, int | None]:
    """PID of each started service (None when not running)."""
    pid_dir = spec.state_dir / "pids"
    names = sorted(f.stem for f in pid_dir.glob("*.pid")) if pid_dir.is_dir() else []
    return {name: _running(spec, name) for name in names}
