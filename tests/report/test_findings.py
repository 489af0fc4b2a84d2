"""The verdicts of `onlyif reproduce --experiment NAME` on made-up trial tables, and the experiment presets."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from onlyif.report.config import ReportConfig
from onlyif.report.findings import DomainsFinding, NoopFinding, PatternsFinding, SkewFinding, judge
from onlyif.report.render import write_report

UNSEEN = "test_unseen/exact_match_applied"
SEEN = "test_seen/exact_match_applied"
DOMAIN = "test_domain/exact_match_applied"
GRID = (10, 100, 1000, 20000)


def _trials(curves: dict[tuple, list[float]], factor: str, seen: float = 0.9) -> pd.DataFrame:
    """One trial per (factor value, I) with the given unseen accuracies; all-example accuracy adds no-op copies."""
    rows = []
    for (value,), accs in curves.items():
        for inst, acc in zip(GRID, accs, strict=True):
            share = value if factor == "task.noop_share" else 0.2
            rows.append(
                {
                    "trial_id": f"t{len(rows)}",
                    "point_id": f"I={inst},{factor}={value}",
                    "instructions": inst,
                    "budget": 20000,
                    "examples_per_instruction": 20000 // inst,
                    "seed": 0,
                    factor: value,
                    UNSEEN: acc,
                    "test_unseen/exact_match": share + (1 - share) * acc,
                    SEEN: seen,
                }
            )
    return pd.DataFrame(rows)


def test_noop_shown_when_every_share_emerges_at_a_similar_i():
    trials = _trials({(0.1,): [0.0, 0.02, 0.85, 0.9], (0.5,): [0.0, 0.05, 0.8, 0.92]}, "task.noop_share")
    verdict = judge(trials, NoopFinding())
    assert verdict.shown, verdict.lines
    assert "no-op share 0.5" in verdict.lines[1] and "0.50 →" in verdict.lines[1]  # copies inflate all-example acc


@pytest.mark.parametrize(
    ("half", "why"),
    [
        ([0.0, 0.02, 0.3, 0.7], "never reaches the high mark at the most I"),
        ([0.0, 0.6, 0.85, 0.9], "emerges ~10x earlier than the other share"),
        ([0.2, 0.5, 0.85, 0.9], "generalizes already at the fewest I"),
    ],
)
def test_noop_not_shown(half, why):
    trials = _trials({(0.1,): [0.0, 0.02, 0.85, 0.9], (0.5,): half}, "task.noop_share")
    assert not judge(trials, NoopFinding()).shown, why


def test_noop_not_shown_when_seen_rules_are_not_learned():
    trials = _trials({(0.1,): [0.0, 0.02, 0.85, 0.9], (0.5,): [0.0, 0.05, 0.8, 0.92]}, "task.noop_share", seen=0.6)
    assert not judge(trials, NoopFinding()).shown


def _skew(few: list[float], many: list[float]) -> pd.DataFrame:
    """Trials at I=1000 and I=10000 for uniform, α=0.5 and α=0.05 (trials store uniform as the word)."""
    rows = []
    for inst, accs in ((1000, few), (10000, many)):
        for alpha, acc in zip(("uniform", 0.5, 0.05), accs, strict=True):
            rows.append(
                {"point_id": f"I={inst},α={alpha}", "instructions": inst, "task.frequency_alpha": alpha, UNSEEN: acc}
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("few", "many", "shown"),
    [
        ([0.85, 0.8, 0.3], [0.9, 0.9, 0.85], True),  # few rules collapse at the heaviest skew, many hold up
        ([0.85, 0.8, 0.7], [0.9, 0.9, 0.85], False),  # no collapse
        ([0.85, 0.8, 0.3], [0.9, 0.9, 0.6], False),  # many rules collapse too
        ([0.6, 0.5, 0.1], [0.9, 0.9, 0.85], False),  # few rules never generalized, even uniform
    ],
)
def test_skew_verdict(few, many, shown):
    verdict = judge(_skew(few, many), SkewFinding())
    assert verdict.shown is shown, verdict.lines
    assert verdict.lines[0].startswith("I=1000: uniform") and "α=0.05" in verdict.lines[0]


def test_the_finding_is_the_reports_verdict(tmp_path):
    # each share alone shows emergence, but at thresholds far apart: the report must not say "shown"
    trials = _trials({(0.1,): [0.0, 0.02, 0.85, 0.9], (0.5,): [0.0, 0.01, 0.05, 0.9]}, "task.noop_share")
    report = write_report(trials, ReportConfig(bootstrap=20, finding=NoopFinding()), tmp_path, title="t", source="s")
    assert report["finding"] == "noop" and report["shown"] is False
    assert any(c["shown"] for c in report["curves"])
    assert "Finding (no-op share) NOT SHOWN" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["conclusion"][-1].startswith("Finding")


def test_every_experiment_preset_states_its_own_finding():
    from onlyif.config import load_config
    from onlyif.sweep.config import SweepConfig
    from onlyif.sweep.reproduce_cmd import EXPERIMENTS

    assert EXPERIMENTS["emergence"].name == "reproduce.yaml" and len(EXPERIMENTS) > 1
    for name, path in EXPERIMENTS.items():
        cfg = load_config(SweepConfig, path)
        assert (cfg.report.finding.kind if cfg.report.finding else "emergence") == name


def test_an_unknown_experiment_is_one_line_and_exit_2(capsys):
    from onlyif.cli import main

    assert main(["reproduce", "--experiment", "nope", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown experiment 'nope'" in err and "noop" in err


CROSS = "repeated k3-5 (0.3334) + periodic k3-5 (0.3333) + mirrored k3-5 (0.3333)"  # sources.family_label
WITHIN = "repeated k3-5"


@pytest.mark.parametrize(
    ("cross", "within", "shown"),
    [
        ([0.6, 0.8], [0.2, 0.3], True),
        ([0.6, 0.8], [0.55, 0.3], False),  # not better at I=1000
        ([0.1, 0.15], [0.0, 0.1], False),  # neither transfers
    ],
)
def test_domains_verdict(cross, within, shown):
    rows = [
        {"point_id": f"{m},{i}", "instructions": i, "task.families": m, DOMAIN: acc}
        for m, accs in ((CROSS, cross), (WITHIN, within))
        for i, acc in zip((1000, 4000), accs, strict=True)
    ]
    verdict = judge(pd.DataFrame(rows), DomainsFinding())
    assert verdict.shown is shown, verdict.lines
    assert len(verdict.lines) == 3 and verdict.lines[0].startswith("I=1000: held-out domain")


@pytest.mark.parametrize(
    ("few", "many", "seen", "shown"),
    [
        ({100: 0.0, 1000: 0.02}, {1: 0.3, 10: 0.85}, {}, True),  # 10x the examples per rule do not help few rules
        ({100: 0.0, 1000: 0.4}, {1: 0.3, 10: 0.85}, {}, False),  # enough examples make few rules generalize
        ({100: 0.0, 1000: 0.02}, {1: 0.3, 10: 0.6}, {}, False),  # many rules do not generalize either
        ({100: 0.0, 1000: 0.02}, {1: 0.3, 10: 0.85}, {(20, 100): 0.6, (2000, 1): 0.1}, True),  # small S: not read
        ({100: 0.0, 1000: 0.02}, {1: 0.3, 10: 0.85}, {(20, 1000): 0.5}, False),  # few rules not even learned
    ],
)
def test_patterns_verdict(few, many, seen, shown):
    rows = [
        {
            "point_id": f"{i},{s}",
            "instructions": i,
            "examples_per_instruction": s,
            UNSEEN: acc,
            SEEN: seen.get((i, s), 0.9),
        }
        for i, accs in ((20, few), (2000, many))
        for s, acc in accs.items()
    ]
    verdict = judge(pd.DataFrame(rows), PatternsFinding())
    assert verdict.shown is shown, verdict.lines
    assert verdict.lines[0] == f"I=20: unseen rules (applied) S=100 {few[100]:.2f}, S=1000 {few[1000]:.2f}"


def test_the_smoke_test_shrinks_every_experiment_to_a_valid_tiny_grid():
    from onlyif.config import load_config
    from onlyif.smoke import smoke_overrides
    from onlyif.sweep.config import SweepConfig
    from onlyif.sweep.grid import expand_grid
    from onlyif.sweep.reproduce_cmd import EXPERIMENTS

    for path in EXPERIMENTS.values():
        small = load_config(SweepConfig, path, smoke_overrides("reproduce", None))
        assert small.report.finding is None and small.grid.budget == [32]
        assert [p.skip_reason for p in expand_grid(small)] == [None, None], path.name
