"""A real ``mlflow server`` for the tests that need a tracking server which can go away (sqlite store, 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from onlyif.local_cluster import MLFLOW_SERVER_ENV


def mlflow_server(store: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` with its sqlite store and artifacts under ``store``, on 127.0.0.1:``port``, once it answers
    /health. It runs in its own process group: ``os.killpg(proc.pid, SIGKILL)`` takes it down whole."""
    store.mkdir(exist_ok=True)
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--workers", "1"]
    cmd += ["--artifacts-destination", str(store / "artifacts")]
    with open(store / "server.log", "ab") as log:
        env = MLFLOW_SERVER_ENV | os.environ
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + 600  # a bound: it starts in seconds, but took 3 min beside a load of 70
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"mlflow server did not come up: {(store / 'server.log').read_text()[-2000:]}")
