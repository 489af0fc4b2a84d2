"""Fault injection (docs/reliability.md, "Faults injected"): commands SIGKILLed mid-write, a full disk and a
read-only file system, with real processes, real Ray and real file systems (tmpfs mounts).

The SIGKILLed commands run as subprocesses (``tests/_kill_at.py``) that join the session's Ray cluster, so no test
starts a Ray of its own; each is killed at a chosen write inside its temp folder, so the kill is deterministic.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onlyif.cli import main

REPO = Path(__file__).resolve().parents[1]
KILL_AT = str(REPO / "tests" / "_kill_at.py")
GEN = "seed: 0\nalphabet_size: 4\ninput_length: 6\npattern_length: 2\ninstructions: 4\nbudget: 64\n"
GEN += "test_seen: 16\ntest_unseen: 16\n"
SUBPROCESS_TIMEOUT_S = 180  # a bound on every wait; a run takes a few seconds


@pytest.fixture(scope="module")
def ray_env(ray_cluster):
    """Environment for a subprocess that joins the session's Ray cluster."""
    return {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}


def kill_at(env: dict, event: str, regex: str, *argv: str) -> subprocess.CompletedProcess:
    """Run ``onlyif ARGV`` in its own process group and SIGKILL the group at ``event`` on a path matching ``regex``."""
    return subprocess.run(
        [sys.executable, KILL_AT, event, regex, "--", *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        start_new_session=True,
    )


def in_tmp(out: Path, inner: str = "") -> str:
    """A regex for ``out``'s temp folder (``.NAME.tmp-*`` beside it), or for ``inner`` inside it."""
    folder = re.escape(str(out.parent)) + "/" + re.escape(f".{out.name}.tmp-") + "[^/]+"
    return folder + ("/" + inner if inner else "")


def assert_killed(proc: subprocess.CompletedProcess, out: Path) -> Path:
    """The run died of SIGKILL, ``out`` never appeared, and exactly one stale temp folder is left: return it."""
    assert proc.returncode == -signal.SIGKILL, f"not killed: rc {proc.returncode}, stderr {proc.stderr[-2000:]}"
    assert not out.exists()
    stale = list(out.parent.glob(f".{out.name}.tmp-*"))
    assert len(stale) == 1, stale
    return stale[0]


def test_generate_sigkilled_mid_write_leaves_no_output_and_a_rerun_cleans_up(ray_env, tmp_path, capsys):
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(GEN)
    out = tmp_path / "data"
    argv = ["generate", "--config", str(cfg), "--out", str(out), "--quiet"]
    # killed as the driver starts its manifest: every part file is written, the manifest is not
    proc = kill_at(ray_env, "open", in_tmp(out, r"\.manifest\.json\.tmp-[^/]+"), *argv)
    stale = assert_killed(proc, out)
    assert (stale / "train" / "part-00000.parquet").is_file() and not (stale / "manifest.json").exists()

    assert main(argv) == 0  # the same --out again
    manifest = json.loads((out / "manifest.json").read_text())
    from onlyif.data.generate import split_digest

    assert manifest["splits"]["train"]["rows"] == 64
    assert all(split_digest(out / name) == s["digest"] for name, s in manifest["splits"].items())
    assert not stale.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data", "gen.yaml"]


def _mix_argv(root: Path, out: Path) -> list[str]:
    """A one-source mixture of 8 of 12 made-up rows, the cheapest real ``onlyif mix``."""
    rows = "".join(
        json.dumps({"prompt": f"question {i} " * 3, "response": f"answer {i} " * 5}) + "\n" for i in range(12)
    )
    (root / "rows.jsonl").write_text(rows)
    source = {"name": "a", "domain": "d", "path": str(root / "rows.jsonl"), "format": "prompt_response"}
    cfg = {
        "seed": 0,
        "budget": 8,
        "sources": [{**source, "fraction": 1.0}],
        "num_blocks": 1,
        "dedup": {"exact": False, "near": False},
        "embed": {"model": "hashing", "dim": 64, "actors": 1},
        "diversity": {"enabled": False},
    }
    (root / "mix.yaml").write_text(yaml.safe_dump(cfg))
    return ["mix", "--config", str(root / "mix.yaml"), "--out", str(out), "--no-progress"]


def test_mix_sigkilled_before_its_rename_leaves_no_output(ray_env, tmp_path):
    out = tmp_path / "mix"
    argv = _mix_argv(tmp_path, out)
    # killed at the rename that would publish a complete mixture: the temp folder holds everything, manifest too
    stale = assert_killed(kill_at(ray_env, "os.rename", in_tmp(out), *argv), out)
    killed_manifest = json.loads((stale / "manifest.json").read_text())

    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 8 and manifest["output"]["sha256"] == killed_manifest["output"]["sha256"]
    assert not stale.exists() and not list(tmp_path.glob(".mix.*"))


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory):
    """A tiny synthetic dataset and a random-weight GPT-2 with the character codec."""
    import torch

    from onlyif.lm.codec import CharCodec, save_codec
    from onlyif.train.config import ModelConfig
    from onlyif.train.model import build_model
    from tests._train_fixtures import make_synthetic_dataset

    root = tmp_path_factory.mktemp("eval-inputs")
    data = make_synthetic_dataset(root / "data", n_train=8, n_test=8)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, n_embd=16, n_head=2, n_positions=32))
    model.save_pretrained(root / "model")
    save_codec(CharCodec(), root / "model")
    return data, root / "model"


def _eval_argv(eval_inputs, out: Path) -> list[str]:
    data, model = eval_inputs
    splits = ["--split", "test_seen", "--split", "test_unseen"]
    return ["eval", "exact-match", "--model", str(model), "--data", str(data), *splits, "--out", str(out)]


def test_eval_sigkilled_mid_write_leaves_no_output(eval_inputs, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = _eval_argv(eval_inputs, out)
    # killed as the second split's summary is written: the first split's files are already there
    proc = kill_at(dict(os.environ), "open", in_tmp(out, r"\.test_unseen\.json\.tmp-[^/]+"), *argv)
    stale = assert_killed(proc, out)
    assert (stale / "test_seen.json").is_file()

    assert main(argv) == 0
    assert json.loads((out / "test_unseen.json").read_text())["n"] == 8
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}{suffix}" for s in ("test_seen", "test_unseen") for suffix in (".json", "_failures.jsonl")
    )
    assert not stale.exists()


def test_stale_temp_folders_only_of_dead_local_processes_are_removed(tmp_path):
    import socket

    from onlyif.io import atomic_dir

    host = socket.gethostname()
    dead = _dead_pid()
    names = {
        "dead": f".out.tmp-{host}-{dead}-0000aaaa",
        "dead-old": f".out.old-{host}-{dead}-0000bbbb",
        "alive": f".out.tmp-{host}-{os.getpid()}-0000cccc",  # this test: a run still writing
        "other-host": f".out.tmp-elsewhere-{dead}-0000dddd",  # its PID means nothing here
        "no-owner": ".out.tmp-0000eeee",  # the name before owners were recorded
        "other-name": f".outx.tmp-{host}-{dead}-0000ffff",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "part").write_text("x")
    kept = {names[k] for k in ("alive", "other-host", "no-owner", "other-name")}
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("y")
    # with no output yet, a dead run's .old- folder is the previous output (killed between its two renames): kept
    assert {p.name for p in tmp_path.iterdir()} == {"out", names["dead-old"]} | kept
    with atomic_dir(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "f").write_text("z")
    assert {p.name for p in tmp_path.iterdir()} == {"out"} | kept
    assert (tmp_path / "out" / "f").read_text() == "z"


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- a full disk and a read-only file system: real tmpfs mounts made by the test (root in the container)


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs: ``mount(name, options)`` returns its path; all are unmounted afterwards."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip()})")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=True)


def full_disk(mount) -> Path:
    """A 64 KiB tmpfs filled to the last byte by one file; returns it."""
    disk = mount("full", "size=64k")
    with pytest.raises(OSError, match="No space left"), open(disk / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    return disk


def _one_line(capsys) -> str:
    """stderr's only line besides progress bars (transformers draws one as it loads a model)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not re.search(r"\| *\d+/\d+ \[", line)]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("command", ["generate", "mix", "eval"])
def test_full_disk_is_one_line_and_leaves_nothing(command, tmpfs, eval_inputs, tmp_path, capsys):
    disk = full_disk(tmpfs)
    out = disk / "out"
    if command == "generate":
        (tmp_path / "gen.yaml").write_text(GEN)
        argv = ["generate", "--config", str(tmp_path / "gen.yaml"), "--out", str(out), "--quiet"]
    elif command == "mix":
        argv = _mix_argv(tmp_path, out)
    else:
        argv = _eval_argv(eval_inputs, out)
    assert main(argv) == 1
    err = _one_line(capsys)
    assert err.startswith(f"onlyif {command.split()[0]}: error: ") and "No space left on device" in err, err
    assert str(out) in err, err  # names --out (or the file in its temp folder that could not be written)
    assert [p.name for p in disk.iterdir()] == ["filler"]


@pytest.mark.usefixtures("ray_cluster")
def test_read_only_output_is_one_line_before_any_work(tmpfs, eval_inputs, tmp_path, capsys):
    ro = tmpfs("ro", "ro,size=64k")
    (tmp_path / "gen.yaml").write_text(GEN)
    for argv in (
        ["generate", "--config", str(tmp_path / "gen.yaml"), "--out", str(ro / "data"), "--quiet"],
        _eval_argv(eval_inputs, ro / "ev"),
    ):
        assert main(argv) == 1
        err = _one_line(capsys)
        assert "Read-only file system" in err and str(ro) in err, err
    assert not any(ro.iterdir())


SMALL_STORE_MIX = """
import sys

import ray

ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False)
from onlyif.cli import main

code = main(sys.argv[1:])
from ray._private.internal_api import memory_summary

print(memory_summary(ray.get_runtime_context().gcs_address, stats_only=True))
sys.exit(code)
"""


@pytest.mark.slow
def test_mix_with_an_object_store_smaller_than_its_data_spills_and_builds_the_same_bytes(ray_cluster, tmp_path):
    """``onlyif mix`` of a ~100 MiB source in its own Ray with an 80 MiB object store (Ray's minimum is ~75 MiB)
    spills to disk instead of failing, and writes the same files as a build on the session's Ray (default store)."""
    import hashlib

    import numpy as np

    rng = np.random.default_rng(0)
    rows, width = 1400, 72_000  # ~100 MiB of jsonl: more than the store holds
    letters = rng.integers(97, 123, size=(rows, width), dtype=np.uint8)
    letters[:, ::7] = 32  # words
    with open(tmp_path / "big.jsonl", "w") as f:
        for i in range(rows):
            response = letters[i].tobytes().decode()
            f.write(json.dumps({"prompt": f"question {i}: {response[:40]}", "response": response}) + "\n")
    assert (tmp_path / "big.jsonl").stat().st_size > 95 * 2**20
    source = {"name": "big", "domain": "general", "path": str(tmp_path / "big.jsonl"), "format": "prompt_response"}
    config = {
        "seed": 0,
        "budget": 1000,
        "sources": [source],
        "num_blocks": 8,
        "dedup": {"exact": True, "near": False},
        "diversity": {"enabled": False},
    }
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(config))

    def argv(out: str) -> list[str]:
        return ["mix", "--config", str(tmp_path / "mix.yaml"), "--out", str(tmp_path / out), "--no-progress"]

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    small = subprocess.run(
        [sys.executable, "-c", SMALL_STORE_MIX, *argv("small")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert small.returncode == 0, small.stdout[-3000:] + small.stderr[-3000:]
    spilled = re.search(r"Spilled (\d+) MiB, (\d+) objects", small.stdout)
    assert spilled and int(spilled[1]) > 0, small.stdout[-3000:]
    # the text moves once after the parallel pass (late materialization): 330 MiB spilled here, 1 100 MiB when
    # every step carried the text
    assert int(spilled[1]) < 600, small.stdout[-3000:]

    assert main(argv("normal")) == 0  # the session's Ray, default object store

    def files(out: str) -> dict[str, str]:
        root = tmp_path / out
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"
        }

    assert files("small") == files("normal") and len(files("normal")) >= 2
    manifests = [json.loads((tmp_path / out / "manifest.json").read_text()) for out in ("small", "normal")]
    assert manifests[0]["output"] == manifests[1]["output"] and manifests[0]["rows"] == 1000


STAGE = """import sys, time
from onlyif.io import staging_dir
with staging_dir("onlyif-ckpt") as d:
    print(d, flush=True)
    time.sleep(120)
"""


def test_a_checkpoint_staging_folder_a_killed_worker_left_is_removed_by_the_next_checkpoint(tmp_path, monkeypatch):
    """A training worker writes each checkpoint to a staging folder in the node's temp dir before Ray Train copies it
    to the run's storage; a worker SIGKILLed meanwhile (a failure the run recovers from) left it there, a full
    checkpoint each time. The next checkpoint on the node removes such folders — never one of a live process."""
    import tempfile

    from onlyif.io import staging_dir

    env = dict(os.environ, TMPDIR=str(tmp_path))
    workers = [
        subprocess.Popen([sys.executable, "-c", STAGE], env=env, stdout=subprocess.PIPE, text=True) for _ in "ab"
    ]
    killed, live = workers
    try:
        orphan, busy = (Path(w.stdout.readline().strip()) for w in workers)
        assert orphan.parent == busy.parent == tmp_path and orphan.is_dir() and busy.is_dir()
        killed.kill()
        killed.wait(timeout=SUBPROCESS_TIMEOUT_S)
        assert orphan.is_dir()  # SIGKILL: no clean-up ran
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        with staging_dir("onlyif-ckpt") as mine:
            assert mine.is_dir() and not orphan.exists() and busy.is_dir()
        assert not mine.exists() and busy.is_dir()
    finally:
        for w in workers:
            w.kill()
            w.wait(timeout=SUBPROCESS_TIMEOUT_S)
