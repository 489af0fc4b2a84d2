"""Reading instruction-data sources into Ray Datasets of raw records.

Text files (jsonl, json, csv, optionally .gz) are read as whole files and split into one row per record with its
path and line, keeping unparseable records as rows with an error (they end up in the quarantine, never silently
dropped). Parquet files, ``datasets.save_to_disk`` directories and Hugging Face dataset ids give typed rows.
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onlyif.data.mixture_config import SourceConfig
from onlyif.errors import ConfigError
from onlyif.io import sha256_file

if TYPE_CHECKING:
    import ray.data

TEXT_FORMATS = ("jsonl", "json", "csv")
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class ResolvedSource:
    """A source with its concrete files (or dataset id), file format and content hash."""

    cfg: SourceConfig
    file_format: str
    files: tuple[str, ...]
    content: dict[str, Any]


def _where(src: SourceConfig) -> str:
    return f"sources[{src.name}]"


def _expand(src: SourceConfig) -> list[str]:
    files: list[str] = []
    for pattern in src.paths:
        if glob.has_magic(pattern):
            hits = sorted(glob.glob(pattern, recursive=True))
            if not hits:
                raise ConfigError(f"{_where(src)}.path: no file matches {pattern!r}")
            files.extend(hits)
        elif not Path(pattern).exists():
            raise ConfigError(f"{_where(src)}.path: file not found: {pattern}")
        else:
            files.append(pattern)
    return files


def _detect(src: SourceConfig, files: list[str]) -> str:
    if src.file_format != "auto":
        return src.file_format
    if src.hf is not None:
        return "hf"
    if len(files) == 1 and Path(files[0]).is_dir():
        return "disk"
    kinds = set()
    for f in files:
        suffixes = Path(f).suffixes
        ext = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes or [""])[-1]
        if ext.lower() not in EXTENSIONS:
            raise ConfigError(
                f"{_where(src)}.file_format: cannot tell the format of {f!r} from its extension "
                f"(set file_format to one of jsonl, json, parquet, csv, disk)"
            )
        kinds.add(EXTENSIONS[ext.lower()])
    if len(kinds) > 1:
        raise ConfigError(f"{_where(src)}.path: files of several formats {sorted(kinds)}; use one source per format")
    return kinds.pop()


def _dir_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def resolve_source(src: SourceConfig) -> ResolvedSource:
    """Expand globs, check that every file exists, pick the file format and hash the content."""
    files = _expand(src)
    fmt = _detect(src, files)
    if fmt == "hf":
        return ResolvedSource(src, fmt, (), {"hf": src.hf, "config": src.hf_config, "split": src.split})
    if fmt == "disk":
        if len(files) != 1 or not Path(files[0]).is_dir():
            raise ConfigError(f"{_where(src)}.path: file_format disk needs exactly one directory")
        return ResolvedSource(src, fmt, tuple(files), {"dir": files[0], "sha256": _dir_hash(Path(files[0]))})
    for f in files:
        if Path(f).is_dir():
            raise ConfigError(f"{_where(src)}.path: {f} is a directory (file_format {fmt} expects files)")
    content = {"files": [{"path": f, "sha256": sha256_file(f)} for f in files]}
    return ResolvedSource(src, fmt, tuple(files), content)


def _record_rows(path: str, data: bytes, fmt: str) -> list[dict[str, Any]]:
    """One row per record of a text file: ``_path``, ``_line``, ``_text`` (JSON of the record) or ``_error``."""

    def row(line: int, text: str | None = None, error: str | None = None) -> dict[str, Any]:
        return {"_path": path, "_line": line, "_text": text, "_error": error}

    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            return [row(0, error=f"not a valid gzip file ({exc})")]
    if fmt == "jsonl":
        out = []
        for i, raw in enumerate(data.split(b"\n"), 1):
            if raw.strip():
                try:
                    out.append(row(i, text=raw.decode("utf-8")))
                except UnicodeDecodeError:
                    out.append(row(i, error="line is not valid UTF-8"))
        return out
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [row(0, error="file is not valid UTF-8")]
    if fmt == "json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return [row(exc.lineno, error=f"file is not valid JSON ({exc.msg})")]
        if not isinstance(obj, list):
            return [row(1, error=f"expected a JSON array of records, got {type(obj).__name__}")]
        return [row(i, text=json.dumps(rec, ensure_ascii=False)) for i, rec in enumerate(obj, 1)]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        return [row(1, error="empty CSV file (no header)")]
    out = []
    for rec in reader:
        line = reader.line_num
        if not rec:
            continue
        if len(rec) != len(header):
            out.append(row(line, error=f"CSV row has {len(rec)} fields, the header has {len(header)}"))
        else:
            out.append(row(line, text=json.dumps(dict(zip(header, rec, strict=True)), ensure_ascii=False)))
    return out


def _split_file(batch: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    rows = []
    for path, data in zip(batch["path"], batch["bytes"], strict=True):
        rows.extend(_record_rows(str(path), bytes(data), fmt))
    return rows


def read_source(rs: ResolvedSource, num_blocks: int) -> ray.data.Dataset:
    """A Ray Dataset of the source's raw records, split into ``num_blocks`` blocks."""
    import pyarrow as pa
    import ray.data

    fmt = rs.file_format
    if fmt in TEXT_FORMATS:
        files = ray.data.read_binary_files(list(rs.files), include_paths=True, override_num_blocks=len(rs.files))

        def split(batch: dict[str, Any]) -> pa.Table:
            rows = _split_file(batch, fmt)
            schema = pa.schema(
                [("_path", pa.string()), ("_line", pa.int64()), ("_text", pa.string()), ("_error", pa.string())]
            )
            return pa.Table.from_pylist(rows, schema=schema)

        ds = files.map_batches(split, batch_size=1, batch_format="numpy")
    elif fmt == "parquet":
        ds = ray.data.read_parquet(list(rs.files), override_num_blocks=num_blocks)
    else:
        import datasets

        src = rs.cfg
        try:
            if fmt == "disk":
                hf_ds = datasets.load_from_disk(rs.files[0])
                if isinstance(hf_ds, datasets.DatasetDict):
                    if src.split not in hf_ds:
                        raise ConfigError(f"{_where(src)}.split: {src.split!r} not in {sorted(hf_ds)}")
                    hf_ds = hf_ds[src.split]
            else:
                hf_ds = datasets.load_dataset(src.hf, src.hf_config, split=src.split)
        except (FileNotFoundError, ValueError, ConnectionError) as exc:
            raise ConfigError(f"{_where(src)}: cannot load dataset: {str(exc).splitlines()[0]}") from None
        # not ray.data.from_huggingface: it first asks the Hub for parquet exports, which fails offline
        ds = ray.data.from_arrow(hf_ds.with_format("arrow")[:])
    return ds.repartition(num_blocks)
