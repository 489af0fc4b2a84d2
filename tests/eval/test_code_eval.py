"""Code evaluation end to end with the real sandbox: HumanEval canonical / empty, pass@k, serial = parallel, MBPP and
EvalPlus files, sample files, bad input, MLflow, a model's samples."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onlyif.errors import ConfigError, OnlyIfError
from onlyif.eval.code import difftest
from onlyif.eval.code.benchmarks import load_benchmark
from onlyif.eval.code.evaluate import evaluate_code
from onlyif.eval.code.mbpp_plus import typed_inputs
from onlyif.eval.code.passk import mean_pass_at_k, pass_at_k
from onlyif.eval.code.problems import Sample
from onlyif.eval.code.programs import canonical_sample
from onlyif.eval.code.sandbox import Limits
from onlyif.eval.code.score import score_samples

ROOT = Path(__file__).resolve().parents[2]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", "onlyif.cli", "eval", "code", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


# --- pass@k -----------------------------------------------------------------------------------------------------


def test_pass_at_k_matches_hand_computed_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2)) == pytest.approx(0.7)
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 0, 5) == 0.0
    assert pass_at_k(5, 4, 2) == 1.0  # n - c < k: every draw of 2 holds a correct one
    assert pass_at_k(200, 13, 100) == pytest.approx(1 - math.comb(187, 100) / math.comb(200, 100))
    # averaged over problems, only for k every problem has samples for
    assert mean_pass_at_k([(5, 2), (3, 0)], ks=(1, 2, 5)) == {1: pytest.approx(0.2), 2: pytest.approx(0.35)}
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


# --- HumanEval: canonical 164/164, empty 0/164 ------------------------------------------------------------------


def test_humaneval_canonical_passes_all_164_through_the_cli(tmp_path):
    out = tmp_path / "canonical"
    done = cli("--benchmark", "humaneval", "--canonical", "--out", str(out), "--workers", "2")
    assert done.returncode == 0, done.stderr
    rows = read_jsonl(out / "results.jsonl")
    failed = [
        {k: r[k] for k in ("task_id", "error", "wall_s", "cpu_s", "attempts", "stderr")}
        for r in rows
        if not r["passed"]
    ]
    assert done.stdout.strip().splitlines()[-1] == "pass@1 = 1.0000", failed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_problems"] == 164 and summary["passed"] == 164
    assert summary["metrics"] == {"humaneval/pass@1": 1.0}
    assert summary["sandbox"]["fresh_process"] is True
    assert len(rows) == 164 and all(r["passed"] and r["error"] is None for r in rows)


def test_humaneval_empty_completions_score_zero(tmp_path):
    ids = [p.task_id for p in load_benchmark("humaneval")]
    samples = write_jsonl(tmp_path / "empty.jsonl", [{"task_id": t, "completion": ""} for t in ids])
    summary = evaluate_code("humaneval", samples_file=samples, out_dir=tmp_path / "out", workers=2)
    assert summary["passed"] == 0 and summary["metrics"]["humaneval/pass@1"] == 0.0
    assert sum(summary["errors"].values()) == 164


# --- serial and parallel execution agree -------------------------------------------------------------------------

MIXED = {
    0: ["    return False\n", "    while True:\n        pass\n"],  # wrong (assertion), timeout
    1: ["    return [\n", None],  # syntax error, canonical
    2: ["    return number % 1.0\n", "    return 1 / 0\n"],  # right, runtime error
    3: ["    return sum(operations) < 0\n", "    import sys\n    sys.exit(0)\n"],  # wrong, early exit
}


def test_serial_and_parallel_execution_give_identical_results():
    problems = load_benchmark("humaneval", max_problems=4)
    samples = {
        p.task_id: [canonical_sample(p) if c is None else Sample(p.task_id, completion=c) for c in MIXED[i]]
        for i, p in enumerate(problems)
    }
    limits = Limits(timeout_s=120.0, cpu_s=1.0)  # the loop hits the CPU limit, whatever the machine's load
    serial, _ = score_samples(problems, samples, limits, workers=1)
    parallel, _ = score_samples(problems, samples, limits, workers=2)
    outcome = [(s.task_id, s.index, s.base.passed, s.base.kind) for s in serial]
    assert outcome == [(s.task_id, s.index, s.base.passed, s.base.kind) for s in parallel]
    assert [kind for *_, kind in outcome] == [
        "assertion", "timeout", "syntax", None, None, "runtime", "assertion", "runtime",
    ]  # fmt: skip


# --- MBPP files ---------------------------------------------------------------------------------------------------

MBPP_ROWS = [
    {
        "task_id": 11,
        "text": "Write a python function to remove first and last occurrence of a given character from the string.",
        "code": "def remove_Occ(s,ch):\n    s = s.replace(ch, '', 1)\n    i = s.rfind(ch)\n"
        "    return s if i < 0 else s[:i] + s[i+1:]",
        "test_list": ['assert remove_Occ("hello","l") == "heo"', 'assert remove_Occ("abcda","a") == "bcd"'],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 12,
        "text": "Write a function to find the square root of a number using math.",
        "code": "def root(x):\n    return math.sqrt(x)",
        "test_list": ["assert root(16) == 4", "assert root(2.25) == 1.5"],
        "test_setup_code": "import math",
        "challenge_test_list": [],
    },
]


def test_mbpp_file_original_and_sanitized_fields(tmp_path):
    path = write_jsonl(tmp_path / "mbpp.jsonl", MBPP_ROWS)
    problems = load_benchmark(path)
    assert [p.task_id for p in problems] == ["11", "12"]
    assert problems[0].entry_point == "remove_Occ" and 'assert remove_Occ("hello","l")' in problems[0].prompt
    canonical = evaluate_code(path, canonical=True, out_dir=tmp_path / "c", workers=2)
    assert canonical["metrics"] == {"mbpp/pass@1": 1.0}
    wrong = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": 11, "solution": "def remove_Occ(s, ch):\n    return s.replace(ch, '', 1)"},
            {"task_id": "12", "solution": "def root(x):\n    return math.sqrt(x)"},
        ],
    )
    summary = evaluate_code(path, samples_file=wrong, out_dir=tmp_path / "w", workers=2)
    assert summary["metrics"] == {"mbpp/pass@1": 0.5} and summary["errors"] == {"assertion": 1}
    # sanitized MBPP: `prompt` instead of `text`, the tests' imports in `test_imports`
    sanitized = [{"task_id": 12, "prompt": MBPP_ROWS[1]["text"], "code": MBPP_ROWS[1]["code"],
                  "test_imports": ["import math"], "test_list": MBPP_ROWS[1]["test_list"]}]  # fmt: skip
    path = write_jsonl(tmp_path / "sanitized-mbpp.jsonl", sanitized)
    summary = evaluate_code(path, canonical=True, out_dir=tmp_path / "s", workers=1)
    assert summary["metrics"] == {"sanitized-mbpp/pass@1": 1.0}


# --- EvalPlus files -----------------------------------------------------------------------------------------------

PLUS_ROWS = [
    {
        "task_id": "HumanEval/900",
        "prompt": 'def magnitude_sum(a: int, b: int) -> int:\n    """Sum of the absolute values."""\n',
        "entry_point": "magnitude_sum",
        "canonical_solution": "    return abs(a) + abs(b)\n",
        "base_input": [[1, 2], [3, 4]],
        "plus_input": [[-1, 2], [0, -5], [7, 7]],
        "atol": 0,
    },
    {
        "task_id": "HumanEval/901",
        "prompt": 'def mean_pair(xs: list) -> tuple:\n    """The mean of xs and its length."""\n',
        "entry_point": "mean_pair",
        "canonical_solution": "    return (sum(xs) / len(xs), len(xs))\n",
        "base_input": [[[1.0, 2.0]], [[0.1, 0.2, 0.3]]],
        "plus_input": [[[1e-3] * 10], [[float(i) / 7 for i in range(30)]]],
        "atol": 1e-6,
    },
]
RIGHT = {"HumanEval/900": "    return abs(a) + abs(b)\n", "HumanEval/901": "    return (sum(xs) / len(xs), len(xs))\n"}
SUBTLE = {  # pass the base inputs, not the plus inputs
    "HumanEval/900": "    return a + b\n",
    "HumanEval/901": "    import math\n    return (math.fsum(xs) / len(xs), len(xs) if len(xs) < 5 else 0)\n",
}


def test_evalplus_file_scores_base_and_plus(tmp_path):
    path = write_jsonl(tmp_path / "humanevalplus.jsonl", PLUS_ROWS)
    canonical = evaluate_code(path, canonical=True, out_dir=tmp_path / "c", workers=2)
    assert canonical["metrics"] == {"humanevalplus/pass@1": 1.0, "humanevalplus/plus/pass@1": 1.0}
    rows = [{"task_id": t, "completion": c} for t in RIGHT for c in (RIGHT[t], SUBTLE[t])]
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    summary = evaluate_code(path, samples_file=samples, out_dir=tmp_path / "s", workers=2, ks=(1, 2))
    assert summary["metrics"] == {
        "humanevalplus/pass@1": 1.0,
        "humanevalplus/pass@2": 1.0,
        "humanevalplus/plus/pass@1": 0.5,
        "humanevalplus/plus/pass@2": 1.0,
    }
    results = read_jsonl(tmp_path / "s" / "results.jsonl")
    assert [(r["passed"], r["plus_passed"]) for r in results] == [(True, True), (True, False)] * 2
    assert results[1]["plus_error"] == "assertion" and "input #0" in results[1]["plus_stderr"]


def test_evalplus_comparisons_and_mbpp_plus_types():
    assert difftest.same(0.1 + 0.2, 0.3, [], 0, "", "f")  # floats: EvalPlus's default atol 1e-6
    assert not difftest.same(0.31, 0.3, [], 0, "", "f")
    assert not difftest.same(1, 1.0000001, [], 1e-6, "", "f")  # near but of another type
    assert difftest.same(1.0, -2.0, [[-2.0, 1.0, 1.0]], 1e-6, "humaneval", "find_zero")  # any root is right
    assert not difftest.same(2.0, -2.0, [[-2.0, 1.0, 1.0]], 1e-6, "humaneval", "find_zero")
    assert difftest.same([3, 1], [1, 3], [], 0, "mbpp", "similar_elements")  # compared as sets
    assert difftest.same("match", True, [], 0, "mbpp", "text_match_three")  # only "not None" counts
    value = {(1, 2): {3, frozenset({4})}, "x": [1.5, float("inf"), complex(1, 2), b"\x00"]}
    assert difftest.decode(json.loads(json.dumps(difftest.encode(value)))) == value
    assert typed_inputs("Mbpp/2", [[[3, 4], [5, 6]]]) == [[(3, 4), (5, 6)]]
    assert typed_inputs("HumanEval/2", [[[3, 4]]]) == [[[3, 4]]]


# --- sample files -------------------------------------------------------------------------------------------------


def test_samples_file_with_several_samples_per_task(tmp_path):
    problems = load_benchmark("humaneval", max_problems=3)
    right = {p.task_id: p.canonical_solution for p in problems}
    wrong = "    return None\n"
    rows = [
        {"task_id": "HumanEval/0", "completion": right["HumanEval/0"]},
        {"task_id": "HumanEval/0", "solution": problems[0].prompt + right["HumanEval/0"]},  # EvalPlus's field
        {"task_id": "HumanEval/1", "completion": wrong},
        {"task_id": "HumanEval/1", "completion": right["HumanEval/1"]},
        {"task_id": "HumanEval/2", "completion": wrong},
        {"task_id": "HumanEval/2", "completion": wrong},
        {"task_id": "HumanEval/7", "completion": wrong},  # a problem past --max-problems: skipped
    ]
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    summary = evaluate_code(
        "humaneval", samples_file=samples, out_dir=tmp_path / "out", max_problems=3, ks=(1, 2, 10), workers=2
    )
    assert summary["samples_per_task"] == 2 and summary["n_samples"] == 6
    assert summary["metrics"] == {"humaneval/pass@1": pytest.approx(0.5), "humaneval/pass@2": pytest.approx(2 / 3)}
    results = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert [(r["task_id"], r["sample"], r["passed"]) for r in results] == [
        ("HumanEval/0", 0, True), ("HumanEval/0", 1, True), ("HumanEval/1", 0, False),
        ("HumanEval/1", 1, True), ("HumanEval/2", 0, False), ("HumanEval/2", 1, False),
    ]  # fmt: skip
    assert "solution" in results[1] and results[2]["error"] == "assertion" and "AssertionError" in results[2]["stderr"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"task_id": "HumanEval/9999", "completion": ""}, "bad.jsonl:2: unknown task_id 'HumanEval/9999'"),
        ({"task_id": "HumanEval/1"}, "bad.jsonl:2: missing field 'completion' (or 'solution')"),
        ({"completion": "x"}, "bad.jsonl:2: missing field 'task_id'"),
        ({"task_id": "HumanEval/1", "completion": 3}, "bad.jsonl:2: field 'completion' must be a string"),
    ],
)
def test_bad_sample_files_fail_in_one_line_naming_the_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"task_id": "HumanEval/0", "completion": ""}, line])
    with pytest.raises(OnlyIfError) as err:
        evaluate_code("humaneval", samples_file=path, out_dir=tmp_path / "out", max_problems=2)
    assert str(err.value).startswith(f"{tmp_path}/{message}") and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bad_benchmark_files_and_flags(tmp_path):
    bad = write_jsonl(
        tmp_path / "plus.jsonl", [PLUS_ROWS[0], {k: v for k, v in PLUS_ROWS[1].items() if k != "prompt"}]
    )
    with pytest.raises(OnlyIfError, match=r"plus.jsonl:2: missing field 'prompt'$"):
        load_benchmark(bad)
    bad.write_text(json.dumps(PLUS_ROWS[0]) + "\n{not json\n")
    with pytest.raises(OnlyIfError, match=r"plus.jsonl:2: not valid JSON"):
        load_benchmark(bad)
    with pytest.raises(ConfigError, match="exactly one source"):
        evaluate_code("humaneval", out_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"every k in \[10\] exceeds the samples per task \(1\)"):
        evaluate_code("humaneval", canonical=True, out_dir=tmp_path / "o", max_problems=1, ks=(10,))
    # the command: one line and exit 2 for bad flags, exit 1 and the file's line for bad data
    for flags, expected in [
        (["--k", "0,1"], "--k: expected comma-separated positive integers"),
        (["--workers", "two"], "argument --workers: invalid int value: 'two'"),
        (["--temperature", "0.5"], "--temperature: applies only with --model"),
    ]:
        done = cli("--benchmark", "humaneval", "--canonical", "--out", str(tmp_path / "o"), *flags)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr
    done = cli("--benchmark", str(bad), "--canonical", "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "plus.jsonl:2: not valid JSON" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- MLflow -------------------------------------------------------------------------------------------------------


def test_mlflow_run_with_metrics_and_artifacts(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = evaluate_code("humaneval", canonical=True, out_dir=tmp_path / "out", max_problems=3, mlflow_uri=uri)
    run = MlflowClient(uri).get_run(summary["mlflow"]["run_id"])
    assert run.data.metrics == {"humaneval/pass_at_1": 1.0}
    assert run.data.params["benchmark"] == "humaneval" and run.data.params["n_problems"] == "3"
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}
    assert artifacts == {"summary.json", "results.jsonl"}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["mlflow"]["run_id"] == run.info.run_id


# --- samples from a model -----------------------------------------------------------------------------------------


def test_model_samples_are_generated_scored_and_kept(tmp_path):
    from onlyif.eval.code.generate import GenerationConfig
    from tests._code_fixtures import tiny_code_model

    model = tiny_code_model(tmp_path / "model")
    gen = GenerationConfig(samples_per_task=2, temperature=0.8, max_new_tokens=8, seed=1)
    summary = evaluate_code("humaneval", model=model, gen=gen, out_dir=tmp_path / "out", max_problems=2, ks=(1, 2))
    assert summary["source"] == "model" and summary["n_samples"] == 4 and summary["generation"]["temperature"] == 0.8
    assert set(summary["metrics"]) == {"humaneval/pass@1", "humaneval/pass@2"}
    kept = read_jsonl(tmp_path / "out" / "samples.jsonl")
    assert [r["task_id"] for r in kept] == ["HumanEval/0"] * 2 + ["HumanEval/1"] * 2
    # the kept samples score the same when given back as a file
    again = evaluate_code(
        "humaneval", samples_file=tmp_path / "out" / "samples.jsonl", out_dir=tmp_path / "again", max_problems=2,
        ks=(1, 2),
    )  # fmt: skip
    assert again["metrics"] == summary["metrics"]
