"""Starting Ray: a command without ``RAY_ADDRESS`` starts its own local Ray, whatever else runs on the machine; its
workers, like the command itself, raise their garbage-collection thresholds."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from onlyif.gc_tuning import THRESHOLDS, raise_gc_thresholds
from onlyif.local_cluster import processes_in
from tests._ports import free_port

BIN = Path(sys.executable).parent
LOCAL_RAY = """
from onlyif.ray_utils import init_ray
import ray
init_ray(num_cpus=3, progress=False)
print("CPU", ray.cluster_resources()["CPU"], "NODES", len(ray.nodes()))
"""


def test_a_ray_start_cluster_on_the_machine_is_not_joined_without_ray_address():
    """`ray start` leaves its address where a plain `ray.init()` finds and joins it (which then refuses our
    ``num_cpus``); ``init_ray`` starts a local Ray of its own. ``RAY_TMPDIR`` keeps that address file from the
    other tests' processes (short: Ray's socket paths must fit 107 bytes)."""
    tmp = Path(tempfile.mkdtemp(prefix="oi", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(tmp)}
    head_cmd = [BIN / "ray", "start", "--head", "--block", "--num-cpus=1", f"--port={free_port()}"]
    head_cmd += ["--include-dashboard=false", "--disable-usage-stats"]
    head = subprocess.Popen(
        head_cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp / "ray" / "ray_current_cluster").is_file() and head.poll() is None:
            assert time.monotonic() < deadline, "`ray start` wrote no address file"
            time.sleep(0.5)
        assert head.poll() is None, "`ray start` ended"
        run = subprocess.run([sys.executable, "-c", LOCAL_RAY], env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "CPU 3.0 NODES 1" in run.stdout, run.stdout  # its own Ray: 3 CPUs, not the head's 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=15)
        for pid in processes_in({head.pid}, str(tmp)):  # the head's GCS, raylet and workers
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def test_ray_workers_and_onlyif_commands_raise_the_gc_thresholds(ray_cluster):
    """Every Ray worker of a job ``init_ray`` started or joined (Ray's setup hook) and the ``onlyif`` command's own
    process (a fresh Python starts at CPython's 700, 10, 10)."""

    @ray_cluster.remote
    def thresholds() -> tuple[int, int, int]:
        import gc

        return gc.get_threshold()

    assert ray_cluster.get(thresholds.remote()) == THRESHOLDS
    command = "import gc; from onlyif.cli import main; main([]); print(gc.get_threshold())"
    run = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, timeout=60)
    assert run.stdout.splitlines()[-1] == str(THRESHOLDS), run.stdout[-2000:] + run.stderr[-2000:]


JOB_DRIVER = """
import json

import ray

from onlyif.ray_utils import init_ray

init_ray(progress=False)


@ray.remote
def collector() -> tuple:
    import gc

    return gc.isenabled(), gc.get_threshold()


print(json.dumps(ray.get(collector.remote())))
"""


def test_a_job_submitted_with_a_setup_hook_of_its_own_keeps_it(ray_cluster):
    """The driver of a job submitted with its own worker setup hook (Ray's job supervisor hands the driver the job's
    runtime env) passes none of ours — not even where Ray is told to let the driver's runtime env win."""
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    env = dict(os.environ, RAY_ADDRESS=ray_cluster.get_runtime_context().gcs_address, RAY_OVERRIDE_JOB_RUNTIME_ENV="1")
    env[RAY_JOB_CONFIG_JSON_ENV_VAR] = json.dumps({"runtime_env": {"worker_process_setup_hook": "gc.disable"}})
    run = subprocess.run([sys.executable, "-c", JOB_DRIVER], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    enabled, thresholds = json.loads(run.stdout.splitlines()[-1])
    assert not enabled and tuple(thresholds) != THRESHOLDS  # the job's hook ran in its worker, ours did not


def test_gc_thresholds_are_raised_but_a_higher_setting_or_collection_off_is_kept():
    before = gc.get_threshold()
    try:
        for start, expected in [
            ((700, 10, 10), THRESHOLDS),
            ((50_000, 5, 50), (50_000, 10, 50)),
            ((0, 5, 50), (0, 5, 50)),
        ]:
            gc.set_threshold(*start)
            raise_gc_thresholds()
            assert gc.get_threshold() == expected, start
    finally:
        gc.set_threshold(*before)
