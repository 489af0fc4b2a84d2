"""Sweeps over real-data mixtures: grid expansion (pure) and a 2-point grid end to end — each trial builds its
point's mixture (cached by config hash: a point differing only in training reuses the build), trains a tiny HF model
on it, evaluates on held-out sets written by ``onlyif mix``, and logs the mixture's counts and diversity to MLflow;
the report ranks the points."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from onlyif.config import validate_config
from onlyif.errors import ConfigError
from onlyif.sweep.config import SweepConfig
from onlyif.sweep.grid import expand_grid

SOURCES = [
    {"name": "code", "domain": "code", "path": "src/code.jsonl", "format": "prompt_response", "fraction": 0.5},
    {
        "name": "general",
        "domain": "general",
        "path": "src/general.jsonl",
        "format": "prompt_response",
        "fraction": 0.5,
    },
]


def _mixture(**extra) -> dict:
    return {
        "budget": 48,
        "sources": json.loads(json.dumps(SOURCES)),
        "embed": {"model": "hashing", "actors": 1},
        "diversity": {"sample": 32, "clusters": 4},
        "num_blocks": 2,
        **extra,
    }


def _cfg(grid: dict, **extra) -> SweepConfig:
    return validate_config(
        SweepConfig,
        {"name": "mix", "mixture": _mixture(), "train": {"eval": {"splits": ["test_code"]}}, "grid": grid, **extra},
    )


def test_fraction_axis_sets_shares_at_fixed_budget():
    cfg = _cfg({"axes": {"mixture.fractions": [{"code": 1.0, "general": 0.0}, {"code": 0.5, "general": 0.5}]}})
    points = expand_grid(cfg)
    assert [p.id for p in points] == ["fractions=code:1/general:0,seed=0", "fractions=code:0.5/general:0.5,seed=0"]
    first = points[0]
    assert first.skip_reason is None and first.task == {}
    assert [s["fraction"] for s in first.mixture["sources"]] == [1.0, 0.0]
    assert first.labels["share.code"] == 1.0 and first.labels["share.general"] == 0.0 and first.labels["budget"] == 48
    assert cfg.report.metric == "test_code/loss"  # a mixture sweep's default metric: loss on the first eval split


def test_budget_seeds_counts_and_per_source_fields():
    cfg = _cfg(
        {
            "budget": [40, 80],
            "seeds": [3],
            "axes": {"mixture.sources.code.selection": ["random", "kcenter"], "mixture.dedup.near": [False]},
        }
    )
    points = expand_grid(cfg)
    assert len(points) == 4
    p = points[-1]
    assert p.mixture["budget"] == 80 and p.mixture["seed"] == 3 and p.train["seed"] == 3
    assert p.mixture["sources"][0]["selection"] == "kcenter" and p.mixture["sources"][1]["selection"] == "random"
    assert p.mixture["dedup"]["near"] is False
    counts = expand_grid(_cfg({"axes": {"mixture.counts": [{"code": 30, "general": 10}]}}))[0]
    assert [s.get("count") for s in counts.mixture["sources"]] == [30, 10]
    assert all(s.get("fraction") is None for s in counts.mixture["sources"])
    assert counts.labels["share.code"] == 0.75


def test_invalid_mixture_points_are_skipped_with_the_reason():
    points = expand_grid(
        _cfg({"axes": {"mixture.fractions": [{"code": 0.7, "general": 0.7}, {"code": 1, "general": 0}]}})
    )
    assert "fractions must sum to 1" in points[0].skip_reason and points[1].skip_reason is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"task": {"instructions": 4}}, "task: a mixture sweep trains on the mixture"),
        ({"grid": {"instructions": [2, 4]}}, "grid.instructions: a synthetic-task axis"),
        ({"grid": {"axes": {"task.noop_share": [0.1]}}}, "task.noop_share is a synthetic-task field"),
        ({"grid": {"axes": {"mixture.budget": [10]}}}, "mixture.budget is a first-class grid field"),
        ({"grid": {"axes": {"mixture.fractions": [[0.5, 0.5]]}}}, "maps source names to numbers"),
        ({"mixture": None, "grid": {"axes": {"mixture.seed": [1]}}}, "first-class grid field"),
        ({"train": {"eval": {"splits": []}}}, "train.eval.splits: a mixture sweep compares its mixtures"),
        ({"mixture": None, "grid": {"axes": {"mixture.dedup.near": [True]}}}, "needs a base mixture"),
    ],
)
def test_bad_mixture_sweep_configs_fail_with_one_line(data, message):
    base = {"name": "mix", "mixture": _mixture()}
    with pytest.raises(ConfigError, match=message):
        validate_config(SweepConfig, base | data)


def test_unknown_source_in_an_axis_is_refused():
    with pytest.raises(ConfigError, match="names source 'web', not in the mixture"):
        expand_grid(_cfg({"axes": {"mixture.sources.web.selection": ["random"]}}))


def test_relative_paths_become_absolute(tmp_path):
    cfg = _cfg({}, eval_data=["held"])
    cfg = validate_config(SweepConfig, cfg.to_dict() | {"train": {"model": {"pretrained": "llama"}}})
    fixed = cfg.with_absolute_paths(tmp_path)
    assert fixed.mixture["sources"][0]["path"] == str(tmp_path / "src/code.jsonl")
    assert fixed.eval_data == [str(tmp_path / "held")]
    assert fixed.train["model"]["pretrained"] == str(tmp_path / "llama")
    assert fixed.mixture["embed"]["model"] == "hashing"


def test_inputs_every_trial_needs_are_checked_before_anything_starts(tmp_path, monkeypatch):
    from onlyif.errors import OnlyIfError
    from onlyif.sweep.run import run_sweep
    from tests._train_fixtures import tiny_hf_model

    monkeypatch.chdir(tmp_path)
    _write_domain(tmp_path / "src/code.jsonl", "abc", 4, 0, sorted)
    _write_domain(tmp_path / "src/general.jsonl", "xyz", 4, 1, sorted)
    (tmp_path / "held" / "test_code").mkdir(parents=True)
    tiny_hf_model(tmp_path / "llama")
    good = {"train": {"model": {"pretrained": "llama"}, "eval": {"splits": ["test_code"]}}, "eval_data": ["held"]}
    cases = [
        ({**good, "train": {"model": {"pretrained": "absent"}}}, OnlyIfError, "model .*absent: directory not found"),
        ({**good, "eval_data": []}, OnlyIfError, "eval_data: none of the eval splits \\['test_code'\\] is present"),
        ({**good, "eval_data": ["nowhere"]}, OnlyIfError, "--eval-data .*nowhere: dataset directory not found"),
    ]
    for extra, error, message in cases:
        cfg = validate_config(SweepConfig, {"name": "mix", "mixture": _mixture()} | extra)
        with pytest.raises(error, match=message):
            run_sweep(cfg, tmp_path / "exp")
    missing = _mixture()
    missing["sources"][1]["path"] = "src/gone.jsonl"
    with pytest.raises(ConfigError, match="sources\\[general\\].path: file not found: .*gone.jsonl"):
        run_sweep(validate_config(SweepConfig, {"name": "mix", "mixture": missing} | good), tmp_path / "exp")
    assert not (tmp_path / "exp").exists()  # nothing written for a sweep that cannot run


def test_comparison_ranks_points_and_reads_a_trend():
    import pandas as pd

    from onlyif.report.analysis import summarize
    from onlyif.report.compare import compare, varying

    rows = [
        {"budget": 48, "share.code": share, "seed": seed, "test_code/loss": loss + 0.01 * seed}
        for share, loss in ((0.2, 3.0), (0.5, 2.5), (1.0, 2.0))
        for seed in (0, 1)
    ]
    df = pd.DataFrame(rows)
    summary = summarize(df, ["test_code/loss"])
    result = compare(summary, "test_code/loss", varying(df))
    assert [p["setting"]["share.code"] for p in result.points] == [1.0, 0.5, 0.2]
    assert result.conclusion[0] == "test_code/loss: lowest at share.code=1.0 (2.0050)."
    assert result.conclusion[1] == "Its lead over the runner-up (share.code=0.5, 2.5050) is 0.5000."
    assert "lead exceeds twice the seed-to-seed std" in result.conclusion[3]
    assert "falls monotonically as share.code goes from 0.2 to 1" in result.conclusion[4]
    flipped = compare(
        summarize(df.assign(**{"test_code/exact_match": -df["test_code/loss"]}), ["test_code/exact_match"]),
        "test_code/exact_match",
        varying(df),
    )
    assert flipped.points[0]["setting"]["share.code"] == 1.0 and "highest" in flipped.conclusion[0]
    budgets = df.assign(budget=[40, 40, 80, 80, 120, 120])  # an integer factor: report.json must serialize it
    ranked = compare(summarize(budgets, ["test_code/loss"]), "test_code/loss", varying(budgets))
    assert json.loads(json.dumps(ranked.points))[0]["setting"]["budget"] == 120
    assert "budget=120," in ranked.conclusion[0]  # printed as the integer it is


def _write_domain(path: Path, letters: str, n: int, seed: int, transform) -> None:
    """``n`` prompt/response rows over single-letter words (the tiny test tokenizer knows each letter)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(letters) for _ in range(10)]
        rows.append({"prompt": " ".join(words), "response": " ".join(transform(words))})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_mixture_sweep_end_to_end(ray_cluster, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from onlyif.cli import main
    from onlyif.data.mixture import build_mixture
    from onlyif.data.mixture_config import MixtureConfig
    from tests._train_fixtures import tiny_hf_model

    monkeypatch.chdir(tmp_path)  # the config's relative paths must reach trials running in their own folders
    _write_domain(tmp_path / "src/code.jsonl", "abcdefghijklm", 120, 0, lambda w: w[::-1])
    _write_domain(tmp_path / "src/general.jsonl", "nopqrstuvwxyz", 120, 1, sorted)
    _write_domain(tmp_path / "src/code_heldout.jsonl", "abcdefghijklm", 40, 2, lambda w: w[::-1])
    held = MixtureConfig.model_validate(
        _mixture(
            budget=16,
            output_split="test_code",
            sources=[
                {
                    "name": "code_heldout",
                    "domain": "code",
                    "path": str(tmp_path / "src/code_heldout.jsonl"),
                    "format": "prompt_response",
                }
            ],
        )
    )
    build_mixture(held, tmp_path / "heldout", progress=False)
    tiny_hf_model(tmp_path / "llama")
    problems = [  # a HumanEval-format file whose prompts fit the tiny model's 64 positions
        {
            "task_id": f"Tiny/{i}",
            "prompt": f"def {name}(a, b):\n",
            "canonical_solution": f"    return a {op} b\n",
            "test": f"def check(candidate):\n    assert candidate(6, 3) == {value}\n",
            "entry_point": name,
        }
        for i, (name, op, value) in enumerate((("add", "+", 9), ("sub", "-", 3), ("mul", "*", 18)))
    ]
    (tmp_path / "tiny_code.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    config = {
        "name": "mixtiny",
        "mixture": _mixture(),
        "eval_data": ["heldout"],
        "train": {
            "model": {"pretrained": "llama"},
            "epochs": 1,
            "batch_size": 16,
            "scaling": {"num_workers": 1, "threads_per_worker": 1},
            "eval": {"splits": ["test_code"], "max_examples": 16},
            "checkpoint": {"keep": 1},
        },
        "evaluate": {"code": {"benchmark": "tiny_code.jsonl", "generation": {"max_new_tokens": 8}}},
        "tune": {"max_concurrent_trials": 2},
        # two trials, run at once: one per mixture (the fewest that still compare mixtures)
        "grid": {"axes": {"mixture.fractions": [{"code": 1.0, "general": 0.0}, {"code": 0.5, "general": 0.5}]}},
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    assert main(["sweep", "--config", "sweep.yaml", "--out", "exp"]) == 0

    exp = tmp_path / "exp"
    builds = sorted(p for p in (exp / "data").iterdir() if p.is_dir())
    assert len(builds) == 2  # one build per mixture
    manifests = [json.loads((b / "manifest.json").read_text()) for b in builds]
    assert sorted(m["domains"].get("general", 0) for m in manifests) == [0, 24]
    assert all(m["rows"] == 48 for m in manifests)
    # a point of the same sweep that differs only in training (an lr axis) gets its data from the trial's own data
    # step (onlyif.sweep.trainable._dataset) out of the cached build, without building again
    from onlyif.sweep.trainable import _dataset

    lr_axis = config | {"grid": {"axes": config["grid"]["axes"] | {"train.optim.lr": [0.001]}}}
    point = expand_grid(validate_config(SweepConfig, lr_axis).with_absolute_paths(tmp_path))[1]
    assert point.train["optim"]["lr"] == 0.001
    stamps = {b: (b / "manifest.json").stat().st_mtime_ns for b in builds}
    data_dir, manifest, data_metrics = _dataset(point.to_dict(), str(exp / "data"))
    assert data_dir in builds and manifest == manifests[builds.index(data_dir)]
    assert manifest["domains"].get("general", 0) == 24 and data_metrics["mixture.rows"] == 48.0
    assert sorted(p for p in (exp / "data").iterdir() if p.is_dir()) == builds
    assert {b: (b / "manifest.json").stat().st_mtime_ns for b in builds} == stamps

    report = json.loads((exp / "report" / "report.json").read_text())
    # ranked by the sandboxed code evaluation of each trial's model (a random model: pass@1 is 0, the pipeline real)
    assert report["mode"] == "comparison" and report["metric"] == "tiny_code/pass@1"
    assert len(report["points"]) == 2 and all(p["mean"] == 0.0 for p in report["points"])
    assert report["conclusion"][0].startswith("tiny_code/pass@1: highest at ")
    assert (exp / "report" / "plots" / "points.png").stat().st_size > 0
    md = (exp / "report" / "report.md").read_text()
    assert "share.code" in md and "test_code/loss" in md  # the held-out loss still in the table
    for trial in (exp / "trials").iterdir():
        summary = json.loads((trial / "evaluate" / "code" / "summary.json").read_text())
        assert summary["n_problems"] == 3 and summary["metrics"] == {"tiny_code/pass@1": 0.0}
        assert len((trial / "evaluate" / "code" / "results.jsonl").read_text().splitlines()) == 3

    state = json.loads((exp / "state.json").read_text())
    client = MlflowClient(state["tracking_uri"])
    from onlyif.mlflow_names import child_runs

    runs = child_runs(state["tracking_uri"], state["parent_run_id"])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    run = runs[0]
    assert run.data.params["mixture.budget"] == "48" and "grid.share.code" in run.data.params
    assert run.data.metrics["mixture.rows"] == 48.0 and "diversity.overall.vendi" in run.data.metrics
    assert "test_code/loss" in run.data.metrics and run.data.metrics["tiny_code/pass_at_1"] == 0.0
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert {"dataset_manifest.json", "evaluation_summary.json"} <= set(artifacts)
    assert (exp / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()  # artifacts beside the store
    from onlyif.sweep.report_cmd import make_report

    again = make_report(exp, source="mlflow", out=tmp_path / "from_mlflow", log_to_mlflow=False)
    assert again["points"] == report["points"]  # MLflow alone rebuilds the same ranking
    infos = [json.loads(p.read_text()) for p in (exp / "trials").glob("*/run.json")]
    assert len(infos) == 2 and all(i["eval_data"] == [str(tmp_path / "heldout")] for i in infos)
