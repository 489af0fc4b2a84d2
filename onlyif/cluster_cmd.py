"""``onlyif cluster up|down|status``: a local Ray head (+ worker nodes or an autoscaler) and an MLflow server."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

from onlyif.local_cluster import ClusterSpec, down, status, up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--dir", default=os.environ.get("ONLYIF_CLUSTER_DIR", ".cluster"), help="state folder (default .cluster)"
    )
    parser.add_argument("--port", type=int, default=6379, help="Ray GCS port (default 6379)")
    parser.add_argument("--dashboard-port", type=int, default=8265, help="dashboard / job server port (8265)")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="MLflow server port (5000)")
    parser.add_argument("--agent-port", type=int, default=52365, help="the head's dashboard agent port (52365)")
    parser.add_argument("--head-cpus", type=int, default=os.cpu_count() or 1, help="CPUs the head advertises")
    parser.add_argument("--workers", type=int, default=0, help="worker nodes to join to the head (default 0)")
    parser.add_argument("--worker-cpus", type=int, default=1, help="CPUs each worker node advertises (1)")
    parser.add_argument(
        "--autoscale", type=int, default=0, metavar="N", help="let Ray's autoscaler start up to N worker nodes"
    )
    parser.add_argument(
        "--idle-timeout",
        dest="idle_timeout_s",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds before an idle node goes (60)",
    )
    parser.add_argument("--auth", choices=("token", "disabled"), default="token", help="Ray auth mode (token)")
    parser.add_argument("--artifacts", help="MLflow artifact destination (default DIR/mlflow/artifacts; s3://…)")
    parser.add_argument(
        "--s3-port", type=int, default=0, help="also run a local S3 server (moto) here; MLflow artifacts go to it"
    )


def run(args: argparse.Namespace) -> int:
    options = {f.name: getattr(args, f.name) for f in fields(ClusterSpec) if f.name != "state_dir"}
    spec = ClusterSpec(state_dir=Path(args.dir).resolve(), **options)
    if args.action == "up":
        env = up(spec)
        print(f"Ray job server {env['RAY_ADDRESS']} (auth: {spec.auth}), MLflow {env['MLFLOW_TRACKING_URI']}")
        if spec.s3_endpoint:
            print(f"S3 server {spec.s3_endpoint} (bucket s3://onlyif; MLflow artifacts under s3://onlyif/mlflow)")
        print(f"for clients: source {spec.state_dir / 'env.sh'}")
        print("  ray job submit --working-dir . -- python jobs/sweep.py --config CONFIG --smoke-test")
        return 0
    if args.action == "down":
        n = down(spec)
        print(f"stopped {n} process(es) of the cluster in {spec.state_dir}" if n else "nothing was running")
        return 0
    running = status(spec)
    for name, pid in running.items():
        print(f"{name}: {'pid ' + str(pid) if pid else 'not running'}")
    if not running:
        print(f"no cluster started from {spec.state_dir}")
    return 0 if running and all(running.values()) else 1
