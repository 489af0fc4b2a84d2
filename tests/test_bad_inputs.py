"""The bad-input table (docs/reliability.md): each bad input to a subcommand gives its documented exit code (2 for
usage/config, 1 for runtime), one line on stderr naming the field, file or row, no traceback, and nothing left
behind. Run in-process through ``onlyif.cli.main`` (the same code path as the console script)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from onlyif.cli import main, run_job
from tests._ports import free_port

pytestmark = pytest.mark.usefixtures("ray_cluster")  # cases that reach Ray find the session's cluster
REPO = Path(__file__).resolve().parents[1]
GEN_OK = "seed: 0\nalphabet_size: 4\ninput_length: 6\npattern_length: 2\ninstructions: 4\nbudget: 32\n"
GEN_OK += "test_seen: 8\ntest_unseen: 8\n"


def _write(root: Path, name: str, text: str | bytes) -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _gen(root: Path, extra: str = "", base: str = GEN_OK) -> list[str]:
    return ["generate", "--config", _write(root, "gen.yaml", base + extra), "--out", str(root / "out"), "--quiet"]


def _mix_config(root: Path, sources: str, extra: str = "", budget: int = 4) -> str:
    return _write(root, "mix.yaml", f"seed: 0\nbudget: {budget}\nsources:\n{sources}\n{extra}")


def _jsonl_source(root: Path, body: bytes, name: str = "a") -> str:
    path = _write(root, f"{name}.jsonl", body)
    return f"  - {{name: {name}, domain: d, path: {path}, format: prompt_response, fraction: 1.0}}"


def _empty_parquet(root: Path) -> str:
    path = root / "empty.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "response": pa.array([], pa.string())}), path)
    return str(path)


def _fake_model_dir(root: Path) -> str:
    _write(root, "model/config.json", json.dumps({"model_type": "gpt2"}))
    return str(root / "model")


def _train_config(root: Path, extra: str) -> str:
    return _write(root, "train.yaml", "model: {n_layer: 1, n_embd: 16, n_head: 2}\nepochs: 1\n" + extra)


def _dataset(root: Path) -> str:
    from tests._train_fixtures import make_synthetic_dataset

    return str(make_synthetic_dataset(root / "data", n_train=32, n_test=8))


# (id, argv builder, exit code, text the one-line error must contain)
CASES = [
    # --- generate: the config file and its values
    ("yaml-syntax", lambda r: _gen(r, "budget: [32\n"), 2, "gen.yaml"),
    ("yaml-tabs", lambda r: _gen(r, "\tbudget: 32\n", base=""), 2, "gen.yaml"),
    ("unknown-key", lambda r: _gen(r, "budgett: 32\n"), 2, "budgett: unknown key"),
    ("wrong-type", lambda r: _gen(r, "noop_share: lots\n"), 2, "noop_share"),
    ("zero-budget", lambda r: _gen(r, "", base=GEN_OK.replace("budget: 32", "budget: 0")), 2, "budget"),
    ("negative-budget", lambda r: _gen(r, "", base=GEN_OK.replace("budget: 32", "budget: -5")), 2, "budget"),
    ("I-over-budget", lambda r: _gen(r, "", base=GEN_OK.replace("instructions: 4", "instructions: 64")), 2, "budget"),
    ("noop-share-range", lambda r: _gen(r, "noop_share: 1.5\n"), 2, "noop_share"),
    ("alphabet-too-small", lambda r: _gen(r, "", base=GEN_OK.replace("alphabet_size: 4", "alphabet_size: 2").replace("instructions: 4", "instructions: 30")), 2, "instructions"),
    ("pattern-longer-than-input", lambda r: _gen(r, "", base=GEN_OK.replace("pattern_length: 2", "pattern_length: 9")), 2, "pattern_length"),
    ("impossible-unseen-split", lambda r: _gen(r, "test_unseen_instructions: 100000\n"), 2, "test_unseen"),
    ("config-missing", lambda r: ["generate", "--config", str(r / "nope.yaml"), "--out", str(r / "out")], 2, "nope.yaml"),
    ("set-without-equals", lambda r: [*_gen(r), "--set", "budget"], 2, "expected key=value"),
    ("set-unknown-key", lambda r: [*_gen(r), "--set", "bugdet=3"], 2, "--set bugdet=3: bugdet: unknown key"),
    ("set-bad-value", lambda r: [*_gen(r), "--set", "budget=-5"], 2, "--set budget=-5: budget:"),
    ("file-bad-value-beside-a-set", lambda r: [*_gen(r, "noop_share: 1.5\n"), "--set", "budget=32"], 2, "gen.yaml: noop_share:"),
    ("out-is-a-file", lambda r: [*_gen(r)[:-3], "--out", _write(r, "afile", "x"), "--quiet"], 1, "afile"),
    ("out-under-proc", lambda r: [*_gen(r)[:-3], "--out", "/proc/onlyif-x", "--quiet"], 1, "/proc/onlyif-x"),
    # --- mix: config and source files
    ("mix-duplicate-names", lambda r: ["mix", "--config", _mix_config(r, _jsonl_source(r, b"", "a") + "\n" + _jsonl_source(r, b"", "a")), "--out", str(r / "out")], 2, "a"),
    ("mix-fractions-not-1", lambda r: ["mix", "--config", _mix_config(r, _jsonl_source(r, b"").replace("fraction: 1.0", "fraction: 0.5")), "--out", str(r / "out")], 2, "fraction"),
    ("mix-missing-file", lambda r: ["mix", "--config", _mix_config(r, "  - {name: a, domain: d, path: /nonexistent/a.jsonl, format: prompt_response, fraction: 1.0}"), "--out", str(r / "out")], 2, "/nonexistent/a.jsonl"),
    ("mix-unknown-format", lambda r: ["mix", "--config", _mix_config(r, _jsonl_source(r, b"").replace("prompt_response", "tweets")), "--out", str(r / "out")], 2, "format"),
    ("mix-zero-budget", lambda r: ["mix", "--config", _mix_config(r, _jsonl_source(r, b'{"prompt": "p", "response": "r"}\n'), budget=0), "--out", str(r / "out")], 2, "budget"),
    ("mix-empty-source-file", lambda r: ["mix", "--config", _mix_config(r, _jsonl_source(r, b"")), "--out", str(r / "out")], 1, "sources[a]: the source has no rows"),
    ("mix-all-rows-binary", lambda r: ["mix", "--config", _mix_config(r, _jsonl_source(r, b"\xff\xfe\x00garbage\n" * 3)), "--out", str(r / "out")], 1, "sources[a]"),
    ("mix-wrong-columns", lambda r: ["mix", "--config", _mix_config(r, _jsonl_source(r, b'{"question": "p", "answer": "r"}\n' * 3)), "--out", str(r / "out")], 1, "sources[a]"),
    ("mix-hub-offline", lambda r: ["mix", "--config", _mix_config(r, "  - {name: h, domain: d, hf: some-org/unknown-id, format: alpaca, fraction: 1.0}"), "--out", str(r / "out")], 2, "some-org/unknown-id"),
    ("mix-more-than-available", lambda r: ["mix", "--config", _mix_config(r, _jsonl_source(r, b'{"prompt": "p", "response": "r"}\n').replace("fraction: 1.0", "count: 4")), "--out", str(r / "out")], 2, "a"),
    # --- diversity
    ("diversity-missing-data", lambda r: ["diversity", str(r / "nothing")], 1, "nothing"),
    ("diversity-corrupt-parquet", lambda r: ["diversity", _write(r, "bad.parquet", b"PAR1 this is not parquet")], 1, "bad.parquet"),
    ("diversity-empty-parquet", lambda r: ["diversity", _empty_parquet(r)], 1, "empty.parquet"),
    # --- train
    ("train-missing-data", lambda r: ["train", "--config", _train_config(r, ""), "--data", str(r / "nodata"), "--out", str(r / "run")], 1, "nodata"),
    ("train-fp16-on-cpu", lambda r: ["train", "--config", _train_config(r, "deepspeed: {fp16: true}\n"), "--data", str(r), "--out", str(r / "run")], 2, "fp16"),
    ("train-config-only-model", lambda r: ["train", "--config", _train_config(r, f"model: {{pretrained: {_fake_model_dir(r)}}}\n"), "--data", _dataset(r), "--out", str(r / "run")], 1, "no weights"),
    ("train-resume-not-a-run", lambda r: ["train", "--resume", str(r)], 1, "case"),
    ("train-more-workers-than-the-cluster", lambda r: ["train", "--config", _train_config(r, "scaling: {num_workers: 16}\n"), "--data", _dataset(r), "--out", str(r / "run")], 2, "can never have more"),
    # --- sweep / report / reproduce
    ("sweep-resume-not-an-experiment", lambda r: ["sweep", "--resume", str(r)], 1, "case"),
    ("sweep-all-points-invalid", lambda r: ["sweep", "--config", _write(r, "s.yaml", "name: s\ngrid: {instructions: [100], budget: [10]}\n"), "--out", str(r / "exp")], 2, "grid"),
    ("sweep-out-not-empty", lambda r: ["sweep", "--config", str(REPO / "jobs/configs/sweep_main.yaml"), "--out", str(Path(_write(r, "exp/x", "x")).parent)], 1, "not empty"),
    ("report-not-an-experiment", lambda r: ["report", str(r)], 1, "case"),
    ("reproduce-unknown-key", lambda r: ["reproduce", "--set", "grid.instruction=[1]", "--out", str(r / "exp")], 2, "instruction"),
    ("reproduce-resume-not-an-experiment", lambda r: ["reproduce", "--resume", str(r)], 1, "case"),
    # --- eval
    ("eval-code-unknown-benchmark", lambda r: ["eval", "code", "--benchmark", str(r / "nobench.jsonl"), "--canonical", "--out", str(r / "o")], 1, "nobench.jsonl"),
    ("eval-exact-match-missing-model", lambda r: ["eval", "exact-match", "--model", str(r / "nomodel"), "--data", str(r)], 1, "nomodel"),
    ("eval-code-config-only-model", lambda r: ["eval", "code", "--benchmark", "humaneval", "--model", _fake_model_dir(r), "--max-problems", "1", "--out", str(r / "o")], 1, "model"),
    ("eval-code-bad-k", lambda r: ["eval", "code", "--benchmark", "humaneval", "--canonical", "--k", "0", "--out", str(r / "o")], 2, "k"),
]  # fmt: skip

JOB_CASES = [
    ("job-without-smoke-test", "sources", ["--out", "x", "--smoke-test"], 2, "no smoke test"),
]


@pytest.mark.parametrize(("name", "argv", "code", "text"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_leaves_nothing(name, argv, code, text, tmp_path, capsys):
    root = tmp_path / "case"
    root.mkdir()
    args = argv(root)
    before = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == code, f"{name}: exit {rc}, stderr: {err[-2000:]}"
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, f"{name}: {err[-2000:]}"
    assert text in lines[0], f"{name}: {lines[0]!r} does not name {text!r}"
    after = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    assert after == before, f"{name}: left behind {sorted(map(str, after - before))}"


@pytest.mark.parametrize(("name", "job", "argv", "code", "text"), JOB_CASES, ids=[c[0] for c in JOB_CASES])
def test_bad_job_invocation(name, job, argv, code, text, capsys):
    assert run_job(job, argv) == code
    assert text in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["--debug", *_gen(tmp_path, "budgett: 32\n")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "budgett: unknown key" in err


def test_sweep_with_mlflow_unreachable_leaves_no_experiment_folder(tmp_path, capsys, monkeypatch):
    """The tracking server down when a sweep starts: one line, and the same command works once it is back (the
    --out folder is not left half-made, which a rerun would refuse as not empty)."""
    port = free_port()  # a port nothing listens on
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    out = tmp_path / "exp"
    argv = ["sweep", "--config", str(REPO / "jobs/configs/sweep_main.yaml"), "--out", str(out)]
    argv += ["--set", f"mlflow.tracking_uri=http://127.0.0.1:{port}"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MLflow" in err and "Traceback" not in err, err
    assert not out.exists()


def test_sweep_with_a_tracking_store_that_is_not_a_database(tmp_path, capsys, monkeypatch):
    """A new sweep's MLflow side is set up while Ray and Tune start: when it fails, nothing trains, the error is one
    line naming the store, and --out is as it was (an empty folder stays empty; a new one is removed, above)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"not a database")
    out = tmp_path / "exp"
    out.mkdir()
    argv = ["sweep", "--config", str(REPO / "jobs/configs/sweep_main.yaml"), "--out", str(out)]
    argv += ["--set", f"mlflow.tracking_uri=sqlite:///{store}"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"MLflow sqlite:///{store}: cannot start the sweep's runs (" in err and "not a database" in err, err
    assert store.read_bytes() == b"not a database"
    assert out.is_dir() and not any(out.iterdir())
