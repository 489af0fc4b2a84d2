"""Text canonicalization shared by dedup, decontamination and diversity metrics."""

from __future__ import annotations

import hashlib
import re

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def canonical(text: str) -> str:
    """Lower-cased, whitespace-collapsed, stripped text."""
    return _WS.sub(" ", text.lower()).strip()


def exact_key(prompt: str, response: str) -> str:
    """Hash of the canonical prompt and response: equal keys are exact duplicates."""
    return hashlib.sha256(f"{canonical(prompt)}\x00{canonical(response)}".encode()).hexdigest()


def words(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``)."""
    return _WORD.findall(text.lower())


def word_ngrams(tokens: list[str], n: int) -> list[str]:
    """Space-joined word n-grams of ``tokens`` (none when there are fewer than ``n`` tokens)."""
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def char_shingles(text: str, n: int) -> set[str]:
    """Character n-grams of the canonical text (the whole text when shorter than ``n``)."""
    t = canonical(text)
    if len(t) <= n:
        return {t}
    return {t[i : i + n] for i in range(len(t) - n + 1)}
