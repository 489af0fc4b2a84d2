"""``mode: stream`` of ``onlyif mix`` on a real local Ray: the first ``count`` usable rows of each source in read
order, interleaved evenly, with the same counts and side reports as ``mode: select``."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from onlyif.cli import main
from onlyif.config import validate_config
from onlyif.data.mix_stream import _SourceRows
from onlyif.data.mixture import build_mixture
from onlyif.data.mixture_config import MixtureConfig
from onlyif.mixing.records import output_schema
from tests._mix_fixtures import base_config, write_sources

STREAM = {"mode": "stream", "dedup": {"exact": False, "near": False}, "diversity": {"enabled": False}}


def _numbered(root: Path, name: str, rows: int) -> str:
    """An alpaca jsonl whose usable rows are ``NAME task 0..rows-1`` in order, with a broken line every 50."""
    lines = []
    for i in range(rows):
        lines.append(json.dumps({"instruction": f"{name} task {i}", "input": "", "output": f"answer {i} " * 3}))
        if i % 50 == 7:
            lines.append("not json")
    path = root / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _numbered_config(root: Path, **extra) -> MixtureConfig:
    root.mkdir(parents=True, exist_ok=True)
    sources = [
        {"name": "a", "domain": "x", "path": _numbered(root, "a", 500), "count": 300},
        {"name": "b", "domain": "y", "path": _numbered(root, "b", 300), "count": 100},
    ]
    cfg = {**STREAM, "budget": 400, "num_blocks": 8, "rows_per_file": 150, "sources": sources} | extra
    return validate_config(MixtureConfig, cfg)


def test_stream_keeps_the_first_rows_in_read_order_and_is_deterministic(ray_cluster, tmp_path):
    cfg = _numbered_config(tmp_path / "src", write_jsonl=True)
    manifest = build_mixture(cfg, tmp_path / "one", progress=False)
    prompts = pq.read_table(tmp_path / "one" / "train").column("prompt").to_pylist()
    assert [p for p in prompts if p.startswith("a ")] == [f"a task {i}" for i in range(300)]
    assert [p for p in prompts if p.startswith("b ")] == [f"b task {i}" for i in range(100)]
    assert prompts[:300] != sorted(prompts[:300], key=lambda p: p[0]), "the sources are interleaved"
    a, b = manifest["sources"]
    assert (a["read"], a["quarantined"], a["available"], a["selected"], a["selection"]) == (510, 10, 500, 300, "first")
    assert (b["read"], b["quarantined"], b["available"], b["selected"]) == (306, 6, 300, 100)
    assert manifest["rows"] == 400 and manifest["domains"] == {"x": 300, "y": 100}
    files = manifest["output"]["files"]
    assert [(f["path"], f["rows"]) for f in files] == [
        (f"train/part-{k:05d}.parquet", n) for k, n in enumerate((150, 150, 100))
    ]
    # spread evenly, 3 : 1, whatever the block boundaries: every 4 rows hold one of b
    assert all(sum(p.startswith("b ") for p in prompts[k : k + 4]) == 1 for k in range(0, 400, 4))
    lines = (tmp_path / "one" / "train.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt"] for line in lines] == prompts
    assert len((tmp_path / "one" / "quarantine.jsonl").read_text().splitlines()) == 16

    # the same bytes again, and with other blocks: the order depends on the sources' row counts only
    other_blocks = _numbered_config(tmp_path / "src", write_jsonl=True, num_blocks=3)
    again = build_mixture(other_blocks, tmp_path / "two", progress=False)
    assert again["output"]["sha256"] == manifest["output"]["sha256"]
    for name in ("train.jsonl", "quarantine.jsonl"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_stream_sources_copy_is_deleted_file_by_file_as_it_is_read(tmp_path):
    rows = [
        {"id": str(i), "source": "a", "domain": "x", "messages": [], "prompt": f"p{i}", "response": "r"}
        for i in range(9)
    ]
    for k in range(3):  # three blocks' files of three rows each, in read order
        pq.write_table(
            pa.Table.from_pylist(rows[3 * k : 3 * k + 3], schema=output_schema()), tmp_path / f"{k:09d}.parquet"
        )
    source = _SourceRows(tmp_path)
    assert source.take(2).column("prompt").to_pylist() == ["p0", "p1"]
    assert source.take(3).column("prompt").to_pylist() == ["p2", "p3", "p4"]  # the first file was read to its end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000001.parquet", "000000002.parquet"]
    assert source.take(4).column("prompt").to_pylist() == ["p5", "p6", "p7", "p8"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000002.parquet"]  # the last one: removed with the folder


def test_stream_counts_and_side_reports_match_select_on_every_format(ray_cluster, tmp_path):
    """Five sources in five formats with planted problems: the counts and quarantine / decontamination reports of
    a stream build are those of a select build without dedup (its rows are then all usable rows)."""
    fx = write_sources(tmp_path / "src")
    expected = fx["expected"]
    available = {n: e["available"] + e["exact_duplicates"] + e["near_duplicates"] for n, e in expected.items()}

    def config(mode: str, less: int) -> MixtureConfig:
        sources = copy.deepcopy(fx["sources"])
        for s in sources:
            s["count"] = available[s["name"]] - less
        cfg = base_config(sources, sum(available.values()), num_blocks=2, dedup={"exact": False, "near": False})
        return validate_config(MixtureConfig, cfg | {"mode": mode, "diversity": {"enabled": False}})

    got = build_mixture(config("stream", 1), tmp_path / "stream", progress=False)
    ref = build_mixture(config("select", 0), tmp_path / "select", progress=False)  # every usable row
    for s, r in zip(got["sources"], ref["sources"], strict=True):
        counted = ("read", "quarantined", "filtered", "contaminated", "available")
        assert {k: s[k] for k in counted} == {k: r[k] for k in counted}, s["name"]
        assert s["available"] == available[s["name"]] and s["selected"] == s["available"] - 1
    for name in ("quarantine.jsonl", "decontaminated.jsonl"):
        assert (tmp_path / "stream" / name).read_text() == (tmp_path / "select" / name).read_text(), name
    assert "HumanEval" in (tmp_path / "stream" / "decontaminated.jsonl").read_text()
    key = ["source", "prompt", "response"]
    rows = [tuple(r.values()) for r in pq.read_table(tmp_path / "stream" / "train").select(key).to_pylist()]
    usable = [tuple(r.values()) for r in pq.read_table(tmp_path / "select" / "train").select(key).to_pylist()]
    assert len(rows) == got["rows"] == len(usable) - len(available)
    assert not Counter(rows) - Counter(usable), "every streamed row is a usable row"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dedup": {"exact": True, "near": False}}, "dedup: set exact and near to false with mode: stream"),
        ({"diversity": {"enabled": True}}, "diversity.enabled: set to false with mode: stream"),
        ({"sources.0.selection": "kcenter"}, "sources[a].selection: kcenter needs mode: select"),
        ({"sources.0.upsample": True}, "sources[a].upsample: not with mode: stream"),
    ],
)
def test_stream_refuses_what_needs_every_row_first(tmp_path, capsys, change, message):
    cfg = _numbered_config(tmp_path / "src").to_dict()
    for key, value in change.items():
        if key.startswith("sources."):
            _, i, field = key.split(".")
            cfg["sources"][int(i)][field] = value
        else:
            cfg[key] = value
    path = tmp_path / "mix.yaml"
    path.write_text(json.dumps(cfg))
    assert main(["mix", "--config", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_stream_asking_more_than_a_source_has_fails_without_output(ray_cluster, tmp_path, capsys):
    cfg = _numbered_config(tmp_path / "src").to_dict()
    cfg["sources"][1]["count"], cfg["budget"] = 301, 700
    path = tmp_path / "mix.yaml"
    path.write_text(json.dumps(cfg))
    assert main(["mix", "--config", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "sources[b]: asks for 301 rows but only 300 are available" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
