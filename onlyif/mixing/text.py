"""Text canonicalization shared by dedup, decontamination and diversity metrics."""

from __future__ import annotations

import hashlib
import re

import numpy as np

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_PRIME = np.uint32(16777619)


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


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """Distinct 32-bit hashes of the character n-grams of the canonical text (one for texts shorter than ``n``).

    A polynomial hash over code points, vectorized with numpy (uint32 arithmetic wraps); stable across
    processes, unlike ``hash()``.
    """
    c = np.frombuffer(canonical(text).encode("utf-32-le"), dtype=np.uint32)
    m = max(len(c) - n + 1, 1)
    h = np.zeros(m, dtype=np.uint32)
    for k in range(min(n, len(c))):
        h = h * _PRIME + c[k : k + m]
    return np.unique(h)
