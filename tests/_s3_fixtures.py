"""A real local S3 server (moto, 127.0.0.1) for the tests that read or write ``s3://…`` (tests/test_storage.py, and
tests/train/test_train_ray.py, whose worker-failure run trains on an ``s3://`` copy of its dataset)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._ports import free_port

BUCKET = "onlyif-test"


@contextlib.contextmanager
def moto_s3(cache_dir: Path) -> Iterator:
    """A moto S3 server on 127.0.0.1 with one bucket (``BUCKET``); while open, the AWS variables point boto3 and
    pyarrow at it and ``ONLYIF_CACHE_DIR`` at ``cache_dir``. Yields a boto3 client."""
    import boto3

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            env = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
            for key, value in (env | {"AWS_DEFAULT_REGION": "us-east-1"}).items():
                mp.setenv(key, value)
            mp.setenv("ONLYIF_CACHE_DIR", str(cache_dir))
            client = boto3.client("s3")
            client.create_bucket(Bucket=BUCKET)
            yield client
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
