"""The mixture recommender: a known optimum recovered from made-up sweeps, the written configs, the refusals, and
`onlyif recommend` on an experiment folder whose trials are read back from MLflow (no Tune run)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from onlyif.config import load_config
from onlyif.data.mixture_config import MixtureConfig
from onlyif.errors import ConfigError
from onlyif.report.recommend import recommend
from onlyif.report.recommend_output import write_recommendation

LOSS = "test_code/loss"
SOURCES = ("code", "alpaca", "orca")


def _base_mixture(names=SOURCES, budget: int = 1000) -> dict:
    n = len(names)
    return {
        "budget": budget,
        "sources": [{"name": s, "domain": s, "path": f"/data/{s}.jsonl", "fraction": 1 / n} for s in names],
    }


def _mixture_trials(grid, optimum, seeds=(0,), noise=0.01, budget=1000, metric=LOSS, sign=1.0) -> pd.DataFrame:
    """Rows as the report reads them: grid labels (``share.<source>``, budget, seed) and a metric that is a bowl
    around ``optimum`` plus noise (``sign=-1``: a peak, for a higher-is-better metric)."""
    rng = np.random.default_rng(1)
    rows = []
    for shares in grid:
        for seed in seeds:
            value = 1.0 + 4.0 * float(np.sum((np.asarray(shares) - np.asarray(optimum)) ** 2))
            row = {"trial_id": f"t{len(rows)}", "point_id": f"p{len(rows)}", "budget": budget, "seed": seed}
            row |= {f"share.{s}": v for s, v in zip(SOURCES, shares, strict=False)}
            row[metric] = sign * value + rng.normal(0.0, noise)
            row["test_code/exact_match"] = 0.0
            rows.append(row)
    return pd.DataFrame(rows)


def _simplex(step: float = 0.1, low: float = 0.1) -> list[tuple[float, float, float]]:
    ticks = np.round(np.arange(low, 1.0, step), 4)
    return [(a, b, round(1 - a - b, 4)) for a in ticks for b in ticks if 1 - a - b >= low - 1e-9]


def test_three_sources_known_optimum_and_a_loadable_mixture(tmp_path):
    optimum = (0.45, 0.35, 0.2)  # between grid points
    rec = recommend(_mixture_trials(_simplex(), optimum), metric=LOSS, budget=1000)
    shares = [rec.best["labels"][f"share.{s}"] for s in SOURCES]
    assert np.allclose(shares, optimum, atol=0.05), shares
    assert rec.chosen_score.rmse < 0.5 * rec.baseline.rmse and rec.chosen_score.r2 > 0.8
    assert rec.dims == 2 and rec.lower_is_better
    assert rec.best["uncertainty"] >= 0 and rec.best["predicted"] < 1.05

    result = write_recommendation(rec, tmp_path, mixture=_base_mixture())
    assert {p.name for p in tmp_path.iterdir()} >= {"recommend.md", "recommend.json", "recommend.png", "mixture.yaml"}
    cfg = load_config(MixtureConfig, tmp_path / "mixture.yaml")
    counts = {s.name: s.count for s in cfg.sources}
    assert sum(counts.values()) == cfg.budget == 1000
    assert abs(counts["code"] - 1000 * shares[0]) <= 1 and all(s.fraction is None for s in cfg.sources)
    assert result["recommendation"]["counts"] == counts
    assert json.loads((tmp_path / "recommend.json").read_text())["beats_baseline"] is True
    md = (tmp_path / "recommend.md").read_text()
    assert "| constant |" in md and "chosen" in md and "± " in md
    assert (tmp_path / "recommend.png").read_bytes()[:4] == b"\x89PNG"


def test_two_sources_higher_is_better_at_another_budget(tmp_path):
    grid = [(a, round(1 - a, 2)) for a in (0.1, 0.3, 0.5, 0.7, 0.9)]
    trials = _mixture_trials(grid, (0.62, 0.38), seeds=(0, 1), metric="humaneval/pass@1", sign=-1.0)
    rec = recommend(trials, metric="humaneval/pass@1", budget=3000)
    assert not rec.lower_is_better
    assert abs(rec.best["labels"]["share.code"] - 0.62) < 0.06
    assert rec.cv == "leave-one-grid-point-out" and rec.points == 5
    assert any("one budget" in n for n in rec.notes)  # the shares are assumed to carry over to 3000
    write_recommendation(rec, tmp_path, mixture=_base_mixture(("code", "alpaca")))
    cfg = load_config(MixtureConfig, tmp_path / "mixture.yaml")
    assert cfg.budget == 3000 and sum(s.count for s in cfg.sources) == 3000


def test_instructions_curve_gives_a_generate_config(tmp_path):
    from onlyif.tasks.config import TaskConfig

    rng = np.random.default_rng(0)
    rows = []
    for inst in (10, 30, 100, 300, 1000, 3000):
        for noop in (0.1, 0.3, 0.5):
            acc = 0.9 - 0.3 * (np.log10(inst) - np.log10(400)) ** 2 - 0.2 * (noop - 0.3) ** 2
            rows.append(
                {
                    "trial_id": f"t{len(rows)}",
                    "point_id": f"I={inst},noop={noop}",
                    "instructions": inst,
                    "budget": 5000,
                    "examples_per_instruction": 5000 // inst,
                    "task.noop_share": noop,
                    "seed": 0,
                    "test_unseen/exact_match_applied": acc + rng.normal(0, 0.005),
                }
            )
    rec = recommend(pd.DataFrame(rows), metric="test_unseen/exact_match_applied")
    assert [f.name for f in rec.factors] == ["log10 I", "task.noop_share"]
    assert 250 <= rec.best["labels"]["instructions"] <= 650 and rec.budget == 5000
    write_recommendation(rec, tmp_path, task={"instructions": 100, "budget": 1000})
    cfg = load_config(TaskConfig, tmp_path / "generate.yaml")
    assert cfg.instructions == rec.best["labels"]["instructions"] and cfg.budget == 5000
    assert abs(cfg.noop_share - 0.3) < 0.1
    assert (tmp_path / "recommend.png").is_file()


def test_refusals_are_config_errors():
    trials = _mixture_trials(_simplex(0.2), (0.4, 0.4, 0.2))
    with pytest.raises(ConfigError, match="--metric test_code/nope: not among the trial metrics"):
        recommend(trials, metric="test_code/nope")
    same = trials.assign(**{"share.code": 0.5, "share.alpaca": 0.3, "share.orca": 0.2})
    with pytest.raises(ConfigError, match="no grid label varies"):
        recommend(same, metric=LOSS)
    few = _mixture_trials([(0.2, 0.4, 0.4), (0.4, 0.4, 0.2), (0.6, 0.2, 0.2)], (0.4, 0.4, 0.2), seeds=(0, 1, 2))
    with pytest.raises(ConfigError, match=r"3 finished grid points for 2 free factor .* need at least 4"):
        recommend(few, metric=LOSS)  # seeds do not count as points
    budgets = pd.concat([trials, trials.assign(budget=4000)], ignore_index=True)
    with pytest.raises(ConfigError, match="--budget 9000: outside the explored budgets 1000–4000"):
        recommend(budgets, metric=LOSS, budget=9000)


def _mlflow_experiment(tmp_path):
    """An experiment folder as `onlyif sweep` leaves it (sweep.yaml, grid.json, state.json, MLflow parent and
    finished child runs tagged with their grid points), with made-up metrics instead of trained models."""
    from mlflow import MlflowClient

    from onlyif.config import save_config, validate_config
    from onlyif.io import write_json_atomic
    from onlyif.mlflow_names import PARENT_TAG, POINT_ID_TAG, POINT_TAG, TRIAL_TAG
    from onlyif.sweep.config import SweepConfig
    from onlyif.sweep.grid import expand_grid

    exp = tmp_path / "exp"
    exp.mkdir()
    fractions = [{"code": a, "alpaca": round(1 - a, 2)} for a in (0.1, 0.3, 0.5, 0.7, 0.9)]
    cfg = validate_config(
        SweepConfig,
        {
            "name": "code_share",
            "mixture": _base_mixture(("code", "alpaca"), budget=2000),
            "train": {"eval": {"splits": ["test_code"]}},
            "grid": {"axes": {"mixture.fractions": fractions}, "seeds": [0, 1]},
        },
    )
    points = expand_grid(cfg)
    save_config(cfg, exp / "sweep.yaml")
    write_json_atomic(exp / "grid.json", {"points": [p.to_dict() for p in points], "skipped": []})
    uri = f"sqlite:///{exp / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("code_share", artifact_location=(exp / "mlartifacts").as_uri())
    parent = client.create_run(experiment, run_name="code_share").info.run_id
    for i, p in enumerate(points):
        tags = {PARENT_TAG: parent, POINT_TAG: json.dumps(p.labels), POINT_ID_TAG: p.id, TRIAL_TAG: f"trial{i}"}
        run = client.create_run(experiment, tags=tags).info.run_id
        share = p.labels["share.code"]
        client.log_metric(run, "test_code/loss", 2.0 + 3.0 * (share - 0.6) ** 2 + 0.01 * p.labels["seed"])
        client.log_metric(run, "test_code/exact_match", 0.0)
        client.set_terminated(run, "FINISHED")
    state = {"tracking_uri": uri, "experiment_id": experiment, "parent_run_id": parent, "name": "code_share"}
    write_json_atomic(exp / "state.json", state)
    return exp


def test_cli_on_an_experiment_read_from_mlflow(tmp_path, capsys):
    from onlyif.cli import main

    exp = _mlflow_experiment(tmp_path)
    assert main(["recommend", str(exp), "--from", "mlflow", "--budget", "2000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("recommended: share.code=") and "config:" in out
    result = json.loads((exp / "recommend" / "recommend.json").read_text())
    assert abs(result["recommendation"]["labels"]["share.code"] - 0.6) < 0.02
    assert result["metric"] == "test_code/loss" and result["source"].startswith("MLflow")  # sweep's report.metric
    cfg = load_config(MixtureConfig, exp / "recommend" / "mixture.yaml")
    counts = {s.name: s.count for s in cfg.sources}
    assert sum(counts.values()) == 2000 and abs(counts["code"] - 1200) <= 40
    assert main(["recommend", str(exp), "--from", "mlflow"]) == 0  # rerun replaces its own folder

    capsys.readouterr()
    assert main(["recommend", str(exp), "--from", "mlflow", "--metric", "test_code/nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("onlyif recommend: error: --metric test_code/nope") and "\n" not in err
    assert main(["recommend", str(tmp_path), "--from", "mlflow"]) == 1  # not an experiment folder
    assert main(["report", str(exp), "--from", "mlflow", "--no-mlflow"]) == 0  # same trial loading as the report
    assert (exp / "report" / "report.md").is_file()
