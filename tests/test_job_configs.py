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
