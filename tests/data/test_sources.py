"""Source splitting without Ray: jsonl byte ranges, parquet pieces, whole-file formats, format detection."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from onlyif.data.mixture_config import SourceConfig
from onlyif.data.sources import (
    _read_jsonl_chunks,
    _read_parquet_chunks,
    _record_rows,
    jsonl_chunks,
    parquet_chunks,
    resolve_source,
)
from onlyif.errors import ConfigError


def test_jsonl_chunks_cover_every_line_once_with_its_number(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [json.dumps({"i": i, "pad": "x" * (i * 7 % 23)}) for i in range(40)]
    lines[12] = ""  # blank lines are skipped but still counted
    path.write_text("\n".join(lines) + "\n")
    chunks = jsonl_chunks(str(path), 6)
    assert 2 <= len(chunks) <= 6 and chunks[0]["start"] == 0 and chunks[-1]["end"] == path.stat().st_size
    batch = {k: [c[k] for c in chunks] for k in ("path", "start", "end", "line")}
    table = _read_jsonl_chunks(batch)
    assert table.column("_line").to_pylist() == [i + 1 for i in range(40) if i != 12]
    assert [json.loads(t)["i"] for t in table.column("_text").to_pylist()] == [i for i in range(40) if i != 12]


def test_parquet_pieces_and_whole_file_formats(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": [str(i) for i in range(25)]}), path, row_group_size=10)
    pieces = parquet_chunks((str(path),), 4)
    assert sum(p["rows"] for p in pieces) == 25 and max(p["rows"] for p in pieces) <= 7
    table = _read_parquet_chunks({k: [p[k] for p in pieces] for k in ("path", "group", "offset", "rows", "first")})
    assert table.column("prompt").to_pylist() == [str(i) for i in range(25)]
    assert table.column("_line").to_pylist() == list(range(1, 26)) and table.column("_path")[0].as_py() == str(path)

    rows = _record_rows("x.json", b'[{"a": 1}, {"a": 2}]', "json")
    assert [(r["_line"], json.loads(r["_text"])) for r in rows] == [(1, {"a": 1}), (2, {"a": 2})]
    assert _record_rows("x.json", b'{"a": 1', "json")[0]["_error"].startswith("file is not valid JSON")
    rows = _record_rows("x.csv", b'q,a\n"multi\nline",yes\nonly\n', "csv")
    assert json.loads(rows[0]["_text"]) == {"q": "multi\nline", "a": "yes"} and rows[1]["_line"] == 4
    assert rows[1]["_error"] == "CSV row has 1 fields, the header has 2"


def test_format_detection_and_missing_files(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(b"")
    (tmp_path / "b.txt").write_text("x")
    assert resolve_source(SourceConfig(name="a", domain="d", path=str(tmp_path / "*.jsonl.gz"))).file_format == "jsonl"
    with pytest.raises(ConfigError, match=r"sources\[b\]\.file_format: cannot tell the format of"):
        resolve_source(SourceConfig(name="b", domain="d", path=str(tmp_path / "b.txt")))
    with pytest.raises(ConfigError, match=r"sources\[c\]\.path: file not found"):
        resolve_source(SourceConfig(name="c", domain="d", path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ConfigError, match="give exactly one of path or hf"):
        from onlyif.config import validate_config

        validate_config(SourceConfig, {"name": "x", "domain": "d"})
