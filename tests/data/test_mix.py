"""``onlyif mix`` on a real local Ray: made-up sources in every format with planted problems."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from onlyif.cli import main
from onlyif.config import validate_config
from onlyif.data.mixture import build_mixture
from onlyif.data.mixture_config import MixtureConfig
from onlyif.sweep.datasets import ensure_mixture
from tests._mix_fixtures import base_config, write_sources

COUNTS = {"code": 20, "general": 15, "reasoning": 10, "qa": 10, "chat": 5}


@pytest.fixture(scope="module")
def fixture_sources(tmp_path_factory):
    return write_sources(tmp_path_factory.mktemp("sources"))


def counted(fx, counts=COUNTS, budget=60, **extra):
    sources = copy.deepcopy(fx["sources"])
    for s in sources:
        s["count"] = counts[s["name"]]
    return base_config(sources, budget, **extra)


@pytest.fixture(scope="module")
def built(ray_cluster, fixture_sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "out"
    cfg = validate_config(
        MixtureConfig, counted(fixture_sources, diversity={"sample": 64, "clusters": 4}, num_blocks=2)
    )
    manifest = build_mixture(cfg, out, progress=False)
    return out, manifest, cfg


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_manifest_counts_are_exact(built, fixture_sources):
    out, manifest, cfg = built
    for s in manifest["sources"]:
        expected = fixture_sources["expected"][s["name"]]
        assert {k: s[k] for k in expected} == expected, s["name"]
        assert s["requested"] == s["selected"] == COUNTS[s["name"]] and s["upsampled"] == 0
    assert manifest["rows"] == 60 and manifest["config_hash"] == cfg.config_hash()
    assert manifest["domains"] == {"chat": 5, "code": 20, "general": 25, "reasoning": 10}
    files = manifest["output"]["files"]
    assert sum(f["rows"] for f in files) == 60 and (out / files[0]["path"]).is_file()
    assert manifest["sources"][0]["content"]["files"][0]["sha256"]
    assert set(manifest["diversity"]["domains"]) == {"chat", "code", "general", "reasoning"}
    assert yaml.safe_load((out / "config.yaml").read_text()) == cfg.to_dict()


def test_quarantine_decontamination_and_duplicates_are_listed(built, fixture_sources):
    out, _, _ = built
    quarantine = read_jsonl(out / "quarantine.jsonl")
    reasons = sorted((q["source"], q["reason"].split(" (")[0]) for q in quarantine)
    assert reasons == [
        ("code", "invalid JSON"),
        ("code", "invalid JSON"),
        ("code", "missing field 'output'"),
        ("general", "messages[0].role: unknown role 'wizard'"),
        ("general", "no assistant turn"),
        ("qa", "CSV row has 1 fields, the header has 2"),
        ("reasoning", "no user turn before the last assistant turn"),
    ]
    assert all(q["raw"] or q["reason"].startswith("CSV") for q in quarantine)
    assert {q["line"] for q in quarantine if q["source"] == "code" and "JSON" in q["reason"]} == {6, 10}
    parquet_row = next(q for q in quarantine if q["source"] == "reasoning")
    assert parquet_row["path"].endswith("reasoning.parquet") and parquet_row["line"] == 14
    assert json.loads(parquet_row["raw"]) == {
        "conversations": [{"from": "gpt", "value": "an answer without a question"}]
    }
    contaminated = read_jsonl(out / "decontaminated.jsonl")
    assert len(contaminated) == 1 and contaminated[0]["match"].startswith(fixture_sources["humaneval_id"])
    dups = read_jsonl(out / "duplicates.jsonl")
    assert sorted(d["kind"] for d in dups) == ["exact", "exact", "near", "near"]
    table = pq.read_table(out / "train")
    ids = set(table.column("id").to_pylist())
    assert not ids & {d["id"] for d in dups} and contaminated[0]["id"] not in ids


def test_output_schema_and_datasets_load(built):
    import datasets

    out, _, _ = built
    ds = datasets.load_dataset("parquet", data_dir=str(out / "train"), split="train")
    assert ds.column_names == ["id", "source", "domain", "messages", "prompt", "response"]
    assert len(ds) == 60 and len(set(ds["id"])) == 60
    row = ds[0]
    assert row["messages"][-1] == {"role": "assistant", "content": row["response"]}
    assert all(p.strip() and r.strip() for p, r in zip(ds["prompt"], ds["response"], strict=True))


def test_same_config_same_bytes_and_the_sweep_cache(built, tmp_path):
    out, manifest, cfg = built
    path, again = ensure_mixture(cfg, tmp_path / "cache")
    assert path == tmp_path / "cache" / cfg.config_hash()[:16]
    assert again["output"]["sha256"] == manifest["output"]["sha256"] and again["diversity"] == manifest["diversity"]
    for name in ("train/part-00000.parquet", "quarantine.jsonl", "decontaminated.jsonl", "duplicates.jsonl"):
        assert (path / name).read_bytes() == (out / name).read_bytes(), name
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert ensure_mixture(cfg, tmp_path / "cache") == (path, again)  # a cache hit: nothing rebuilt
    assert (path / "manifest.json").stat().st_mtime_ns == stamp
    # another block layout and more output files: the same rows in the same order, the same side files
    other = validate_config(MixtureConfig, cfg.to_dict() | {"num_blocks": 5, "rows_per_file": 7})
    relaid = build_mixture(other, tmp_path / "relaid", progress=False)
    assert len(relaid["output"]["files"]) == 9 and relaid["totals"] == manifest["totals"]
    assert pq.read_table(tmp_path / "relaid" / "train").equals(pq.read_table(out / "train"))
    for name in ("quarantine.jsonl", "decontaminated.jsonl", "duplicates.jsonl"):
        assert (tmp_path / "relaid" / name).read_bytes() == (out / name).read_bytes(), name
    # the seeded shuffle interleaves the sources
    sources = pq.read_table(out / "train").column("source").to_pylist()
    assert sources != sorted(sources, key=list(COUNTS).index)


def test_a_cached_mixture_is_rebuilt_when_a_source_file_changes(ray_cluster, tmp_path):
    src = tmp_path / "a.jsonl"
    rows = [{"prompt": f"question number {i} about {w}", "response": f"answer {i} {w}"} for i, w in
            enumerate(["ka", "lo", "mi", "ne", "po", "ru", "si", "ta"])]  # fmt: skip
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = {"name": "a", "domain": "general", "path": str(src), "format": "prompt_response"}
    cfg = validate_config(MixtureConfig, base_config([source], 6, decontam={"eval_sets": []}))
    path, first = ensure_mixture(cfg, tmp_path / "cache")
    src.write_text("".join(json.dumps(r | {"response": r["response"] + " (revised)"}) + "\n" for r in rows))
    again_path, again = ensure_mixture(cfg, tmp_path / "cache")
    assert again_path == path and again["sources"][0]["content"] != first["sources"][0]["content"]
    responses = pq.read_table(path / "train").column("response").to_pylist()
    assert len(responses) == 6 and all(r.endswith("(revised)") for r in responses)


def test_upsampling_and_fractions_through_the_cli(ray_cluster, fixture_sources, tmp_path):
    cfg = counted(fixture_sources, {"code": 10, "general": 10, "reasoning": 10, "qa": 10, "chat": 25}, budget=65)
    cfg["sources"][4]["upsample"] = True
    cfg["write_jsonl"] = True
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["mix", "--config", str(tmp_path / "mix.yaml"), "--out", str(tmp_path / "up"), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "up" / "manifest.json").read_text())
    chat = manifest["sources"][4]
    assert (chat["available"], chat["selected"], chat["upsampled"], chat["upsample_factor"]) == (10, 25, 15, 2.5)
    ids = pq.read_table(tmp_path / "up" / "train").column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 65 and sum(i.endswith("#3") for i in ids) == 5
    jsonl = read_jsonl(tmp_path / "up" / "train.jsonl")
    # the exact bytes the single-process pipeline wrote for this config (rows chosen, upsampled copies and their
    # #n ids, output order): the distributed pipeline must not change any of them
    digest = hashlib.sha256((tmp_path / "up" / "train.jsonl").read_bytes()).hexdigest()
    assert digest == "98220e52eb99ad78a4d96727a3b8d98e1ac79a39233fdc8c6a5ee25a9bd327a5"
    assert [r["id"] for r in jsonl] == ids and set(jsonl[0]) == {
        "id",
        "source",
        "domain",
        "messages",
        "prompt",
        "response",
    }

    for s, f in zip(cfg["sources"], [0.4, 0.2, 0.2, 0.1, 0.1], strict=True):
        del s["count"]
        s["fraction"] = f
    (tmp_path / "frac.yaml").write_text(yaml.safe_dump(cfg))
    args = [
        "mix",
        "--config",
        str(tmp_path / "frac.yaml"),
        "--set",
        "budget=30",
        "--out",
        str(tmp_path / "frac"),
        "--no-progress",
    ]
    assert main(args) == 0
    manifest = json.loads((tmp_path / "frac" / "manifest.json").read_text())
    assert [s["selected"] for s in manifest["sources"]] == [12, 6, 6, 3, 3]


def _config_with(fx, tmp_path, mutate):
    cfg = counted(fx)
    mutate(cfg)
    if "only" in cfg:  # keep only the source under test (faster)
        only = cfg.pop("only")
        cfg["sources"] = [s for s in cfg["sources"] if s["name"] == only]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [
        (lambda c: c["sources"][0].update(path="/nonexistent/code.jsonl"), 2, "sources[code].path: file not found"),
        (lambda c: c["sources"][1].update(path="/nonexistent/*.json"), 2, "sources[general].path: no file matches"),
        (lambda c: c["sources"][0].update(format="yaml"), 2, "sources.0.format"),
        (lambda c: c["sources"][0].update(file_format="xml"), 2, "sources.0.file_format"),
        (
            lambda c: [s.update(fraction=0.3) or s.pop("count") for s in c["sources"]],
            2,
            "fractions must sum to 1 (got 1.5)",
        ),
        (
            lambda c: c["sources"][4].update(count=11) or c.update(budget=66),
            2,
            "sources[chat]: asks for 11 rows but only 10",
        ),
        (lambda c: c["sources"][0].update(max_error_rate=0.01), 1, "sources[code]: 3 of 39 rows could not be parsed"),
        (
            lambda c: c["sources"][2].update(format="alpaca"),
            1,
            "sources[reasoning]: no row could be parsed as format 'alpaca'",
        ),
    ],
)
def test_bad_configs_and_sources_fail_clearly_without_output(
    ray_cluster, fixture_sources, tmp_path, capsys, mutate, code, message
):
    path = _config_with(fixture_sources, tmp_path, mutate)
    out = tmp_path / "out"
    assert main(["mix", "--config", str(path), "--out", str(out), "--no-progress"]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_an_empty_file_in_a_source_glob_is_a_block_without_rows(ray_cluster, tmp_path):
    """An empty jsonl among a source's files reaches the work blocks as a table without columns; census, k-center's
    text tasks and the tasks that take the chosen rows all read it as an empty block."""
    rows = [{"instruction": f"question {i} on topic {i % 7}", "output": f"answer {i} " * 5} for i in range(40)]
    (tmp_path / "a1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "a2.jsonl").write_text("")
    src = {"name": "a", "domain": "general", "path": str(tmp_path / "a*.jsonl"), "format": "alpaca"}
    cfg = base_config([src | {"selection": "kcenter"}], 10, num_blocks=3, decontam={})
    manifest = build_mixture(validate_config(MixtureConfig, cfg), tmp_path / "out", progress=False)
    assert (manifest["totals"]["read"], manifest["rows"]) == (40, 10)
    prompts = pq.read_table(tmp_path / "out" / "train").column("prompt").to_pylist()
    assert len(set(prompts)) == 10 and all(p.startswith("question ") for p in prompts)


def test_kcenter_selection_spreads_over_topics_of_an_hf_source(ray_cluster, tmp_path):
    topics = [
        "parquet files and arrow tables",
        "gradient descent with momentum",
        "baking sourdough bread",
        "sailing in strong wind",
    ]
    rows = [
        {"instruction": f"Tell me about {t}, variant {v}.", "output": f"Here is a note on {t} (v{v})."}
        for t in topics
        for v in range(8)
    ]
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    # an `hf` source goes through datasets.load_dataset, here on a local folder (offline)
    src = {"name": "topics", "domain": "mixed", "hf": str(tmp_path / "hub"), "count": 4, "selection": "kcenter"}
    cfg = validate_config(MixtureConfig, base_config([src], 4, dedup={"near": False}, decontam={}))
    build_mixture(cfg, tmp_path / "kc", progress=False)
    prompts = pq.read_table(tmp_path / "kc" / "train").column("prompt").to_pylist()
    assert sorted(next(t for t in topics if t in p) for p in prompts) == sorted(topics)


def test_a_hub_id_without_the_hub_fails_in_seconds(ray_cluster, fixture_sources, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: as offline as it gets
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    path = _config_with(
        fixture_sources,
        tmp_path,
        lambda c: c["sources"][0].update(path=None, hf="some-user/unknown-id") or c.update(only="code"),
    )
    assert main(["mix", "--config", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "sources[code]: cannot reach the Hugging Face Hub at 127.0.0.1:9 (Connection refused)" in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
