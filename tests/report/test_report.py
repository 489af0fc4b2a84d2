"""The analysis: threshold fit on synthetic metric tables, computed conclusions, report files and plots."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from onlyif.report.analysis import build_curves
from onlyif.report.config import ReportConfig
from onlyif.report.render import write_report
from onlyif.report.threshold import fit_threshold

UNSEEN = "test_unseen/exact_match_applied"
SEEN = "test_seen/exact_match_applied"


def _logistic(inst: np.ndarray, threshold: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.log10(inst) - np.log10(threshold)) / width))


def _table(threshold: float = 400.0, seeds: int = 3, budgets=(20000,), examples: int = 200, seed: int = 0):
    """Per-trial accuracies drawn as binomial test-set scores around a logistic in log10 I."""
    rng = np.random.default_rng(seed)
    rows = []
    for budget in budgets:
        for inst in (10, 50, 100, 200, 300, 500, 1000, 5000, 20000):
            for s in range(seeds):
                acc = rng.binomial(examples, float(_logistic(np.array(inst), threshold, 0.2))) / examples
                rows.append(
                    {
                        "trial_id": f"t{len(rows)}",
                        "point_id": f"I={inst},B={budget},seed={s}",
                        "instructions": inst,
                        "budget": budget,
                        "examples_per_instruction": budget // inst,
                        "seed": s,
                        UNSEEN: acc,
                        "test_unseen/exact_match": 0.2 + 0.8 * acc,
                        SEEN: float(np.clip(0.97 + rng.normal(0, 0.01), 0, 1)),
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("threshold", [150.0, 400.0, 2500.0])
def test_threshold_fit_recovers_a_known_threshold(threshold):
    df = _table(threshold)
    fit = fit_threshold(df["instructions"], df[UNSEEN], seeds=df["seed"], resamples=200)
    assert fit.method == "seeds" and fit.censored is None
    assert fit.low <= threshold <= fit.high
    assert abs(np.log10(fit.threshold) - np.log10(threshold)) < 0.08  # within 20 %
    assert 0.1 < fit.width < 0.35


def test_threshold_fit_binomial_interval_with_one_seed_and_other_levels():
    inst = np.array([10, 100, 300, 1000, 10000])
    acc = _logistic(inst, 300.0, 0.3)
    fit = fit_threshold(inst, acc, n_examples=[400] * 5, resamples=200, level=0.5)
    assert fit.method == "binomial" and fit.low < 300 < fit.high
    high = fit_threshold(inst, acc, level=0.8)
    assert high.method == "none" and high.threshold > fit.threshold  # 0.8 is crossed later than 0.5


def test_threshold_interval_does_not_depend_on_the_order_of_the_trials():
    df = _table(seeds=2)
    shuffled = df.sample(frac=1.0, random_state=3)
    for method, kwargs in (("seeds", {"seeds": "seed"}), ("binomial", {})):
        fits = []
        for table in (df, shuffled):
            extra = {k: table[v].to_numpy() for k, v in kwargs.items()}
            if method == "binomial":
                extra["n_examples"] = np.full(len(table), 200)
            fits.append(fit_threshold(table["instructions"], table[UNSEEN], resamples=100, **extra))
        assert fits[0].method == method
        assert (fits[0].low, fits[0].high) == (fits[1].low, fits[1].high)


def test_threshold_fit_censored_when_never_or_always_above():
    assert fit_threshold([10, 100, 1000], [0.0, 0.05, 0.2]).censored == "above"
    assert fit_threshold([10, 100, 1000], [0.9, 0.95, 0.99]).censored == "below"
    with pytest.raises(ValueError, match="> 0"):
        fit_threshold([0, 10], [0.0, 1.0])


def test_conclusion_is_computed_from_the_numbers():
    cfg = ReportConfig(bootstrap=50)
    (curve,) = build_curves(_table(400.0), cfg)
    text = " ".join(curve.conclusion)
    assert "emerges between I=300" in text and "and I=500" in text
    assert curve.shown is True
    # Shift the threshold: the sentence follows the data, not a template.
    (later,) = build_curves(_table(3000.0), cfg)
    assert "emerges between I=1000" in " ".join(later.conclusion) and "and I=5000" in " ".join(later.conclusion)
    # Seen accuracy too low at one point: the phenomenon is not claimed.
    df = _table(400.0)
    df.loc[df["instructions"] == 20000, SEEN] = 0.5
    (bad,) = build_curves(df, cfg)
    assert bad.shown is False and any("is not high everywhere" in s for s in bad.conclusion)
    # Never above the level.
    df[UNSEEN] = 0.02
    (flat,) = build_curves(df, cfg)
    assert flat.shown is False and "no generalization to unseen rules at any tested I" in flat.conclusion[0]


def test_report_files_plots_and_groups(tmp_path):
    df = _table(400.0, seeds=2, budgets=(2000, 20000))
    df = df[df["instructions"] <= df["budget"]]
    alpha = df.copy()
    alpha["task.frequency_alpha"] = "uniform"
    skewed = alpha.assign(**{"task.frequency_alpha": 0.1, UNSEEN: alpha[UNSEEN] * 0.5})
    df = pd.concat([alpha, skewed], ignore_index=True)
    result = write_report(
        df,
        ReportConfig(bootstrap=50),
        tmp_path,
        title="Synthetic",
        source="test",
        skipped=[{"id": "I=20000,B=2000,seed=0", "reason": "S = budget / I = 2000 / 20000 < 1"}],
    )
    assert len(result["curves"]) == 4  # 2 budgets × 2 skews
    md = (tmp_path / "report.md").read_text()
    assert "## Emergence threshold" in md and "I=20000,B=2000,seed=0" in md
    assert "frequency_alpha=0.1" in md and "frequency_alpha=uniform" in md
    for name in ("accuracy_vs_instructions.png", "heatmap_budget_instructions.png", "accuracy_vs_alpha.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    saved = json.loads((tmp_path / "report.json").read_text())
    fits = {(c["setting"]["budget"], c["setting"]["task.frequency_alpha"]): c["fit"] for c in saved["curves"]}
    assert saved["shown"] is True and 250 < fits[(20000, "uniform")]["threshold"] < 650
    assert fits[(20000, "0.1")]["censored"] == "above"  # halved accuracy never reaches 0.5
    assert len(pd.read_csv(tmp_path / "trials.csv")) == len(df)
