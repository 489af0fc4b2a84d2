"""The ``onlyif`` entry point and the config machinery every subcommand shares."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from onlyif import __version__
from onlyif.cli import COMMANDS, build_parser
from onlyif.config import apply_overrides, load_config
from onlyif.errors import ConfigError
from onlyif.tasks.config import TaskConfig
from tests._ports import free_port

ONLYIF = Path(sys.executable).parent / "onlyif"
REPO = Path(__file__).resolve().parents[1]


def test_version_and_help_list_every_subcommand():
    version = subprocess.run([ONLYIF, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"onlyif {__version__}"
    help_text = subprocess.run([ONLYIF, "--help"], capture_output=True, text=True, check=True).stdout
    for name, (module, _) in COMMANDS.items():  # listed, and dispatchable: its module has add_arguments and run
        assert name in help_text
        assert callable(getattr(importlib.import_module(module), "run", None)), module
        assert callable(getattr(importlib.import_module(module), "add_arguments", None)), module


def test_one_progress_flag_spelling_and_the_old_one_still_parses(capsys):
    """Every command that draws progress bars turns them off with ``--no-progress``; ``generate --quiet`` (the old
    spelling) still parses but is no longer offered."""
    with_progress = []
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            build_parser(name).parse_args([name, "--help"])
        assert exit_.value.code == 0
        help_text = capsys.readouterr().out
        assert "--quiet" not in help_text, name
        if "--no-progress" in help_text:
            with_progress.append(name)
    assert with_progress == ["generate", "mix"]
    args = build_parser("generate").parse_args(["generate", "--out", "d", "--quiet"])
    assert args.quiet and not args.no_progress


def test_overrides_set_nested_keys_with_yaml_values():
    data = apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c=[1, 2]", "d.e=null", "f=true", "g=x=y", "lr=3e-3"])
    assert data == {"a": {"b": 2, "c": [1, 2]}, "d": {"e": None}, "f": True, "g": "x=y", "lr": 0.003}
    assert apply_overrides({}, ["n=1E5", "v=1.5", "s=e5", "t=1_000"]) == {"n": 1e5, "v": 1.5, "s": "e5", "t": 1000}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="a.b: a is not a mapping"):
        apply_overrides({"a": 3}, ["a.b=1"])
    lists = {"sources": [{"name": "x", "count": 1}, {"name": "y"}]}
    assert apply_overrides(lists, ["sources.1.count=5", "sources.0=z"]) == {
        "sources": ["z", {"name": "y", "count": 5}]
    }
    with pytest.raises(ConfigError, match="sources.2.count: sources.2 is not an index of a list of 2"):
        apply_overrides(lists, ["sources.2.count=5"])


def test_load_config_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("budget: 100\ninstructions: 10\n")
    cfg = load_config(TaskConfig, path, ["noop_share=0.5"])
    assert cfg.noop_share == 0.5 and cfg.train_size == 100
    with pytest.raises(ConfigError, match=r"^--set noop_share=3: noop_share: Input should be less than or equal to 1"):
        load_config(TaskConfig, path, ["noop_share=0.5", "noop_share=3"])  # the value that holds, from its --set
    path.write_text("budget: 100\ninstructions: 10\nnoop_share: 3\n")
    with pytest.raises(ConfigError, match=rf"^{path}: noop_share: Input should be less than or equal to 1"):
        load_config(TaskConfig, path, ["budget=200"])
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(TaskConfig, path)
    path.write_text("budget: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TaskConfig, path)


def test_unreachable_ray_address_fails_fast_in_one_line(tmp_path):
    """Ray retries an unreachable head for minutes; onlyif checks the port first and says so in one line."""
    import os

    port = free_port()  # a port nothing listens on: bound, then closed
    env = dict(os.environ, RAY_ADDRESS=f"127.0.0.1:{port}")
    out = subprocess.run(
        # 70 000 rows: more than a dataset built in the driver's process (LOCAL_ROWS), so it needs the cluster
        [ONLYIF, "generate", "--config", str(REPO / "jobs/configs/generate_smoke.yaml"), "--set", "budget=70000"]
        + ["--out", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"onlyif generate: error: could not connect to the Ray cluster at RAY_ADDRESS=127.0.0.1:{port} "
        "(Connection refused); is the head running?"
    ]
    assert not (tmp_path / "d").exists()
