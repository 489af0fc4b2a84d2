"""Starting or joining Ray quietly: a local cluster by default, an existing one when ``RAY_ADDRESS`` is set."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator

from onlyif.errors import OnlyIfError
from onlyif.gc_tuning import WORKER_SETUP_HOOK
from onlyif.net import connect_error

LOCAL_RAY_ENV = "ONLYIF_LOCAL_RAY"
"""Set by :func:`init_ray` before it starts a local Ray, so that the Ray workers (Tune trials) inherit it."""
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"
"""Where a Ray process's State API calls go (Ray reads it)."""


def started_here() -> bool:
    """Whether this process's Ray is a local one an ``onlyif`` command started (it cannot grow), rather than a
    cluster it joined; also true in that local Ray's workers."""
    return os.environ.get(LOCAL_RAY_ENV) == "1"


def init_ray(num_cpus: int | None = None, progress: bool = True, dashboard: bool = False) -> None:
    """Connect to ``RAY_ADDRESS`` if set, else start a quiet local Ray (no driver log spam) — a new one even when a
    ``ray start`` cluster runs on this machine (plain ``ray.init()`` would join it).

    ``dashboard``: the local Ray runs its dashboard, whose State API Ray Train needs to free the placement group of
    a run whose controller died without ending it (a trial Tune stopped early); it costs ≈ 1 s of start-up and
    ≈ 200 MB. Every Ray worker of the job raises its garbage-collection thresholds as it starts
    (:mod:`onlyif.gc_tuning`), unless the job was submitted with a setup hook of its own. Idempotent: does nothing
    when Ray is already initialized in this process.
    """
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        kwargs = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
        if not _job_has_setup_hook():  # Ray merges no two hooks (or, told to override, drops the job's): theirs wins
            kwargs["runtime_env"] = {"worker_process_setup_hook": WORKER_SETUP_HOOK}
        address = os.environ.get("RAY_ADDRESS")
        if address:
            _check_reachable(address)
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                if num_cpus:
                    # Ray caps parallel worker start-ups at the physical cores (2 here) and prints a warning each
                    # time 4x that many workers exist — routine for a sweep (trial, controller, train workers,
                    # Ray Data). Let the logical CPUs we advertise set the cap instead, as Ray does when they fit.
                    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", str(num_cpus))
                os.environ[LOCAL_RAY_ENV] = "1"  # before ray.init: its raylet and workers inherit it
                with _dashboard_env(dashboard) as port:
                    # "local": a new Ray, even where `ray start` left its address for plain ray.init() to join
                    ray.init(
                        address="local", num_cpus=num_cpus, include_dashboard=dashboard, dashboard_port=port, **kwargs
                    )
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            where = f"connect to the Ray cluster at RAY_ADDRESS={address}" if address else "start a local Ray"
            hint = "is the head running?" if address else "check free memory and /tmp space, or retry when less loaded"
            raise OnlyIfError(f"could not {where} ({first}); {hint}") from None
        if address:
            res = ray.cluster_resources()
            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            print(
                f"joined the Ray cluster at RAY_ADDRESS={address}: {nodes} node(s), {res.get('CPU', 0):g} CPU, "
                f"{res.get('GPU', 0):g} GPU",
                file=sys.stderr,
            )
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.enable_operator_progress_bars = progress
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _job_has_setup_hook() -> bool:
    """Whether this process is the driver of a job submitted with a worker setup hook of its own (``ray job submit
    --runtime-env-json``): Ray's job supervisor hands the driver the job's config, the variable ``ray.init`` reads."""
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    try:
        runtime_env = json.loads(os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR) or "{}").get("runtime_env") or {}
        return bool(runtime_env.get("worker_process_setup_hook"))
    except (ValueError, AttributeError):  # not Ray's JSON: Ray itself will refuse it
        return False


@contextlib.contextmanager
def _dashboard_env(dashboard: bool) -> Iterator[int | None]:
    """The dashboard port for a local Ray (None: no dashboard), and its State API address in this process's
    environment while Ray starts, so that only the raylet and its workers inherit it. A worker's State API call
    (Ray Train's placement-group cleaner makes them) finds its cluster from ``RAY_API_SERVER_ADDRESS``, else by
    looking for local Ray instances, and fails when there is more than one on the machine."""
    if not dashboard:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with environ_set(API_SERVER_ENV, f"http://127.0.0.1:{port}"):
        yield port


@contextlib.contextmanager
def environ_set(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment (and so in the processes it starts) until the block ends, then
    as it was; only that variable is restored."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast when nothing listens at a ``host:port`` address (Ray itself retries for minutes before giving
    up). Other forms (``auto``, ``ray://...``) are left to Ray."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    reason = connect_error(host, int(port), timeout)
    if reason is not None:
        raise OnlyIfError(
            f"could not connect to the Ray cluster at RAY_ADDRESS={address} ({reason}); is the head running?"
        )


def cluster_cpus() -> int:
    """Total CPUs the connected Ray cluster advertises."""
    import ray

    return int(ray.cluster_resources().get("CPU", 0))
