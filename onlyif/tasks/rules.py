"""Rules ``x → y`` of the rewrite task and their semantic-domain families (pure numpy).

Patterns are letter-index matrices (``uint8``, 0 = ``a``) with a length per row; columns past the length are
padding. Families, each with a parameter k:

- ``random``: uniform letters (k = 0);
- ``repeated``: runs of length k, neighbouring runs differ (``aaabbbccc``);
- ``periodic``: a k-block repeated (``abcabc``);
- ``mirrored``: a k-block followed by its reverse, repeated (``abccbaabc``).

x and y of one rule share the family and k; x ≠ y; rules are distinct ``(x, y)`` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from onlyif.errors import ConfigError
from onlyif.tasks.config import FamilyConfig

FAMILIES = ("random", "repeated", "periodic", "mirrored")


def letters_to_strings(mat: np.ndarray, lengths: np.ndarray) -> pa.StringArray:
    """Turn a letter-index matrix and row lengths into an Arrow string array (no Python loop)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and lengths.min() == lengths.max():  # fast path: one length, no mask
        data = mat[:, : lengths[0]] + np.uint8(ord("a"))
    else:
        data = mat[np.arange(mat.shape[1])[None, :] < lengths[:, None]] + np.uint8(ord("a"))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data)))


def _adjacent_distinct(rng: np.random.Generator, n: int, m: int, alphabet_size: int) -> np.ndarray:
    """``n × m`` letters where each letter differs from the one before it."""
    first = rng.integers(0, alphabet_size, (n, 1))
    steps = rng.integers(1, alphabet_size, (n, m - 1))
    return (
        (first + np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(steps, axis=1)], axis=1)) % alphabet_size
    ).astype(np.uint8)


def family_patterns(
    rng: np.random.Generator, family: str, ks: np.ndarray, alphabet_size: int, width: int
) -> np.ndarray:
    """``len(ks) × width`` letter matrix of patterns of ``family`` with parameter ``ks`` per row."""
    n = len(ks)
    j = np.arange(width)[None, :]
    k = np.maximum(np.asarray(ks, dtype=np.int64), 1)[:, None]
    if family == "random":
        return rng.integers(0, alphabet_size, (n, width), dtype=np.uint8)
    if family == "repeated":
        runs = _adjacent_distinct(rng, n, width, alphabet_size)
        return np.take_along_axis(runs, j // k, axis=1)
    block = _adjacent_distinct(rng, n, width, alphabet_size)
    if family == "periodic":
        return np.take_along_axis(block, np.broadcast_to(j % k, (n, width)), axis=1)
    if family == "mirrored":
        m = j % (2 * k)
        return np.take_along_axis(block, np.where(m < k, m, 2 * k - 1 - m), axis=1)
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


@dataclass
class RuleTable:
    """Rules of one split: letter matrices, lengths, strings, family and k per rule."""

    x: np.ndarray  # uint8 [R, Pmax]
    x_len: np.ndarray  # int64 [R]
    y: np.ndarray
    y_len: np.ndarray
    family: np.ndarray  # int8 [R], index into FAMILIES
    k: np.ndarray  # int64 [R], 0 for random

    def __len__(self) -> int:
        return len(self.x_len)

    @property
    def x_str(self) -> pa.StringArray:
        return letters_to_strings(self.x, self.x_len)

    @property
    def y_str(self) -> pa.StringArray:
        return letters_to_strings(self.y, self.y_len)

    def keys(self) -> list[str]:
        """``x→y`` identity strings, one per rule."""
        return [f"{a}→{b}" for a, b in zip(self.x_str.to_pylist(), self.y_str.to_pylist(), strict=True)]

    @staticmethod
    def concat(tables: list[RuleTable], width: int) -> RuleTable:
        def pad(m: np.ndarray) -> np.ndarray:
            return np.pad(m, ((0, 0), (0, width - m.shape[1])))

        return RuleTable(
            x=np.concatenate([pad(t.x) for t in tables]),
            x_len=np.concatenate([t.x_len for t in tables]),
            y=np.concatenate([pad(t.y) for t in tables]),
            y_len=np.concatenate([t.y_len for t in tables]),
            family=np.concatenate([t.family for t in tables]),
            k=np.concatenate([t.k for t in tables]),
        )


def sample_rules(
    rng: np.random.Generator,
    family: FamilyConfig,
    n: int,
    alphabet_size: int,
    pattern_length: tuple[int, int],
    taken: set[str],
    max_rounds: int = 64,
    split: str = "train",
) -> RuleTable:
    """Draw ``n`` distinct rules of ``family`` whose ``x→y`` key is not in ``taken`` (which is updated)."""
    width = pattern_length[1]
    k_lo, k_hi = family.k if family.k is not None else (0, 0)
    parts: list[RuleTable] = []
    have = 0
    for _ in range(max_rounds):
        if have >= n:
            break
        m = max(2 * (n - have), 64)
        ks = rng.integers(k_lo, k_hi + 1, m)
        cand = RuleTable(
            x=family_patterns(rng, family.name, ks, alphabet_size, width),
            x_len=rng.integers(pattern_length[0], pattern_length[1] + 1, m),
            y=family_patterns(rng, family.name, ks, alphabet_size, width),
            y_len=rng.integers(pattern_length[0], pattern_length[1] + 1, m),
            family=np.full(m, FAMILIES.index(family.name), dtype=np.int8),
            k=ks.astype(np.int64),
        )
        keep = []
        for i, key in enumerate(cand.keys()):
            x, y = key.split("→")
            if x != y and key not in taken:
                taken.add(key)
                keep.append(i)
                if have + len(keep) == n:
                    break
        keep = np.asarray(keep, dtype=np.int64)
        parts.append(
            RuleTable(cand.x[keep], cand.x_len[keep], cand.y[keep], cand.y_len[keep], cand.family[keep], cand.k[keep])
        )
        have += len(keep)
    if have < n:
        k_text = "" if family.k is None else f", k {list(family.k)}"
        raise ConfigError(
            f"{split}: cannot draw {n} distinct new rules of family {family.name!r} (alphabet_size "
            f"{alphabet_size}, pattern_length {list(pattern_length)}{k_text}): only {have} found; "
            f"use a larger alphabet_size, longer pattern_length or fewer instructions"
        )
    return RuleTable.concat(parts, width)
