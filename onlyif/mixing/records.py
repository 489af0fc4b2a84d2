"""The per-batch record step of a mixture: normalize, quarantine, filter, flag contamination and sign each row.

Pure with respect to Ray: :func:`process_batch` maps one Arrow batch of raw records (as read by
:mod:`onlyif.data.sources`) to one Arrow table of the :func:`work_schema`; the Ray layer only schedules it.
"""

from __future__ import annotations

import json
from typing import Any

from onlyif.mixing.decontam import NgramIndex
from onlyif.mixing.dedup import minhash_signatures
from onlyif.mixing.normalize import RecordError, flatten, normalize_record
from onlyif.mixing.text import exact_key

OK, QUARANTINED, FILTERED, CONTAMINATED = "ok", "quarantined", "filtered", "contaminated"


def output_schema():
    """Arrow schema of the mixture rows (the contract with the trainer)."""
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("domain", pa.string()),
            ("messages", pa.list_(message)),
            ("prompt", pa.string()),
            ("response", pa.string()),
        ]
    )


def work_schema():
    """Arrow schema of the rows after the record step: the output columns plus status and dedup columns."""
    import pyarrow as pa

    extra = [
        ("status", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),
        ("path", pa.string()),
        ("line", pa.int64()),
        ("key", pa.string()),
        ("minhash", pa.binary()),
    ]
    return pa.schema(list(output_schema()) + extra)


def work_block(table):
    """``table``, or an empty table of the work schema for the block of an empty source file (it has no columns)."""
    return table if "source" in table.column_names else work_schema().empty_table()


def output_rows(rows):
    """The output columns of work rows, ``prompt`` and ``response`` made again from ``messages`` (the way the
    record step made them: :func:`~onlyif.mixing.normalize.flatten`), for rows kept without them."""
    import pyarrow as pa

    flat = [flatten(m) for m in rows.column("messages").to_pylist()]
    text = {"prompt": [p for p, _ in flat], "response": [r for _, r in flat]}
    return pa.table(
        {f: text[f] if f in text else rows.column(f) for f in output_schema().names}, schema=output_schema()
    )


def _raw_text(record: Any) -> str:
    return record if isinstance(record, str) else json.dumps(record, ensure_ascii=False, default=str)


def process_batch(table, src: dict[str, Any], dedup: dict[str, Any], index: NgramIndex | None, flat_text: bool = True):
    """Normalize, quarantine, filter, flag contamination and sign one batch of raw records (pure w.r.t. Ray).

    ``flat_text=False`` leaves out ``prompt`` and ``response`` (:func:`output_rows` makes them again from
    ``messages``): a mixture that keeps every row until it has chosen holds its text once instead of twice.
    """
    import pyarrow as pa

    rows = []
    for rec in table.to_pylist():
        out = {"source": src["name"], "domain": src["domain"], "path": rec.get("_path"), "line": rec.get("_line")}
        if "_text" in rec:
            if rec["_error"] is not None:
                rows.append(out | {"status": QUARANTINED, "reason": rec["_error"], "raw": None})
                continue
            try:
                record = json.loads(rec["_text"])
            except json.JSONDecodeError as exc:
                rows.append(out | {"status": QUARANTINED, "reason": f"invalid JSON ({exc.msg})", "raw": rec["_text"]})
                continue
        else:  # a typed row (parquet: with its file and row number)
            record = {k: v for k, v in rec.items() if k not in ("_path", "_line")}
        try:
            row = normalize_record(record, src["format"], src["name"], src["domain"], src["columns"])
        except RecordError as exc:
            rows.append(out | {"status": QUARANTINED, "reason": str(exc), "raw": _raw_text(record)})
            continue
        row |= out
        size = len(row["prompt"]) + len(row["response"])
        filters = src["filters"]
        if filters["drop_empty"] and (not row["prompt"].strip() or not row["response"].strip()):
            row |= {"status": FILTERED, "reason": "empty prompt or response"}
        elif size < filters["min_chars"]:
            row |= {"status": FILTERED, "reason": f"shorter than min_chars {filters['min_chars']}"}
        elif filters["max_chars"] is not None and size > filters["max_chars"]:
            row |= {"status": FILTERED, "reason": f"longer than max_chars {filters['max_chars']}"}
        elif index is not None and (hit := index.match(f"{row['prompt']}\n{row['response']}")):
            row |= {"status": CONTAMINATED, "reason": f"{hit[0]}: {hit[1]}"}
        else:
            row |= {"status": OK, "key": exact_key(row["prompt"], row["response"])}
        rows.append(row)
    ok = [r for r in rows if r["status"] == OK]
    if dedup["near"] and ok:
        sigs = minhash_signatures([f"{r['prompt']}\n{r['response']}" for r in ok], dedup["num_perm"], dedup["shingle"])
        for r, s in zip(ok, sigs, strict=True):
            r["minhash"] = s.tobytes()
    schema = work_schema()
    if not flat_text:
        schema = pa.schema([f for f in schema if f.name not in ("prompt", "response")])
    return pa.Table.from_pylist([{f: r.get(f) for f in schema.names} for r in rows], schema=schema)
