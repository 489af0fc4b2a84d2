"""Every shipped preset under jobs/configs/ loads and validates against its config class, and opens with the
commands that launch it (locally and with ``ray job submit``)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from onlyif.config import load_config

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "jobs" / "configs").glob("*.yaml"))
CLASSES = {  # the config class each command loads its --config into
    "generate": "onlyif.tasks.config:TaskConfig",
    "train": "onlyif.train.config:TrainConfig",
    "sweep": "onlyif.sweep.config:SweepConfig",
    "reproduce": "onlyif.sweep.config:SweepConfig",
    "mix": "onlyif.data.mixture_config:MixtureConfig",
    "eval": "onlyif.eval.suite.config:SuiteConfig",
}
JOBS = {  # jobs/NAME.py → the onlyif command it runs (each is ``run_job(COMMAND, ...)``)
    p.stem: re.search(r'run_job\("(\w+)"', p.read_text()).group(1) for p in sorted((ROOT / "jobs").glob("*.py"))
}


def config_class(path: Path):
    module, name = CLASSES[path.stem.split("_")[0]].split(":")
    return getattr(importlib.import_module(module), name)


def launches(path: Path) -> set[str]:
    """The commands the preset's header launches it with: ``onlyif COMMAND`` and ``python jobs/NAME.py``."""
    header = path.read_text().split("\n\n")[0]
    found = re.findall(rf"(?:onlyif (\w+)|python jobs/(\w+)\.py)[^\n#]*--config jobs/configs/{path.name}", header)
    return {command or JOBS[job] for command, job in found}


NO_PRESET = {"reproduce": "runs its embedded preset", "make_code_sources": "runs from its defaults"}


def test_every_job_has_presets_and_each_preset_is_loaded_by_the_command_that_launches_it():
    """A preset is launched (in its header) by exactly one command, whose config class loads it; every job script
    has a preset unless it runs without one (each preset is loaded by the test below)."""
    launched = {}
    for path in CONFIGS:
        commands = launches(path)
        assert len(commands) == 1, f"{path.name}: launched as {sorted(commands) or 'nothing'} in its header"
        launched[path.name] = command = commands.pop()
        assert CLASSES[command] == CLASSES[path.stem.split("_")[0]], f"{path.name}: named for another command"
    assert set(NO_PRESET) <= set(JOBS)
    for job, command in JOBS.items():
        assert job in NO_PRESET or command in launched.values(), f"jobs/{job}.py: no preset in jobs/configs"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_preset_validates_and_documents_its_launch(path):
    assert path.stem.split("_")[0] in CLASSES, f"{path.name}: no config class registered for this prefix"
    cfg = load_config(config_class(path), path)
    if path.stem.startswith("train_"):  # and its DeepSpeed config builds
        from onlyif.train.ds_config import build_ds_config

        build_ds_config(cfg, total_steps=100)
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
