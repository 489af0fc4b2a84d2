"""Exact match of greedy generations on a split: overall, no-op vs applied, per family and per k, with failures.

:func:`evaluate_exact_match` is the standalone entry point (a model directory or run directory + a split);
the training loop calls :func:`generate_records` / :func:`summarize` on the in-memory model.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from onlyif.errors import OnlyIfError
from onlyif.lm.codec import CharCodec, Codec
from onlyif.lm.datasets import read_rows
from onlyif.lm.decode import greedy_decode


def eval_items(codec: Codec, rows: dict[str, Sequence]) -> list[dict[str, Any]]:
    """One item per row: prompt and reference response ids, decode budget, expected text and the breakdown keys."""
    prompts, responses = codec.encode(rows)
    expected = codec.expected(rows)
    texts = codec.prompt_texts(rows)
    slack = 0 if isinstance(codec, CharCodec) else 4  # other tokenizers may spell the answer differently
    items = []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        items.append(
            {
                "prompt_ids": p,
                "response_ids": r,
                "budget": len(r) + slack,
                "prompt": texts[i],
                "expected": expected[i],
                "noop": _get(rows, "noop", i),
                "domain": _get(rows, "domain", i),
                "k": _get(rows, "k", i),
            }
        )
    return items


def _get(rows: dict[str, Sequence], key: str, i: int) -> Any:
    col = rows.get(key)
    return None if col is None else col[i]


def generate_records(
    model: Any, codec: Codec, items: list[dict[str, Any]], batch_size: int, desc: str = "exact match"
) -> list[dict[str, Any]]:
    """Decode every item greedily and mark exact matches (``ok``) with what the model produced (``got``)."""
    gens = greedy_decode(
        model,
        [it["prompt_ids"] for it in items],
        [it["budget"] for it in items],
        eos_id=codec.eos_id,
        pad_id=codec.pad_id,
        batch_size=batch_size,
        desc=desc,
    )
    records = []
    for it, ids in zip(items, gens, strict=True):
        got = codec.decode(ids)
        ended = codec.eos_id in ids
        rec = {k: v for k, v in it.items() if k not in ("prompt_ids", "response_ids", "budget")}
        rec.update(got=got, ok=bool(ended and got == it["expected"]))
        records.append(rec)
    return records


def _score(records: list[dict[str, Any]]) -> dict[str, float]:
    n = len(records)
    return {"n": n, "exact_match": (sum(r["ok"] for r in records) / n) if n else float("nan")}


def summarize(records: list[dict[str, Any]], failures: int = 20) -> dict[str, Any]:
    """Overall exact match, no-op vs applied, per family (``domain``) and per ``k``, and the first failures."""
    out: dict[str, Any] = _score(records)
    if any(r["noop"] is not None for r in records):
        out["applied"] = _score([r for r in records if r["noop"] is False])
        out["noop"] = _score([r for r in records if r["noop"] is True])
    for key, name in (("domain", "by_family"), ("k", "by_k")):
        groups: dict[Any, list] = defaultdict(list)
        for r in records:
            if r[key] is not None:
                groups[r[key]].append(r)
        if groups:
            out[name] = {str(g): _score(rs) for g, rs in sorted(groups.items())}
    out["failures"] = [
        {
            "prompt": r["prompt"],
            "expected": r["expected"],
            "got": r["got"],
            "noop": r["noop"],
            "domain": r["domain"],
            "k": r["k"],
        }
        for r in records
        if not r["ok"]
    ][:failures]
    return out


def items_nll(
    model: Any, codec: Codec, items: list[dict[str, Any]], batch_size: int, desc: str = "loss"
) -> tuple[list[float], list[int]]:
    """Per item: the summed response-token NLL and the number of tokens scored (see :mod:`onlyif.lm.loss`)."""
    from onlyif.lm.loss import response_nll

    return response_nll(
        model,
        [it["prompt_ids"] for it in items],
        [it["response_ids"] for it in items],
        codec.pad_id,
        batch_size,
        desc=desc,
    )


def flat_metrics(split: str, summary: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics named ``<split>/exact_match``, ``…_applied``, ``…_noop``, ``<split>/family/<f>/exact_match``,
    ``<split>/k/<k>/exact_match`` (breakdowns only when there are at least two groups) and ``<split>/loss``."""
    m = {f"{split}/exact_match": summary["exact_match"], f"{split}/n": float(summary["n"])}
    if summary.get("loss") is not None:
        m[f"{split}/loss"] = summary["loss"]
    for part in ("applied", "noop"):
        if part in summary:
            m[f"{split}/exact_match_{part}"] = summary[part]["exact_match"]
    for name, label in (("by_family", "family"), ("by_k", "k")):
        groups = summary.get(name, {})
        if len(groups) > 1:
            for g, s in groups.items():
                m[f"{split}/{label}/{g}/exact_match"] = s["exact_match"]
    return m


def evaluate_exact_match(
    model: str | os.PathLike | Any,
    data_dir: str | os.PathLike,
    split: str,
    *,
    max_examples: int | None = None,
    batch_size: int = 256,
    failures: int = 20,
    codec: Codec | None = None,
) -> dict[str, Any]:
    """Exact match of ``model`` (a path, or an in-memory model with ``codec``) on ``DATA/<split>``, in process."""
    if isinstance(model, str | os.PathLike):
        from onlyif.lm.models import load_eval_model

        model, codec = load_eval_model(model)
    elif codec is None:
        raise OnlyIfError("evaluate_exact_match: an in-memory model needs its codec")
    rows = read_rows(data_dir, split, max_examples)
    items = eval_items(codec, rows)
    records = generate_records(model, codec, items, batch_size, desc=split)
    nll, tokens = (sum(x) for x in items_nll(model, codec, items, batch_size, desc=f"{split} loss"))
    return {"split": split, **summarize(records, failures), "loss": nll / tokens if tokens else None}
