"""Offline code and general instruction rows from the standard library, read by the real mixer."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from onlyif.config import validate_config
from onlyif.data.code_sources import (
    CodeSourcesConfig,
    _Walker,
    build_code_sources,
    humaneval_entry_points,
    make_rows,
)
from onlyif.errors import ConfigError
from tests._mix_fixtures import base_config

FILES = ("code", "code_heldout", "general", "general_heldout")
SUBSET = ["inspect", "genericpath", "operator", "imghdr", "stat", "textwrap", "shlex"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The default build: the whole standard library, seed 0."""
    out = tmp_path_factory.mktemp("sources") / "out"
    manifest = build_code_sources(CodeSourcesConfig(), out)
    return out, manifest, {name: read_jsonl(out / f"{name}.jsonl") for name in FILES}


def test_both_domains_have_rows_and_the_manifest_counts_them(full):
    out, manifest, rows = full
    for name in FILES:
        assert len(rows[name]) > 0, name
        assert manifest["files"][f"{name}.jsonl"]["rows"] == len(rows[name])
        assert {r["domain"] for r in rows[name]} == {name.split("_")[0]}
    assert len(rows["code"]) >= 150 and len(rows["general"]) >= 1000
    assert manifest["licenses"] == ["PSF-2.0"] and manifest["sources"]["stdlib"]["modules"] > 300
    kinds = manifest["kinds"]
    assert kinds["code/function"] == len(rows["code"]) + len(rows["code_heldout"])
    assert {"general/module", "general/class", "general/function", "general/topic"} <= set(kinds)
    for r in rows["code"] + rows["general"]:
        assert isinstance(r["prompt"], str) and isinstance(r["response"], str) and r["prompt"] and r["response"]


def test_code_rows_are_standalone_functions_and_no_humaneval_entry_point(full):
    _, manifest, rows = full
    entry_points = humaneval_entry_points()
    assert len(entry_points) == 158  # 164 problems, a few share a name (add, ...)
    names = set()
    for r in rows["code"] + rows["code_heldout"]:
        assert r["response"].startswith("```python\n") and r["response"].endswith("\n```")
        tree = ast.parse(r["response"][len("```python\n") : -len("\n```")])  # compiles on its own
        (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert r["id"].endswith(f".{fn.name}") and ast.get_docstring(fn) is None
        assert fn.name in r["prompt"]
        names.add(fn.name)
    assert not names & entry_points
    # the standard library does define one (enum.unique): it was dropped, and said so
    assert manifest["humaneval_entry_points_dropped"] == ["unique"]
    assert manifest["dropped"]["humaneval_entry_point"] == 1


def _shingles(text: str) -> set[str]:
    text = " ".join(text.lower().split())
    return {text[i : i + 5] for i in range(len(text) - 4)}


def test_heldout_rows_never_reach_the_training_files(full):
    _, _, rows = full
    for domain in ("code", "general"):
        train, held = {r["id"] for r in rows[domain]}, {r["id"] for r in rows[f"{domain}_heldout"]}
        assert not train & held
        assert 0.04 < len(held) / (len(train) + len(held)) < 0.25  # heldout: 0.1 of the near-copy groups
    # no held-out function is a near copy of a training one (exact Jaccard of character 5-grams)
    train = [_shingles(r["response"]) for r in rows["code"]]
    for r in rows["code_heldout"]:
        held = _shingles(r["response"])
        assert max(len(held & t) / len(held | t) for t in train) < 0.7, r["id"]
    assert len({r["response"] for r in rows["code"] + rows["code_heldout"]}) == len(rows["code"]) + len(
        rows["code_heldout"]
    )


def test_same_seed_same_bytes_other_seed_other_prompts(tmp_path):
    cfg = CodeSourcesConfig(modules=SUBSET, heldout=0.3)
    a = build_code_sources(cfg, tmp_path / "a")
    b = build_code_sources(cfg, tmp_path / "b")
    assert a["files"] == b["files"]  # rows and sha256 of every file
    for name in FILES:
        assert (tmp_path / "a" / f"{name}.jsonl").read_bytes() == (tmp_path / "b" / f"{name}.jsonl").read_bytes()
    files0, _ = make_rows(cfg)
    files1, _ = make_rows(CodeSourcesConfig(modules=SUBSET, heldout=0.3, seed=1))
    all0 = {r["id"]: r for name in FILES for r in files0[name]}
    all1 = {r["id"]: r for name in FILES for r in files1[name]}
    assert all0.keys() == all1.keys()  # the same rows ...
    assert all(all0[k]["response"] == all1[k]["response"] for k in all0)
    assert sum(all0[k]["prompt"] != all1[k]["prompt"] for k in all0) > len(all0) // 4  # ... other templates
    assert {r["id"] for r in files0["code_heldout"]} != {r["id"] for r in files1["code_heldout"]}  # other split


SOURCE = '''"""A made-up module for the walker.

It has several functions.
"""
import os
from math import sqrt as root

LIMIT = 3


def hypot(a, b):
    """Return the length of the hypotenuse of a right triangle with legs a and b."""
    return root(a * a + b * b)


def join_home(name):
    """Return the path of a file called name in the home directory of the current user."""
    return os.path.join(os.path.expanduser("~"), name)


def capped(x):
    """Return x, but never more than the module's LIMIT constant value."""
    return min(x, LIMIT)


def has_close_elements(numbers, threshold):
    """Check whether any two numbers in the list are closer to each other than the threshold."""
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1 :])


def _private(x):
    """A private helper that no row should ever mention at all."""
    return x
'''


def test_walker_keeps_standalone_functions_with_their_imports():
    walker = _Walker(CodeSourcesConfig(), humaneval_entry_points())
    rows = {r["id"]: r for r in walker.module_rows("made.up", SOURCE, "MIT")}
    assert set(rows) == {
        "general:module:made.up",
        "code:function:made.up.hypot",
        "code:function:made.up.join_home",
        "general:function:made.up.capped",  # uses a module constant: explained, not written
    }
    assert rows["code:function:made.up.hypot"]["response"] == (
        "```python\nfrom math import sqrt as root\n\ndef hypot(a, b):\n    return root(a * a + b * b)\n```"
    )
    assert rows["code:function:made.up.join_home"]["response"].startswith("```python\nimport os\n\ndef join_home(")
    assert (
        rows["general:module:made.up"]["response"] == "A made-up module for the walker.\n\nIt has several functions."
    )
    assert walker.dropped == {"not_self_contained": 1, "humaneval_entry_point": 1}
    assert walker.humaneval_hits == {"has_close_elements"}


def test_bad_configs_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="packages: 'no_such_package_xyz' is not an installed package"):
        make_rows(CodeSourcesConfig(packages=["no_such_package_xyz"]))
    with pytest.raises(ConfigError, match="stdlib: nothing to read"):
        make_rows(CodeSourcesConfig(stdlib=False))
    with pytest.raises(ConfigError, match="code: no rows made"):
        build_code_sources(CodeSourcesConfig(modules=["no_such_module"]), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_job_script_writes_and_refuses_to_overwrite(tmp_path):
    script = str(Path(__file__).parents[2] / "jobs" / "make_code_sources.py")
    out = str(tmp_path / "s")
    done = subprocess.run(
        [sys.executable, script, "--out", out, "--set", "modules=[textwrap, shlex]"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "code.jsonl" in done.stdout
    again = subprocess.run([sys.executable, script, "--out", out], capture_output=True, text=True)
    assert again.returncode == 1
    assert "directory exists and is not empty" in again.stderr


def test_the_mixer_reads_them_and_writes_a_heldout_eval_split(ray_cluster, full, tmp_path):
    """A specialist mix (code + general) and a ``test_code`` split for the sweep's eval_data."""
    from onlyif.data.mixture import build_mixture
    from onlyif.data.mixture_config import MixtureConfig
    from onlyif.lm.datasets import dataset_kind, read_rows

    out, _, rows = full
    sources = [
        {"name": "stdlib_code", "domain": "code", "path": str(out / "code.jsonl"), "format": "prompt_response"},
        {"name": "stdlib_docs", "domain": "general", "path": str(out / "general.jsonl"), "format": "prompt_response"},
    ]
    sources[0]["count"], sources[1]["count"] = 40, 20
    manifest = build_mixture(
        validate_config(MixtureConfig, base_config(sources, 60)), tmp_path / "mix", progress=False
    )
    assert manifest["rows"] == 60 and manifest["totals"]["quarantined"] == 0
    by_name = {s["name"]: s for s in manifest["sources"]}
    assert by_name["stdlib_code"]["read"] == len(rows["code"]) and by_name["stdlib_code"]["selected"] == 40
    assert dataset_kind(tmp_path / "mix", "train") == "text"

    held = [{**sources[0], "name": "heldout_code", "path": str(out / "code_heldout.jsonl")}]
    held[0]["count"] = 10
    cfg = validate_config(MixtureConfig, base_config(held, 10, output_split="test_code"))
    build_mixture(cfg, tmp_path / "heldout", progress=False)
    got = read_rows(tmp_path / "heldout", "test_code")
    assert len(got["prompt"]) == 10
    assert set(got["response"]) <= {r["response"] for r in rows["code_heldout"]}
