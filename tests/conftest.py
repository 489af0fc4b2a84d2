"""Shared fixtures: one real local Ray cluster per test session, quiet and lean; tests marked ``gpu`` are skipped
where no CUDA device is visible (``pytest -m gpu`` selects only them, on a GPU machine)."""

from __future__ import annotations

import os
import time
import warnings

import pytest

from onlyif.gc_tuning import raise_gc_thresholds
from tests._machine import cpu_counters, describe

raise_gc_thresholds()  # the test processes import torch, Ray and the rest too (as `onlyif` commands do)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.pop("RAY_ADDRESS", None)

# Logical CPUs of the test cluster: more than the 2 physical cores so that Ray Data tasks can run
# beside 2 Ray Train workers (a 2-CPU cluster with 2 one-CPU workers would leave Ray Data no slot).
TEST_CLUSTER_CPUS = 4


# The costliest files (seconds of a serial run on the 2-core machine, bench/README "test suite"), run first so that
# `pytest -n 2 --dist loadfile --no-loadscope-reorder` (make test) gives the two workers even shares of the rest.
RUN_FIRST = (
    "sweep/test_sweep.py",  # ~300 s
    "test_cluster.py",  # ~250
    "train/test_train_ray.py",  # ~190
    "test_faults.py",  # ~75
    "sweep/test_sweep_mixture.py",  # ~60
    "lm/test_gguf.py",  # ~60
    "test_storage_runs.py",  # ~55
)


def _cost_rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    return next((i for i, name in enumerate(RUN_FIRST) if path.endswith(f"/tests/{name}")), len(RUN_FIRST))


_MACHINE_AT_START = pytest.StashKey[tuple]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_MACHINE_AT_START] = (cpu_counters(), time.monotonic())


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """After the run (not in xdist's workers): what the machine gave it, busy and stolen CPU-seconds — on a shared
    VM these, more than the tests, decide the wall time."""
    if hasattr(config, "workerinput") or _MACHINE_AT_START not in config.stash:
        return
    start, t0 = config.stash[_MACHINE_AT_START]
    if line := describe(start, time.monotonic() - t0):
        terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_cost_rank)  # stable: the order within a file, and of the other files, is kept
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_tests:
        import torch

        if not torch.cuda.is_available():
            for item in gpu_tests:
                item.add_marker(pytest.mark.skip(reason="marked gpu: needs a CUDA device"))


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster shared by all tests of the session, with the dashboard an ASHA sweep starts (Ray
    Train frees the workers of a trial Tune stopped through its State API)."""
    import ray

    from onlyif.ray_utils import init_ray

    init_ray(num_cpus=TEST_CLUSTER_CPUS, progress=False, dashboard=True)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True, scope="module")
def _cluster_idle_after_module(request):
    """After each test file, the shared cluster has every CPU back: a file that leaves resources held (a leaked
    placement group, a live actor) fails here, by name and with what holds them, instead of a later file hanging
    on the missing CPUs; what it left is freed, so that the files after it run as usual.

    One leak is Ray's, not ours, and only warns: a placement group of a job that has ended. A Ray Train controller
    that retries its worker group while its driver exits (the workers die with the driver) can create a group after
    the GCS freed that job's groups, and the GCS never frees it (seen once, bench/README "test suite")."""
    yield
    import ray

    if not ray.is_initialized() or free_cpus_once_idle(timeout=5) >= TEST_CLUSTER_CPUS:
        return
    ended, _ = _held_placement_groups()  # Ray's leak does not end by waiting: freed at once
    for group in ended:
        ray.util.remove_placement_group(group)
    if ended:
        message = f"{request.node.nodeid}: removed {len(ended)} placement group(s) of ended jobs (Ray's leak)"
        warnings.warn(message, stacklevel=1)
    if (free := free_cpus_once_idle()) >= TEST_CLUSTER_CPUS:
        return
    ended, ours = _held_placement_groups()
    for group in ended + ours:
        ray.util.remove_placement_group(group)
    pytest.fail(
        f"{request.node.nodeid} left {TEST_CLUSTER_CPUS - free:g} of the cluster's CPUs held; placement groups of "
        f"ended jobs: {[g.id.hex() for g in ended]}, of live jobs: {[g.id.hex() for g in ours]}; actors: "
        f"{_actors_holding_cpus()}"
    )


def _held_placement_groups() -> tuple[list, list]:
    """The placement groups holding resources, split into those of jobs that ended and those of live jobs."""
    import ray
    from ray._private.state import jobs
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    ended_jobs = {job["JobID"] for job in jobs() if job["IsDead"]}
    ended: list = []
    live: list = []
    for pg_id, pg in ray.util.placement_group_table().items():
        if pg["state"] == "CREATED":
            group = PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id)))
            (ended if pg_id[-8:] in ended_jobs else live).append(group)  # a group's ID ends with its job's
    return ended, live


def _actors_holding_cpus() -> list[str]:
    from ray._private.state import actors

    alive = [a for a in actors().values() if a["State"] == "ALIVE" and a.get("RequiredResources", {}).get("CPU")]
    return [f"{a['ActorClassName']} (job {a['JobID']}, pid {a.get('Pid')})" for a in alive]


def free_cpus_once_idle(timeout: float = 30) -> float:
    """The session cluster's free CPUs once all are free again, or after ``timeout`` seconds."""
    import ray

    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0) < TEST_CLUSTER_CPUS and time.monotonic() < deadline:
        time.sleep(0.5)
    return ray.available_resources().get("CPU", 0)
