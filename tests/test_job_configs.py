"""Every shipped preset under jobs/configs/ loads and validates against its config class, and opens with the
commands that launch it (locally and with ``ray job submit``)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from onlyif.config import load_config

CONFIGS = sorted((Path(__file__).parents[1] / "jobs" / "configs").glob("*.yaml"))
CLASSES = {
    "generate": "onlyif.tasks.config:TaskConfig",
    "train": "onlyif.train.config:TrainConfig",
    "sweep": "onlyif.sweep.config:SweepConfig",
    "reproduce": "onlyif.sweep.config:SweepConfig",
    "mix": "onlyif.data.mixture_config:MixtureConfig",
    "eval": "onlyif.eval.suite.config:SuiteConfig",
}


def config_class(path: Path):
    module, name = CLASSES[path.stem.split("_")[0]].split(":")
    return getattr(importlib.import_module(module), name)


def test_there_are_presets_for_every_job():
    assert {p.stem.split("_")[0] for p in CONFIGS} >= {"generate", "mix"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_preset_validates_and_documents_its_launch(path):
    assert path.stem.split("_")[0] in CLASSES, f"{path.name}: no config class registered for this prefix"
    load_config(config_class(path), path)
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#") and "onlyif " in header and "ray job submit" in header


SMOKE_JOBS = ("generate", "mix", "train", "sweep")


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem.split("_")[0] in SMOKE_JOBS], ids=lambda p: p.name)
def test_smoke_test_overrides_shrink_every_preset_of_its_job(path):
    from onlyif.smoke import MIX_SHRINK, smoke_overrides

    job = path.stem.split("_")[0]
    full = load_config(config_class(path), path)
    small = load_config(config_class(path), path, smoke_overrides(job, str(path)))
    if job == "generate":
        assert small.budget == 2000 and small.test_seen <= full.test_seen
    elif job == "mix":
        assert small.budget == max(1, full.budget // MIX_SHRINK)
    elif job == "train":
        assert small.epochs == 1 and small.model.pretrained is None
    elif small.mixture is not None:  # a mixture sweep: one point of the shrunk base mixture, a few steps
        from onlyif.sweep.grid import expand_grid

        assert len([p for p in expand_grid(small) if p.skip_reason is None]) == 1
        assert small.grid.axes == {} and small.train["max_steps"] == 2
        assert small.mixture["budget"] == max(1, full.mixture["budget"] // MIX_SHRINK)
    else:
        assert small.grid.instructions == [2, 4] and small.train["epochs"] == 1


def test_the_reproduce_job_smoke_test_shrinks_the_embedded_preset():
    from onlyif.smoke import smoke_overrides
    from onlyif.sweep.config import SweepConfig
    from onlyif.sweep.reproduce_cmd import PRESET

    small = load_config(SweepConfig, PRESET, smoke_overrides("reproduce", None))
    assert small.grid.budget == [32] and small.train["model"]["n_embd"] == 16
