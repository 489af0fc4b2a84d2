"""The ``--smoke-test`` of each ``jobs/*.py`` script: ``--set`` overrides that shrink any preset of that job to a
run of a minute or two on CPU, so that a cluster, its storage and its MLflow server can be checked end to end
before the real job is submitted."""

from __future__ import annotations

from pathlib import Path

from onlyif.config import read_yaml
from onlyif.errors import ConfigError

# A 2×1 grid with a tiny model, one epoch, CPU workers: the whole pipeline of any sweep preset in ~1 min.
SWEEP = [
    "task.input_length=6", "task.pattern_length=2", "task.alphabet_size=4", "task.test_seen=16",
    "task.test_unseen=16", "task.test_domain=null", "train.model={n_layer: 1, n_embd: 16, n_head: 2, n_positions: 32}",
    "train.epochs=1", "train.batch_size=16", "train.scaling={num_workers: 1, threads_per_worker: 1}",
    "train.deepspeed={zero_stage: 0}", "train.eval={max_examples: 16}", "train.early_stop=null",
    "grid.instructions=[2, 4]", "grid.budget=[32]", "grid.seeds=[0]", "grid.axes={}",
    "tune.max_concurrent_trials=1", "report.bootstrap=20",
]  # fmt: skip

# The reproduce presets of findings (`--experiment NAME`) beyond emergence: the tiny grid's random rules, its
# metric, no verdict (the smoke test checks the plumbing, not the finding).
REPRODUCE = SWEEP + [
    "task.families=[{name: random}]",
    "report.metric=test_unseen/exact_match_applied",
    "report.finding=null",
]

# One epoch of a 1-layer model on 2 CPU workers, 100 eval examples: any train preset's data and plumbing.
TRAIN = [
    "model.pretrained=null", "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "epochs=1", "max_steps=20",
    "scaling={num_workers: 2}", "deepspeed={zero_stage: 2}", "eval.max_examples=100",
]  # fmt: skip

# A few thousand examples of the preset's strings, rule families and frequencies.
GENERATE = [
    "instructions=50", "budget=2000", "examples_per_instruction=null", "test_seen=200", "test_unseen=200",
    "test_unseen_instructions=20",
]  # fmt: skip

MIX_SHRINK = 100
"""A mixture's budget and per-source counts are divided by this (a non-zero count keeps at least 1 row)."""


def _generate(config: str | None) -> list[str]:
    raw = read_yaml(Path(config)) if config else {}
    return GENERATE + (["test_domain.examples=200"] if raw.get("test_domain") else [])


def _mix(raw: dict, prefix: str = "") -> list[str]:
    """A mixture config's budget and per-source counts ÷ ``MIX_SHRINK`` (keys under ``prefix``)."""
    out = [f"{prefix}budget={max(1, int(raw.get('budget', MIX_SHRINK)) // MIX_SHRINK)}", f"{prefix}num_blocks=2"]
    out += [f"{prefix}diversity.sample=200", f"{prefix}diversity.clusters=4"]
    for i, source in enumerate(raw.get("sources") or []):
        if isinstance(source, dict) and source.get("count") is not None:
            count = int(source["count"])
            out.append(f"{prefix}sources.{i}.count={max(1, count // MIX_SHRINK) if count else 0}")
    return out


def _sweep(config: str | None) -> list[str]:
    """Synthetic sweeps: :data:`SWEEP`. Mixture sweeps keep their pretrained model (the from-scratch model reads
    only the synthetic task) and run one point: the base mixture shrunk as ``mix``, a few steps, a few eval items."""
    raw = read_yaml(Path(config)) if config else {}
    if raw.get("mixture") is None:
        return SWEEP
    out = _mix(raw["mixture"], "mixture.") + ["grid.axes={}", "grid.seeds=[0]", "grid.budget=null"]
    out += ["train.epochs=1", "train.max_steps=2", "train.eval.max_examples=4", "tune.max_concurrent_trials=1"]
    out += ["report.bootstrap=20"]
    if (raw.get("evaluate") or {}).get("code") is not None:
        out.append("evaluate.code.max_problems=2")
    return out


def smoke_overrides(command: str, config: str | None) -> list[str]:
    """The ``--set`` values of ``command``'s smoke test (``config``: the preset it shrinks, when it needs it)."""
    if command == "generate":
        return _generate(config)
    if command == "mix":
        return _mix(read_yaml(Path(config))) if config else []
    if command == "sweep":
        return _sweep(config)
    known = {"reproduce": REPRODUCE, "train": TRAIN}
    if command not in known:
        raise ConfigError(f"--smoke-test: the {command} job has no smoke test")
    return known[command]
