"""Training runs in object storage, against a real local S3 server (moto, 127.0.0.1): ``onlyif train --out s3://…``
has Ray Train persist its checkpoints under the URI and uploads the run's own files; a resume on another node (an
empty node-local cache) restores both from the URI and continues at the saved step, and a third finds it finished; a
trial's evaluation task reads the model from the URI and writes there. (A sweep with ``tune.storage_path: s3://…``
— its trials' runs there, its report and ``--resume`` read back — is checked on a real cluster in
``tests/test_cluster.py``.)

The runs are made inside Ray tasks whose ``runtime_env`` carries the S3 variables, as a Tune trial on a cluster node
that has them: the session's Ray workers started before the S3 server, and Ray Train's controller and workers inherit
the environment of the process that calls ``fit``.
"""

from __future__ import annotations

import json
import os

import pytest

from tests._s3_fixtures import BUCKET, moto_s3
from tests._storage_run_tasks import cli, evaluate, finished
from tests._train_fixtures import make_synthetic_dataset, tiny_cfg

pytestmark = pytest.mark.usefixtures("ray_cluster")

S3_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with one bucket (``tests/_s3_fixtures.py``). Yields a boto3 client."""
    with moto_s3(tmp_path_factory.mktemp("driver_cache")) as client:
        yield client


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), n_train=64, n_test=8)


def keys(client, prefix: str) -> list[str]:
    """The objects under ``prefix/`` (relative keys), folder markers left out."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    found = (o["Key"][len(prefix) + 1 :] for page in pages for o in page.get("Contents", []))
    return sorted(k for k in found if k and not k.endswith("/"))


def body(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def on_node(cache, fn, *args):
    """``fn(*args)`` in a Ray task with the S3 variables and its own node-local cache (``ONLYIF_CACHE_DIR``)."""
    import ray

    env = {k: os.environ[k] for k in S3_VARS} | {"ONLYIF_CACHE_DIR": str(cache)}
    # max_calls=1: the worker exits after the call. Ray Train's fit() in a process's main thread registers a SIGINT
    # handler holding its controller, so a reused worker would keep that run's controller alive.
    task = ray.remote(num_cpus=0, max_retries=0, max_calls=1, runtime_env={"env_vars": env})(fn)
    return ray.get(task.remote(*args))


def test_train_to_s3_checkpoints_there_and_resumes_on_another_node(s3, data, tmp_path):
    uri = f"s3://{BUCKET}/runs/tiny"
    # node A trains one epoch (64 rows / batch 32: 2 steps) through the CLI
    config = tmp_path / "train.yaml"
    config.write_text(json.dumps(tiny_cfg(scaling__num_workers=1, epochs=1, eval__max_examples=8).to_dict()))
    argv = ["train", "--config", str(config), "--data", str(data), "--out", uri]
    assert on_node(tmp_path / "node_a", cli, argv) == 0
    first = keys(s3, "runs/tiny")
    (checkpoint,) = {k.split("/")[1] for k in first if k.startswith("ray_train/checkpoint_2")}
    # Ray Train persisted the checkpoint (engine states and all) to the URI itself; our files were uploaded beside it
    assert f"ray_train/{checkpoint}/train_state.json" in first and any(f"{checkpoint}/engine/" in k for k in first)
    assert {"config.yaml", "run.json", "metrics.jsonl", "model/config.json", "eval/test_unseen.json"} <= set(first)
    epoch_1 = body(s3, "runs/tiny/metrics.jsonl")
    assert [json.loads(x)["step"] for x in epoch_1.splitlines()] == [2]
    assert json.loads(body(s3, "runs/tiny/run.json"))["final"]["step"] == 2

    # node B (nothing in its cache) continues it to 2 epochs: files and checkpoint come from the URI
    assert on_node(tmp_path / "node_b", cli, ["train", "--resume", uri, "--set", "epochs=2"]) == 0
    done = keys(s3, "runs/tiny")
    lines = body(s3, "runs/tiny/metrics.jsonl").splitlines()
    assert lines[0] == epoch_1.splitlines()[0]  # restored from the URI, not trained again
    assert [(json.loads(x)["epoch"], json.loads(x)["step"]) for x in lines] == [(1, 2), (2, 4)]  # on from step 2
    final = json.loads(body(s3, "runs/tiny/run.json"))["final"]
    assert final["step"] == 4 and final["epoch"] == 2 and "test_unseen/exact_match" in final
    assert body(s3, "runs/tiny/model/config.json") and f"ray_train/{checkpoint}/train_state.json" in done
    assert len({k.split("/")[1] for k in done if k.startswith("ray_train/checkpoint_2")}) == 2
    # node B's staging copy holds the model for the steps that follow (a sweep's evaluation), not the checkpoints
    (stage,) = (tmp_path / "node_b" / "runs").iterdir()
    assert (stage / "model" / "config.json").is_file() and not (stage / "ray_train").exists()
    # a sweep trial rerun on node C finds the run finished: its final metrics and history, read from the URI
    metrics, history, seconds = on_node(tmp_path / "node_c", finished, uri)
    assert metrics == final and history == [(1, 2), (2, 4)] and seconds > 0


def test_s3_run_refusals(s3, data, tmp_path, capsys):
    from onlyif.cli import main

    config = tmp_path / "train.yaml"
    config.write_text(json.dumps(tiny_cfg(scaling__num_workers=1).to_dict()))
    s3.put_object(Bucket=BUCKET, Key="busy/config.yaml", Body=config.read_bytes())
    s3.put_object(Bucket=BUCKET, Key="busy/run.json", Body=json.dumps({"data": str(data)}).encode())
    uri = f"s3://{BUCKET}/busy"
    assert main(["train", "--config", str(config), "--data", str(data), "--out", uri]) == 1
    assert capsys.readouterr().err.strip() == (
        f"onlyif train: error: --out {uri}: folder exists and is not empty (resume it with --resume, or pick a new one)"
    )
    assert main(["train", "--resume", uri]) == 1  # its config.yaml and run.json, but no checkpoints
    assert capsys.readouterr().err.strip() == (
        f"onlyif train: error: --resume {uri}: no earlier run found there ({uri}/ray_train missing)"
    )
    assert main(["train", "--resume", f"s3://{BUCKET}/nothing"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"onlyif train: error: --resume s3://{BUCKET}/nothing: not a run directory (config.yaml / run.json missing)"
    )
    assert keys(s3, "busy") == ["config.yaml", "run.json"]  # nothing written


def test_a_trials_evaluation_reads_the_model_from_s3_and_writes_there(s3, tmp_path):
    from onlyif.storage import upload
    from tests._train_fixtures import tiny_hf_model

    upload(tiny_hf_model(tmp_path / "llama"), f"s3://{BUCKET}/evalrun/model", "test")
    problems = [  # HumanEval-format problems whose prompts fit the tiny model's 64 positions
        {
            "task_id": f"Tiny/{i}",
            "prompt": f"def {name}(a, b):\n",
            "canonical_solution": f"    return a {op} b\n",
            "test": f"def check(candidate):\n    assert candidate(6, 3) == {value}\n",
            "entry_point": name,
        }
        for i, (name, op, value) in enumerate((("add", "+", 9), ("sub", "-", 3)))
    ]
    (tmp_path / "tiny_code.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    spec = {"code": {"benchmark": str(tmp_path / "tiny_code.jsonl"), "generation": {"max_new_tokens": 4}}}
    model, out = f"s3://{BUCKET}/evalrun/model", f"s3://{BUCKET}/evalrun/evaluate"
    metrics, _ = on_node(tmp_path / "node", evaluate, model, spec, out)
    assert metrics == {"tiny_code/pass@1": 0.0}  # a random model; the pipeline is what is checked
    summary = json.loads(body(s3, "evalrun/evaluate/code/summary.json"))
    assert summary["n_problems"] == 2 and summary["metrics"] == metrics
    assert len(body(s3, "evalrun/evaluate/code/results.jsonl").splitlines()) == 2
    assert not list((tmp_path / "node").glob("**/model"))  # the task's copy of the model is gone
