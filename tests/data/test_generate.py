"""``onlyif generate`` on a real local Ray cluster: contract, counts, hashes, determinism, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from onlyif.cli import main
from onlyif.config import load_config
from onlyif.data.generate import generate_dataset, split_digest
from onlyif.tasks.config import TaskConfig

SMALL = {
    "seed": 3,
    "alphabet_size": 6,
    "input_length": [10, 14],
    "pattern_length": [2, 4],
    "noop_share": 0.25,
    "instructions": 60,
    "budget": 3000,
    "test_seen": 400,
    "test_unseen": 400,
    "families": [{"name": "random", "share": 0.5}, {"name": "repeated", "share": 0.5, "k": [1, 2]}],
    "test_domain": {"families": [{"name": "periodic", "k": 2}], "examples": 200},
}
COLUMNS = {
    "rule_id": "int64",
    "rule_x": "string",
    "rule_y": "string",
    "input": "string",
    "output": "string",
    "noop": "bool",
    "domain": "string",
    "k": "int64",
}


def write_config(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def small_dataset(ray_cluster, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("gen")
    out = tmp / "data"
    assert main(["generate", "--config", str(write_config(tmp, SMALL)), "--out", str(out), "--no-progress"]) == 0
    return out


def test_layout_schema_and_reference_semantics(small_dataset):
    assert {p.name for p in small_dataset.iterdir()} == {
        "train",
        "test_seen",
        "test_unseen",
        "test_domain",
        "config.yaml",
        "manifest.json",
        "README.md",
    }
    for split in ("train", "test_seen", "test_unseen", "test_domain"):
        table = pq.read_table(small_dataset / split)
        assert {f.name: str(f.type) for f in table.schema} == COLUMNS
        d = table.to_pydict()
        for x, y, xi, out, noop in zip(d["rule_x"], d["rule_y"], d["input"], d["output"], d["noop"], strict=True):
            assert out == xi.replace(x, y, 1)
            assert noop == (x not in xi)


def test_manifest_counts_and_hashes(small_dataset):
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    splits = manifest["splits"]
    assert {n: s["rows"] for n, s in splits.items()} == {
        "train": 3000,
        "test_seen": 400,
        "test_unseen": 400,
        "test_domain": 200,
    }
    assert splits["train"]["distinct_rules"] == 60
    assert splits["train"]["domains"] == {
        "random": pytest.approx(1500, abs=200),
        "repeated": pytest.approx(1500, abs=200),
    }
    assert splits["test_domain"]["domains"] == {"periodic": 200}
    for name, s in splits.items():
        assert s["noop_share"] == pytest.approx(0.25, abs=1 / s["rows"])
        assert s["digest"] == split_digest(small_dataset / name)
    assert manifest["seed"] == 3 and manifest["versions"]["ray"]
    reloaded = load_config(TaskConfig, small_dataset / "config.yaml")
    assert reloaded == load_config(TaskConfig, write_config(small_dataset.parent, SMALL, "again.yaml"))


def test_unseen_rules_never_in_train_and_domain_held_out(small_dataset):
    def rules(split):
        d = pq.read_table(small_dataset / split, columns=["rule_x", "rule_y", "rule_id"]).to_pydict()
        return set(zip(d["rule_x"], d["rule_y"], strict=True)), set(d["rule_id"])

    train, train_ids = rules("train")
    unseen, unseen_ids = rules("test_unseen")
    seen, seen_ids = rules("test_seen")
    domain, _ = rules("test_domain")
    assert len(train) == 60 and not train & unseen and not train & domain and seen <= train
    assert not train_ids & unseen_ids and seen_ids <= train_ids
    assert "periodic" not in set(pq.read_table(small_dataset / "train", columns=["domain"])["domain"].to_pylist())


def test_huggingface_datasets_reads_named_splits(small_dataset):
    import datasets

    datasets.disable_progress_bars()
    ds = datasets.load_dataset(str(small_dataset))
    assert {n: len(ds[n]) for n in ds} == {"train": 3000, "test_seen": 400, "test_unseen": 400, "test_domain": 200}
    merged = datasets.load_dataset("parquet", data_dir=str(small_dataset))
    assert len(merged["train"]) == 3000


def test_identical_bytes_whatever_the_block_count(ray_cluster, tmp_path):
    # 70 000 rows = 2 chunks of 65 536: the split really is spread over several Ray tasks.
    cfg = load_config(
        TaskConfig,
        overrides=[
            "alphabet_size=5",
            "input_length=8",
            "pattern_length=2",
            "instructions=200",
            "budget=70000",
            "test_seen=100",
            "test_unseen=100",
        ],
    )
    a = generate_dataset(cfg, tmp_path / "a", num_blocks=1, progress=False)
    b = generate_dataset(cfg, tmp_path / "b", num_blocks=3, progress=False)
    assert len(a["splits"]["train"]["files"]) == 2
    assert {n: s["digest"] for n, s in a["splits"].items()} == {n: s["digest"] for n, s in b["splits"].items()}
    for rel in a["splits"]["train"]["files"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_a_small_dataset_built_in_process_has_the_bytes_of_a_ray_build(ray_cluster, tmp_path):
    from onlyif.data.generate import LOCAL_ROWS

    cfg = load_config(TaskConfig, overrides=["instructions=20", "budget=2000", "test_seen=50", "test_unseen=50"])
    local = generate_dataset(cfg, tmp_path / "local", progress=False)  # ≤ LOCAL_ROWS rows: no Ray Data
    on_ray = generate_dataset(cfg, tmp_path / "ray", num_blocks=2, progress=False)
    assert sum(s["rows"] for s in local["splits"].values()) <= LOCAL_ROWS
    assert {n: s["digest"] for n, s in local["splits"].items()} == {
        n: s["digest"] for n, s in on_ray["splits"].items()
    }
    for split in local["splits"].values():
        for rel in split["files"]:
            assert (tmp_path / "local" / rel).read_bytes() == (tmp_path / "ray" / rel).read_bytes()


def test_existing_output_is_refused_unless_overwrite(ray_cluster, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cfg = write_config(tmp_path, {**SMALL, "test_domain": None})
    assert main(["generate", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 1
    assert "not empty" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert main(["generate", "--config", str(cfg), "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "train").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp dirs left behind
    # a place where no folder can be made: one line naming it, before any work
    assert main(["generate", "--config", str(cfg), "--out", "/proc/onlyif-out", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--out /proc/onlyif-out: cannot create a folder in /proc (" in err, err
    assert len(err.splitlines()) == 1


BAD = [
    ({"budgt": 10}, [], "budgt: unknown key"),
    ({"budget": 0}, [], "budget: Input should be greater than or equal to 1"),
    ({}, ["noop_share=1.5"], "noop_share: Input should be less than or equal to 1"),
    ({"alphabet_size": 30}, [], "alphabet_size: Input should be less than or equal to 26"),
    ({"input_length": "long"}, [], "input_length: must be an integer or [min, max]"),
    ({"pattern_length": [5, 3]}, [], "pattern_length: min must be <= max"),
    ({"pattern_length": 20}, [], "pattern_length: max must be <= the shortest input_length"),
    ({"families": [{"name": "random", "share": 0.5}]}, [], "families: shares must sum to 1"),
    ({"families": [{"name": "random", "k": 2}]}, [], "families.0.k: must be unset"),
    ({"families": [{"name": "repeated"}]}, [], "families.0.k: required"),
    ({"families": [{"name": "spiral"}]}, [], "families.0.name: Input should be"),
    (
        {"families": [{"name": "periodic", "k": [1, 3]}], "test_domain": {"families": [{"name": "periodic", "k": 2}]}},
        [],
        "test_domain.families: periodic k=2 overlaps",
    ),
    ({"instructions": 500, "budget": 100}, [], "budget: must be >= instructions"),
    ({}, ["frequency_alpha=-1"], "frequency_alpha: Input should be greater than 0"),
    ({}, ["instructions=true"], "instructions: Input should be a valid integer"),
    ({"alphabet_size": 2, "pattern_length": 1, "instructions": 3}, [], "train: cannot draw 3 distinct new rules"),
    ({"alphabet_size": 2, "pattern_length": 1, "instructions": 2, "test_unseen": 0}, [], "cannot build no-op inputs"),
]


@pytest.mark.parametrize("change,overrides,message", BAD, ids=[m.split(":")[0] for _, _, m in BAD])
def test_bad_configs_exit_2_with_one_line_and_no_output(ray_cluster, tmp_path, capsys, change, overrides, message):
    base = {"alphabet_size": 6, "input_length": 10, "pattern_length": 3, "instructions": 20, "budget": 200}
    cfg = write_config(tmp_path, {**base, **change})
    out = tmp_path / "out"
    args = ["generate", "--config", str(cfg), "--out", str(out), "--no-progress"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_missing_config_file_is_exit_2(tmp_path, capsys):
    assert main(["generate", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "config file not found" in capsys.readouterr().err
