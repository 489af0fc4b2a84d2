"""Pure mixture logic: record formats, flattening, budgets, dedup and decontamination (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from onlyif.config import validate_config
from onlyif.data.mixture_config import MixtureConfig
from onlyif.errors import ConfigError
from onlyif.mixing.budget import allocate, upsample_plan
from onlyif.mixing.decontam import NgramIndex, humaneval_path, read_eval_items
from onlyif.mixing.dedup import exact_duplicates, minhash_signatures, near_duplicates
from onlyif.mixing.interleave import next_sources
from onlyif.mixing.normalize import RecordError, flatten, normalize_record
from onlyif.mixing.text import exact_key


def test_formats_normalize_to_one_schema():
    alpaca = normalize_record({"instruction": "Add", "input": "1 2", "output": "3"}, "alpaca", "s", "math")
    assert alpaca["prompt"] == "Add\n\n1 2" and alpaca["response"] == "3" and alpaca["domain"] == "math"
    assert alpaca["messages"] == [{"role": "user", "content": "Add\n\n1 2"}, {"role": "assistant", "content": "3"}]
    share = normalize_record(
        {"conversations": [{"from": "human", "value": "Add\n\n1 2"}, {"from": "gpt", "value": "3"}]},
        "sharegpt",
        "s",
        "m",
    )
    assert share["messages"] == alpaca["messages"] and share["id"] == alpaca["id"]
    mapped = normalize_record({"q": "hi", "a": "yo"}, "prompt_response", "s", "d", {"prompt": "q", "response": "a"})
    assert (mapped["prompt"], mapped["response"]) == ("hi", "yo")
    as_text = normalize_record(
        {"messages": '[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]'}, "messages", "s", "d"
    )
    assert as_text["response"] == "b"


def test_multi_turn_flattening():
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
        {"role": "assistant", "content": "A2"},
    ]
    assert flatten(msgs) == ("system: S\n\nuser: U1\n\nassistant: A1\n\nuser: U2", "A2")
    assert flatten(msgs[:3]) == ("S\n\nU1", "A1")


def test_work_rows_without_flat_text_give_the_same_output_rows():
    """A mixture's work blocks keep ``messages`` only; the chosen rows' prompt and response made again from them
    are the record step's (single and multi-turn, with a system turn)."""
    import pyarrow as pa

    from onlyif.mixing.records import output_rows, output_schema, process_batch

    records = [
        {"messages": [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]},
        {
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": "U1"},
                {"role": "assistant", "content": "A1"},
                {"role": "user", "content": "U2"},
                {"role": "assistant", "content": "A2"},
            ]
        },
    ]
    table = pa.table({"messages": [r["messages"] for r in records]})
    src = {"name": "s", "domain": "d", "format": "messages", "columns": None}
    src["filters"] = {"drop_empty": True, "min_chars": 0, "max_chars": None}
    dedup = {"near": True, "num_perm": 16, "shingle": 3}
    full = process_batch(table, src, dedup, None)
    lean = process_batch(table, src, dedup, None, flat_text=False)
    assert "prompt" not in lean.column_names and "response" not in lean.column_names
    assert full.column("prompt").to_pylist()[1] == "system: S\n\nuser: U1\n\nassistant: A1\n\nuser: U2"
    assert output_rows(lean).equals(full.select(output_schema().names).cast(output_schema()))


@pytest.mark.parametrize(
    ("record", "fmt", "reason"),
    [
        ({"instruction": "x"}, "alpaca", "missing field 'output'"),
        ({"instruction": "x", "output": 3}, "alpaca", "field 'output' is int"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages", "unknown role 'wizard'"),
        ({"messages": [{"role": "user", "content": "x"}]}, "messages", "no assistant turn"),
        ({"messages": []}, "messages", "non-empty list"),
        (["not", "a", "dict"], "alpaca", "record is list"),
    ],
)
def test_bad_records_name_the_problem(record, fmt, reason):
    with pytest.raises(RecordError, match=reason):
        normalize_record(record, fmt, "s", "d")


def test_allocate_and_upsample_plan():
    assert allocate(20, [0.5, 0.3, 0.2]) == [10, 6, 4]
    assert allocate(10, [1 / 3] * 3) == [4, 3, 3]
    assert sum(allocate(20_000, [0.75, 0.15, 0.1])) == 20_000
    assert upsample_plan(25, 10) == (2, 5)


def test_exact_and_near_duplicates_keep_the_first():
    keys = [exact_key("Hello  World", "x"), exact_key("a", "b"), exact_key("hello world", "X ")]
    assert exact_duplicates(keys) == {2: 0}
    base = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat " * 2
    texts = [
        base,
        "entirely different words about parquet files and ray clusters " * 2,
        base.replace("lazy", "lazy!"),
        base,
    ]
    sigs = minhash_signatures(texts, num_perm=128, shingle=5)
    assert sigs.shape == (4, 128) and sigs.dtype == np.uint32
    assert near_duplicates(list(sigs), threshold=0.8) == {2: 0, 3: 0}
    with pytest.raises(ConfigError, match="dedup.threshold: 0.99 is too high for num_perm 128"):
        validate_config(
            MixtureConfig,
            {"budget": 1, "sources": [{"name": "a", "domain": "d", "path": "x"}], "dedup": {"threshold": 0.99}},
        )


def test_humaneval_decontamination():
    items = read_eval_items(humaneval_path(), ["prompt", "canonical_solution"], "task_id")
    assert len(items) == 164 and items[0][0] == "HumanEval/0"
    index = NgramIndex(items, 10)
    hit = index.match("Please write this:\n" + items[5][1])
    assert hit is not None and hit[0] == "HumanEval/5"
    assert index.match("def add(a, b):\n    return a + b  # a tiny clean function") is None


def test_config_cross_field_errors():
    src = {"name": "a", "domain": "d", "path": "x.jsonl"}
    with pytest.raises(ConfigError, match="fractions must sum to 1"):
        validate_config(
            MixtureConfig, {"budget": 10, "sources": [src | {"fraction": 0.5}, src | {"name": "b", "fraction": 0.3}]}
        )
    with pytest.raises(ConfigError, match="more than budget"):
        validate_config(MixtureConfig, {"budget": 10, "sources": [src | {"count": 11}]})
    with pytest.raises(ConfigError, match="sources.0.format"):
        validate_config(MixtureConfig, {"budget": 10, "sources": [src | {"format": "yaml-chat"}]})
    with pytest.raises(ConfigError, match="unknown field 'question'"):
        validate_config(MixtureConfig, {"budget": 10, "sources": [src | {"columns": {"question": "q"}}]})
    with pytest.raises(ConfigError, match="duplicate source name"):
        validate_config(MixtureConfig, {"budget": 10, "sources": [src | {"count": 1}, src | {"count": 1}]})
    cfg = validate_config(MixtureConfig, {"budget": 10, "sources": [src]})
    assert cfg.requested() == [10]
    assert cfg.config_hash() == validate_config(MixtureConfig, cfg.to_dict()).config_hash()
    assert cfg.config_hash() != validate_config(MixtureConfig, cfg.to_dict() | {"seed": 1}).config_hash()


def test_shipped_mix_presets_validate():
    from pathlib import Path

    from onlyif.config import load_config

    presets = sorted((Path(__file__).parents[2] / "jobs" / "configs").glob("mix_*.yaml"))
    assert len(presets) >= 2
    for path in presets:
        cfg = load_config(MixtureConfig, path)
        assert sum(cfg.requested()) == cfg.budget
        assert path.read_text().startswith("#") and "ray job submit" in path.read_text()


def test_hf_datasets_are_read_from_their_arrow_cache_files_by_row_ranges(tmp_path):
    """So that an ``hf:`` or ``disk`` source's rows never pass through the driver (each piece is read by a task)."""
    import datasets

    from onlyif.data.sources import _read_arrow_chunks, hf_arrow_chunks

    rows = {"instruction": [f"q{i}" for i in range(103)], "output": [f"a{i}" for i in range(103)]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "d"), max_shard_size="1KB")
    ds = datasets.load_from_disk(str(tmp_path / "d"))
    assert len(ds.cache_files) > 1  # several shards: pieces cross file boundaries in order
    pieces = hf_arrow_chunks(ds, 4)
    assert sum(p["rows"] for p in pieces) == 103 and len(pieces) >= 4
    read = _read_arrow_chunks({k: [p[k] for p in pieces] for k in pieces[0]})
    assert read.to_pydict() == rows
    assert hf_arrow_chunks(ds.shuffle(seed=0), 4) is None  # an indices mapping: read through the table instead


def test_output_plan_takes_the_picks_upsamples_and_places_every_row_once():
    from onlyif.mixing.select import RANK_BITS, output_plan

    # source 0: 3 of 10 by k-center picks; source 1: 4 of 6 at random; source 2: 5 from 2 rows (upsampled)
    plan = output_plan([10, 6, 2], [3, 4, 5], seed=7, picks=[np.array([9, 0, 4]), None, None])
    src, rank = plan["key"] >> RANK_BITS, plan["key"] & ((1 << RANK_BITS) - 1)
    assert list(plan["key"]) == sorted(plan["key"])
    assert list(rank[src == 0]) == [0, 4, 9]
    assert len(set(rank[src == 1])) == 4 and set(rank[src == 1]) <= set(range(6))
    assert sorted(rank[src == 2]) == [0, 0, 0, 1, 1] or sorted(rank[src == 2]) == [0, 0, 1, 1, 1]
    assert sorted(plan["out_pos"]) == list(range(12)) and sorted(plan["g"]) == list(range(12))
    again = output_plan([10, 6, 2], [3, 4, 5], seed=7, picks=[np.array([9, 0, 4]), None, None])
    assert all((again[k] == plan[k]).all() for k in plan)  # seeded


def test_stream_interleave_spreads_sources_evenly_whatever_the_chunks():
    n = [300, 100, 0, 7]
    whole = next_sources(n, [0, 0, 0, 0], 407)
    assert np.bincount(whole, minlength=4).tolist() == n
    assert whole[:8].tolist() == [0, 0, 1, 0, 0, 0, 1, 0]  # 3 : 1; a tie goes to the first source
    # every prefix holds each source in its share, up to a row
    seen = np.cumsum(np.eye(4, dtype=np.int64)[whole], axis=0)
    share = np.outer(np.arange(1, 408), np.array(n) / 407)
    assert np.abs(seen - share).max() <= 1.0
    # taken in chunks of any size (output files), the order is the same
    for size in (1, 50, 150):
        taken, parts = [0, 0, 0, 0], []
        while sum(taken) < 407:
            part = next_sources(n, taken, min(size, 407 - sum(taken)))
            taken = [t + int(c) for t, c in zip(taken, np.bincount(part, minlength=4), strict=True)]
            parts.append(part)
        assert np.concatenate(parts).tolist() == whole.tolist()
    with pytest.raises(ValueError, match="2 rows asked, 1 left"):
        next_sources([1], [0], 2)


def test_ray_datas_hang_warning_is_dropped_only_while_the_embedding_waits_for_the_graph():
    import logging

    from onlyif.data.mixture import _no_false_hang_warning

    class Kept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    seen: list[str] = []
    ray_data, handler = logging.getLogger("ray.data.dataset"), Kept(logging.WARNING)
    ray_data.addHandler(handler)  # on the logger itself: Ray's logging set-up may stop propagation above it
    hang = "Warning: The Ray cluster currently does not have any available CPUs. The Dataset job will hang"
    try:
        with _no_false_hang_warning():
            ray_data.warning(hang)
            ray_data.warning("another warning")
        ray_data.warning(hang)
    finally:
        ray_data.removeHandler(handler)
    assert seen == ["another warning", hang]
