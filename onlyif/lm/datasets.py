"""Dataset folders (``DATA/<split>/*.parquet``) as training and evaluation read them.

Two dataset kinds are accepted:

* ``synthetic`` — the rewrite-task contract written by ``onlyif generate`` (``rule_x``, ``rule_y``, ``input``,
  ``output``, optionally ``noop``, ``domain``, ``k``, ``rule_id``);
* ``text`` — generic instruction data (``prompt`` and ``response`` strings, e.g. from ``onlyif mix``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from onlyif.errors import OnlyIfError

SYNTHETIC_COLUMNS = ("rule_x", "rule_y", "input", "output")
TEXT_COLUMNS = ("prompt", "response")
META_COLUMNS = ("noop", "domain", "k", "rule_id")
Kind = Literal["synthetic", "text"]


def split_files(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """The parquet files of ``DATA/<split>``; a clear error when the folder or its files are missing."""
    root = Path(data_dir)
    if not root.is_dir():
        raise OnlyIfError(f"--data {root}: dataset directory not found")
    folder = root / split
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise OnlyIfError(f"--data {root}: split {split!r} not found (splits present: {', '.join(present) or 'none'})")
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise OnlyIfError(f"{folder}: no parquet files")
    return files


def dataset_kind(data_dir: str | os.PathLike, split: str) -> Kind:
    """``synthetic`` or ``text`` from the split's parquet schema; names the file and missing columns if neither."""
    import pyarrow.parquet as pq

    first = split_files(data_dir, split)[0]
    try:
        names = set(pq.read_schema(first).names)
    except Exception as exc:  # any unreadable file is the same user error
        raise OnlyIfError(f"{first}: not a readable parquet file ({exc.__class__.__name__})") from None
    if set(SYNTHETIC_COLUMNS) <= names:
        return "synthetic"
    if set(TEXT_COLUMNS) <= names:
        return "text"
    missing_syn = sorted(set(SYNTHETIC_COLUMNS) - names)
    missing_txt = sorted(set(TEXT_COLUMNS) - names)
    raise OnlyIfError(
        f"{first}: wrong columns {sorted(names)}: need the synthetic contract (missing {missing_syn}) "
        f"or prompt/response text (missing {missing_txt})"
    )


def read_rows(
    data_dir: str | os.PathLike, split: str, limit: int | None = None, applied_only: bool = False
) -> dict[str, list]:
    """The first ``limit`` rows of a split as column lists (the columns codecs and metrics use); with
    ``applied_only``, the first rows whose ``noop`` is false (all rows where the data has no ``noop`` column)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    kind = dataset_kind(data_dir, split)
    wanted = (SYNTHETIC_COLUMNS if kind == "synthetic" else TEXT_COLUMNS) + META_COLUMNS
    cols: dict[str, list] = {}
    for f in split_files(data_dir, split):
        schema_names = pq.read_schema(f).names
        table = pq.read_table(f, columns=[c for c in wanted if c in schema_names])
        if applied_only and "noop" in table.column_names:
            table = table.filter(pc.invert(pc.fill_null(table["noop"], False)))
        if limit is not None:
            table = table.slice(0, limit - len(next(iter(cols.values()), [])))
        for name in table.column_names:
            cols.setdefault(name, []).extend(table.column(name).to_pylist())
        if limit is not None and len(next(iter(cols.values()), [])) >= limit:
            break
    return cols
