"""Checks made on the driver before a training run starts: the scaling fits the Ray cluster
(:func:`check_resources`) and the run folder or URI is new, or holds a run to resume (:func:`check_run_target`)."""

from __future__ import annotations

import sys
from pathlib import Path

from onlyif.errors import ConfigError, OnlyIfError
from onlyif.ray_utils import started_here
from onlyif.train.config import TrainConfig
from onlyif.train.run_files import RAY_RUN_NAME


def check_resources(cfg: TrainConfig) -> None:
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


def check_run_target(out: Path, remote: str | None, resume: bool) -> None:
    """``--out`` (a folder, or the URI ``remote``) can take a new run, or holds one to ``resume``."""
    if remote:
        _check_run_uri(remote, resume)
    else:
        _check_run_dir(out, resume)
