"""Reading instruction-data sources into Ray Datasets of raw records.

Text files (jsonl, json, csv, optionally .gz) are read as whole files and split into one row per record with its
path and line, keeping unparseable records as rows with an error (they end up in the quarantine, never silently
dropped). Parquet files, ``datasets.save_to_disk`` directories and Hugging Face dataset ids give typed rows.

One reader per file format (jsonl byte ranges, whole-file text formats, parquet row groups, Arrow cache files),
30–60 lines each, kept beside the format detection and source resolution they share.
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
from onlyif.errors import ConfigError, OnlyIfError
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


def locate_source(src: SourceConfig) -> tuple[str, list[str]]:
    """The file format and concrete files of a source (globs expanded); a one-line error when a file is missing
    or its format cannot be told. Reads nothing."""
    files = _expand(src)
    return _detect(src, files), files


def resolve_source(src: SourceConfig) -> ResolvedSource:
    """Expand globs, check that every file exists, pick the file format and hash the content."""
    fmt, files = locate_source(src)
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


def _text_schema():
    import pyarrow as pa

    return pa.schema([("_path", pa.string()), ("_line", pa.int64()), ("_text", pa.string()), ("_error", pa.string())])


def _split_files(batch: dict[str, Any], fmt: str):
    import pyarrow as pa

    rows = []
    for path, data in zip(batch["path"], batch["bytes"], strict=True):
        rows.extend(_record_rows(str(path), bytes(data), fmt))
    return pa.Table.from_pylist(rows, schema=_text_schema())


def jsonl_chunks(path: str, k: int) -> list[dict[str, Any]]:
    """Split a jsonl file into ≤ k byte ranges at line boundaries, each with the number of its first line."""
    size = Path(path).stat().st_size
    bounds = [0]
    with open(path, "rb") as f:
        for i in range(1, k):
            f.seek(max(size * i // k, bounds[-1]))
            f.readline()
            if bounds[-1] < f.tell() < size:
                bounds.append(f.tell())
        bounds.append(size)
        chunks, line = [], 1
        f.seek(0)
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            chunks.append({"path": path, "start": start, "end": end, "line": line})
            for at in range(start, end, 1 << 20):  # count lines 1 MiB at a time: the driver never holds a chunk
                line += f.read(min(1 << 20, end - at)).count(b"\n")
    return chunks


def _read_jsonl_chunks(batch: dict[str, Any]):
    import pyarrow as pa

    rows = []
    for path, start, end, first in zip(batch["path"], batch["start"], batch["end"], batch["line"], strict=True):
        with open(path, "rb") as f:
            f.seek(int(start))
            data = f.read(int(end) - int(start))
        for row in _record_rows(str(path), data, "jsonl"):
            rows.append(row | {"_line": row["_line"] + int(first) - 1})
    return pa.Table.from_pylist(rows, schema=_text_schema())


def parquet_chunks(paths: tuple[str, ...], k: int) -> list[dict[str, Any]]:
    """(file, row group, offset, rows, first row of the file) pieces of about total/k rows each."""
    import pyarrow.parquet as pq

    metas = [(p, pq.ParquetFile(p).metadata) for p in paths]
    total = sum(m.num_rows for _, m in metas)
    step = max(1, -(-total // k))
    pieces = []
    for path, meta in metas:
        first = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            for o in range(0, n, step):
                pieces.append({"path": path, "group": g, "offset": o, "rows": min(step, n - o), "first": first + o})
            first += n
    return pieces


def _read_parquet_chunks(batch: dict[str, Any]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    keys = ("path", "group", "offset", "rows", "first")
    for path, group, offset, rows, first in zip(*(batch[k] for k in keys), strict=True):
        t = pq.ParquetFile(str(path)).read_row_group(int(group)).slice(int(offset), int(rows))
        t = t.append_column("_path", pa.array([str(path)] * t.num_rows, pa.string()))
        parts.append(
            t.append_column("_line", pa.array(range(int(first) + 1, int(first) + 1 + t.num_rows), pa.int64()))
        )
    return pa.concat_tables(parts, promote_options="default")


def _check_hub(src: SourceConfig, timeout: float = 3.0) -> None:
    """Fail in seconds, not after the datasets library's retries, when a Hub id is asked for and the Hub cannot be
    reached. ``HF_HUB_OFFLINE=1`` skips the check: the dataset is then read from the local cache."""
    import os
    from urllib.parse import urlparse

    from onlyif.net import connect_error

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or Path(src.hf).exists():
        return
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    reason = connect_error(host, port, timeout)
    if reason is not None:
        raise ConfigError(
            f"{_where(src)}: cannot reach the Hugging Face Hub at {host}:{port} ({reason}); "
            "set HF_HUB_OFFLINE=1 to read it from the local cache, or point path: at local files"
        )


def _load_hf(rs: ResolvedSource):
    import datasets

    src = rs.cfg
    try:
        if rs.file_format == "disk":
            hf_ds = datasets.load_from_disk(rs.files[0])
            if isinstance(hf_ds, datasets.DatasetDict):
                if src.split not in hf_ds:
                    raise ConfigError(f"{_where(src)}.split: {src.split!r} not in {sorted(hf_ds)}")
                hf_ds = hf_ds[src.split]
        else:
            _check_hub(src)
            hf_ds = datasets.load_dataset(src.hf, src.hf_config, split=src.split)
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        raise ConfigError(f"{_where(src)}: cannot load dataset: {str(exc).splitlines()[0]}") from None
    return hf_ds


def hf_arrow_chunks(hf_ds, k: int) -> list[dict[str, Any]] | None:
    """(Arrow cache file, offset, rows) pieces of about total/k rows each of a dataset backed by its cache files
    in order, or None when it is not (an in-memory dataset, or one with an indices mapping)."""
    import pyarrow as pa

    files = [f["filename"] for f in hf_ds.cache_files]
    if not files or getattr(hf_ds, "_indices", None) is not None:
        return None
    sizes = [pa.ipc.open_stream(pa.memory_map(f)).read_all().num_rows for f in files]
    if sum(sizes) != hf_ds.num_rows:
        return None
    step = max(1, -(-sum(sizes) // k))
    return [
        {"path": f, "offset": o, "rows": min(step, n - o)}
        for f, n in zip(files, sizes, strict=True)
        for o in range(0, n, step)
    ]


def _read_arrow_chunks(batch: dict[str, Any]):
    import pyarrow as pa

    parts = []
    for path, offset, rows in zip(batch["path"], batch["offset"], batch["rows"], strict=True):
        table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
        parts.append(table.slice(int(offset), int(rows)))
    return pa.concat_tables(parts, promote_options="default")


def read_source(rs: ResolvedSource, num_blocks: int) -> ray.data.Dataset:
    """A Ray Dataset of the source's raw records in about ``num_blocks`` blocks.

    jsonl files and parquet row groups are cut into byte / row ranges up front, so each block is read by its
    own task and the next ``map_batches`` fuses with the read (no all-to-all repartition). Whole-file formats
    (json arrays, csv, gzip) are split into records per file and then repartitioned.
    """
    import ray.data

    fmt = rs.file_format
    if fmt == "jsonl" and not any(f.endswith(".gz") for f in rs.files):
        per_file = max(1, -(-num_blocks // len(rs.files)))
        chunks = [c for f in rs.files for c in jsonl_chunks(f, per_file)]
        return ray.data.from_items(chunks, override_num_blocks=len(chunks)).map_batches(
            _read_jsonl_chunks, batch_size=1, batch_format="numpy"
        )
    if fmt in TEXT_FORMATS:
        files = ray.data.read_binary_files(list(rs.files), include_paths=True, override_num_blocks=len(rs.files))
        ds = files.map_batches(_split_files, fn_kwargs={"fmt": fmt}, batch_size=1, batch_format="numpy")
        return ds.repartition(num_blocks)
    if fmt == "parquet":
        pieces = parquet_chunks(rs.files, num_blocks)
        if not pieces:
            raise OnlyIfError(f"{_where(rs.cfg)}: the source has no rows")
        return ray.data.from_items(pieces, override_num_blocks=len(pieces)).map_batches(
            _read_parquet_chunks, batch_size=1, batch_format="numpy"
        )
    # not ray.data.from_huggingface: it first asks the Hub for parquet exports, which fails offline. A dataset
    # backed by Arrow cache files (load_dataset, load_from_disk) is read from them by tasks, by row ranges, so
    # its rows never pass through the driver.
    hf_ds = _load_hf(rs)
    pieces = hf_arrow_chunks(hf_ds, num_blocks)
    if pieces:
        return ray.data.from_items(pieces, override_num_blocks=len(pieces)).map_batches(
            _read_arrow_chunks, batch_size=1, batch_format="numpy"
        )
    table = hf_ds.with_format("arrow")[:]
    step = max(1, -(-table.num_rows // num_blocks))
    return ray.data.from_arrow([table.slice(o, step) for o in range(0, max(table.num_rows, 1), step)])
