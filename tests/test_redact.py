"""Secrets stay out of manifests, run.json and MLflow params: keys that name a secret, URL passwords and
token-shaped strings are replaced; nothing else changes."""

from __future__ import annotations

from onlyif.mlflow_names import PARAM_KEY_MAX, PARAM_VALUE_MAX, flatten_params
from onlyif.redact import REDACTED, redact

HF = "hf_" + "a1B2c3D4" * 5
AWS = "AKIA" + "ABCDEFGHIJKLMNOP"


def test_secret_keys_urls_and_tokens_are_redacted_and_the_rest_is_kept():
    cfg = {
        "mlflow": {"tracking_uri": "https://alice:s3cr3t@mlflow.example.com:5000/path", "experiment": "x"},
        "hub": {"token": "abc", "hf_token": HF, "api_key": "k", "AWS_SECRET_ACCESS_KEY": "zzz", "password": ""},
        "sources": [{"path": f"s3://bucket/data?key={AWS}"}, {"note": f"uses {HF} to download"}],
        "generation": {"max_new_tokens": 64, "eos_token": "<|endoftext|>", "tokenizer": "gpt2"},
        "train": {"lr": 4e-3, "seed": 0, "data": "s3://bucket/prefix", "storage": "s3://user@bucket/x"},
    }
    out = redact(cfg)
    assert out["mlflow"]["tracking_uri"] == f"https://alice:{REDACTED}@mlflow.example.com:5000/path"
    assert out["hub"] == dict.fromkeys(("token", "hf_token", "api_key", "AWS_SECRET_ACCESS_KEY"), REDACTED) | {
        "password": ""
    }
    assert out["sources"] == [{"path": f"s3://bucket/data?key={REDACTED}"}, {"note": f"uses {REDACTED} to download"}]
    assert out["generation"] == cfg["generation"] and out["train"] == cfg["train"]
    assert cfg["hub"]["token"] == "abc", "the input is not modified"


def test_mlflow_params_are_flat_redacted_and_within_mlflows_limits():
    params = flatten_params({"a": {"b": [1, 2], "secret": "x"}, "u": "http://u:p@h", "long": "y" * 10_000})
    assert params["a.b"] == "[1, 2]" and params["a.secret"] == REDACTED and params["u"] == f"http://u:{REDACTED}@h"
    assert len(params["long"]) == PARAM_VALUE_MAX
    assert all(len(k) <= PARAM_KEY_MAX for k in flatten_params({"k" * 300: 1}))


def test_a_training_runs_mlflow_params_are_redacted(tmp_path):
    from mlflow import MlflowClient

    from onlyif.train.tracking import start_mlflow_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = {"mlflow_tracking_uri": "https://alice:s3cr3t@mlflow.example.com", "hub": {"token": HF}, "lr": 0.004}
    run_id = start_mlflow_run(uri, "redact", tmp_path, "run", params)
    logged = MlflowClient(uri).get_run(run_id).data.params
    assert logged == {
        "mlflow_tracking_uri": f"https://alice:{REDACTED}@mlflow.example.com",
        "hub.token": REDACTED,
        "lr": "0.004",
    }


def test_generate_writes_its_manifest_through_redact_unchanged(ray_cluster, tmp_path):
    """`onlyif generate`'s manifest goes through :func:`redact` like the other manifests. It holds no user-given
    strings today (counts, digests, versions), so redact must leave it whole: digests and counts are not taken for
    secrets, and what is written is what is returned."""
    import json

    from onlyif.config import validate_config
    from onlyif.data.generate import generate_dataset
    from onlyif.tasks.config import TaskConfig

    task = {"alphabet_size": 4, "input_length": 6, "pattern_length": 2, "instructions": 4, "budget": 32}
    cfg = validate_config(TaskConfig, task | {"test_seen": 8, "test_unseen": 8})
    returned = generate_dataset(cfg, tmp_path / "data", progress=False)
    written = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert written == returned == redact(written)
    assert REDACTED not in json.dumps(written) and len(written["splits"]["train"]["digest"]) == 32
