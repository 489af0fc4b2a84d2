"""``s3://…`` outputs and inputs (``onlyif/storage.py``) against a real local S3 server (moto, 127.0.0.1): generate and
mix publish the bytes of a local build with ``manifest.json`` last, refusals and ``--overwrite`` hold, a folder
without a manifest is never read as a result, the sweep's ``data_cache`` reuses a published build. Training on an
``s3://`` dataset: the worker-failure run of tests/train/test_train_ray.py reads its dataset from such a server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from onlyif.cli import main
from onlyif.config import validate_config
from onlyif.data.generate import generate_dataset
from onlyif.data.mixture import build_mixture
from onlyif.data.mixture_config import MixtureConfig
from onlyif.errors import OnlyIfError
from onlyif.storage import fetch, local_path, publish
from onlyif.sweep.datasets import ensure_dataset, ensure_mixture
from onlyif.tasks.config import TaskConfig
from tests._mix_fixtures import base_config
from tests._s3_fixtures import BUCKET, moto_s3

TASK = {
    "seed": 5,
    "alphabet_size": 6,
    "input_length": [8, 10],
    "pattern_length": [2, 3],
    "instructions": 20,
    "budget": 400,
    "test_seen": 60,
    "test_unseen": 60,
}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with one bucket (``tests/_s3_fixtures.py``). Yields a boto3 client."""
    with moto_s3(tmp_path_factory.mktemp("node_cache")) as client:
        yield client


def objects(client, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix/`` (its key relative to the prefix) and its bytes; folder markers left out."""
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])]
    return {
        k[len(prefix) + 1 :]: client.get_object(Bucket=BUCKET, Key=k)["Body"].read()
        for k in keys
        if not k.endswith("/")
    }


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def without_timing(manifest: bytes, key: str) -> dict:
    data = json.loads(manifest)
    data.pop(key)
    return data


def test_generate_to_s3_publishes_the_local_bytes_refuses_and_overwrites(s3, ray_cluster, tmp_path, capsys):
    cfg = validate_config(TaskConfig, TASK)
    local = generate_dataset(cfg, tmp_path / "local", progress=False)
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(TASK))
    uri = f"s3://{BUCKET}/gen"
    argv = ["generate", "--config", str(tmp_path / "task.yaml"), "--out", uri, "--no-progress"]
    assert main(argv) == 0
    remote, mine = objects(s3, "gen"), files(tmp_path / "local")
    assert set(remote) == set(mine) and any(k.startswith("test_unseen/part-") for k in remote)
    for name in mine:
        if name != "manifest.json":
            assert remote[name] == mine[name], name
    assert without_timing(remote["manifest.json"], "generation_seconds") == json.loads(
        json.dumps({k: v for k, v in local.items() if k != "generation_seconds"})
    )
    # reading it back: a node-local copy, downloaded once per manifest
    copy = local_path(uri)
    assert files(copy) == remote and fetch(uri) == copy
    # a second run refuses the non-empty URI before any work; --overwrite replaces everything there
    assert main(argv) == 1
    assert f"--out {uri}: folder exists and is not empty (pass --overwrite" in capsys.readouterr().err
    s3.put_object(Bucket=BUCKET, Key="gen/stray.txt", Body=b"old")
    s3.put_object(Bucket=BUCKET, Key="gen/manifest.json", Body=b"{}")  # a stale manifest must not survive
    assert main([*argv, "--overwrite"]) == 0
    again = objects(s3, "gen")
    assert "stray.txt" not in again and again["train/part-00000.parquet"] == mine["train/part-00000.parquet"]
    assert without_timing(again["manifest.json"], "generation_seconds") == without_timing(
        remote["manifest.json"], "generation_seconds"
    )


def test_bad_uris_and_missing_manifests_fail_in_one_line(s3, tmp_path, capsys, monkeypatch):
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(TASK))
    gen = ["generate", "--config", str(tmp_path / "task.yaml"), "--no-progress", "--out"]
    cases = [
        (gen + ["nope://bucket/x"], 2, "--out nope://bucket/x: not a storage URI pyarrow can open"),
        (gen + [f"s3://{BUCKET}"], 2, f"--out s3://{BUCKET}: give a folder inside a bucket"),
        (gen + ["s3://no-such-bucket/x"], 1, "--out s3://no-such-bucket/x: bucket 'no-such-bucket' not found"),
        (["train", "--data", f"s3://{BUCKET}/absent", "--out", str(tmp_path / "run")], 1, "no manifest.json there"),
    ]
    for argv, code, message in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert not (tmp_path / "run").exists()
    # no credentials at all: refused before any work (the server denies the unsigned write probe)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws either
    assert main([*gen, f"s3://{BUCKET}/nocred"]) == 1
    err = capsys.readouterr().err.strip()
    assert f"--out s3://{BUCKET}/nocred: " in err and "ACCESS_DENIED" in err and "\n" not in err, err


def test_a_publish_that_fails_midway_leaves_no_manifest(s3, tmp_path):
    folder = tmp_path / "out"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "part-00000.parquet").write_bytes(b"parquet bytes")
    (folder / "manifest.json").write_text("{}")
    os.symlink("/proc/self/mem", folder / "train" / "part-00001.parquet")  # a file whose read fails (EIO)
    uri = f"s3://{BUCKET}/half"
    with pytest.raises(OnlyIfError, match=rf"^--out {uri}: .*Input/output error"):
        publish(folder, uri, overwrite=False)
    assert "manifest.json" not in objects(s3, "half")  # whatever parts got there, no manifest
    assert (folder / "manifest.json").read_text() == "{}"  # the local folder is whole again
    with pytest.raises(OnlyIfError, match="no manifest.json there"):
        fetch(uri, "--data")


def test_sweep_data_cache_on_s3_reuses_a_published_build_and_rebuilds_one_without_manifest(
    s3, ray_cluster, tmp_path, monkeypatch
):
    cfg = validate_config(TaskConfig, TASK)
    cache = f"s3://{BUCKET}/cache"
    first_dir, first = ensure_dataset(cfg, cache)
    prefix = "cache/" + first["config_sha256"][:16]
    published = objects(s3, prefix)
    assert files(first_dir) == published and json.loads(published["manifest.json"]) == first
    # another node: an empty local cache; it downloads the build instead of generating again
    monkeypatch.setenv("ONLYIF_CACHE_DIR", str(tmp_path / "other_node"))
    other_dir, other = ensure_dataset(cfg, cache)
    assert other == first and files(other_dir) == published
    assert other_dir.is_relative_to(tmp_path / "other_node") and objects(s3, prefix) == published
    # a folder without manifest (a build that died while publishing) is not a result: it is built again
    # (on a third node with an empty cache: nothing there to reuse, so a manifest can only come from a new build)
    s3.delete_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")
    monkeypatch.setenv("ONLYIF_CACHE_DIR", str(tmp_path / "third_node"))
    rebuilt_dir, rebuilt = ensure_dataset(cfg, cache)
    after = objects(s3, prefix)
    assert "manifest.json" in after and rebuilt["splits"] == first["splits"]
    assert rebuilt_dir.is_relative_to(tmp_path / "third_node") and files(rebuilt_dir) == after
    assert after["train/part-00000.parquet"] == published["train/part-00000.parquet"]


def test_mix_to_s3_and_the_mixture_cache_have_the_bytes_of_a_local_build(s3, ray_cluster, tmp_path):
    src = tmp_path / "a.jsonl"
    words = ["ka", "lo", "mi", "ne", "po", "ru", "si", "ta"]
    src.write_text("".join(json.dumps({"prompt": f"question {i} about {w}", "response": f"answer {w}"}) + "\n"
                           for i, w in enumerate(words)))  # fmt: skip
    source = {"name": "a", "domain": "general", "path": str(src), "format": "prompt_response"}
    raw = base_config([source], 6, decontam={"eval_sets": []})
    cfg = validate_config(MixtureConfig, raw)
    build_mixture(cfg, tmp_path / "local", progress=False)
    mine = files(tmp_path / "local")
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(raw))
    uri = f"s3://{BUCKET}/mix"
    assert main(["mix", "--config", str(tmp_path / "mix.yaml"), "--out", uri, "--no-progress"]) == 0
    remote = objects(s3, "mix")
    assert set(remote) == set(mine) and "train/part-00000.parquet" in remote
    for name in set(mine) - {"manifest.json"}:
        assert remote[name] == mine[name], name
    manifest = json.loads(remote["manifest.json"])
    assert manifest["output"] == json.loads(mine["manifest.json"])["output"]
    # the sweep's cache: published under the config hash, the same data bytes
    path, cached = ensure_mixture(cfg, f"s3://{BUCKET}/mixcache")
    assert cached["output"] == manifest["output"]
    published = objects(s3, f"mixcache/{cfg.config_hash()[:16]}")
    assert (
        published["train/part-00000.parquet"]
        == mine["train/part-00000.parquet"]
        == (path / "train" / "part-00000.parquet").read_bytes()
    )
