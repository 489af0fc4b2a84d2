"""Vectorized example generation for one chunk of a split, and the content digest of a table (pure).

For each example: draw an input of the configured length; for an *applied* example write x at a random
position; for a *no-op* example redraw the input until x does not occur. The output replaces the LEFTMOST
occurrence of x by y (``input.replace(x, y, 1)``), found with a rolling hash over all windows and verified.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from onlyif.errors import ConfigError
from onlyif.tasks.plan import SPLITS, SplitPlan, rng_for
from onlyif.tasks.rules import FAMILIES, letters_to_strings

SCHEMA = pa.schema(
    [
        ("rule_id", pa.int64()),
        ("rule_x", pa.string()),
        ("rule_y", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("noop", pa.bool_()),
        ("domain", pa.string()),
        ("k", pa.int64()),
    ]
)
"""The parquet contract every tool reads."""

_BASE = np.uint32(0x01000193)  # FNV-32 prime; collisions are caught by the exact check
_MAX_NOOP_ROUNDS = 1000
_BLOCK = 4096


def _powers(n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint32)
    out[0] = 1
    out[1:] = _BASE
    return np.cumprod(out, dtype=np.uint32)  # wraps modulo 2**32


def leftmost(inp: np.ndarray, lengths: np.ndarray, pat: np.ndarray, pat_len: np.ndarray) -> np.ndarray:
    """Start of the leftmost occurrence of each row's pattern in its input, or -1.

    Rolling polynomial hash over all windows (mod 2**32), rows grouped by pattern length, then an exact check of
    the first candidate; a row whose candidate is a hash collision falls back to ``str.find``.
    """
    n, width = inp.shape
    if n > _BLOCK:  # work in cache-sized row blocks
        return np.concatenate(
            [
                leftmost(inp[s : s + _BLOCK], lengths[s : s + _BLOCK], pat[s : s + _BLOCK], pat_len[s : s + _BLOCK])
                for s in range(0, n, _BLOCK)
            ]
        )
    pw = _powers(width + 1)
    first = np.full(n, -1, dtype=np.int64)
    with np.errstate(over="ignore"):
        prefix = np.zeros((n, width + 1), dtype=np.uint32)
        np.cumsum((inp + np.uint32(1)) * pw[:width], axis=1, out=prefix[:, 1:], dtype=np.uint32)
        for p in np.unique(pat_len):
            rows = np.nonzero(pat_len == p)[0] if pat_len.min() != pat_len.max() else slice(None)
            pre = prefix[rows]
            hx = ((pat[rows, :p] + np.uint32(1)) * pw[:p]).sum(axis=1, dtype=np.uint32)
            n_starts = width - p + 1
            window = pre[:, p : p + n_starts] - pre[:, :n_starts]
            cand = window == hx[:, None] * pw[None, :n_starts]
            lens = lengths[rows]
            if lens.min() < width:
                cand &= np.arange(n_starts)[None, :] + p <= lens[:, None]
            first[rows] = np.where(cand.any(axis=1), cand.argmax(axis=1), -1)
    rows = np.nonzero(first >= 0)[0]
    if len(rows):
        pmask = np.arange(pat.shape[1])[None, :] < pat_len[rows, None]
        cols = np.minimum(first[rows, None] + np.arange(pat.shape[1])[None, :], width - 1)
        same = (np.take_along_axis(inp[rows], cols, axis=1) == pat[rows]) | ~pmask
        for r in rows[~same.all(axis=1)]:  # hash collisions: rare (~1 row in 10^8)
            text = (inp[r, : lengths[r]] + ord("a")).tobytes().decode()
            first[r] = text.find((pat[r, : pat_len[r]] + ord("a")).tobytes().decode())
    return first


def _replace_first(inp, lengths, first, y, y_len, x_len) -> tuple[np.ndarray, np.ndarray]:
    """Letters and lengths of ``input`` with x (at ``first``, where >= 0) replaced by y."""
    n, width = inp.shape
    found = first >= 0
    out_len = np.where(found, lengths - x_len + y_len, lengths)
    out_width = int(out_len.max()) if n else 0
    j = np.arange(out_width)[None, :]
    p = np.where(found, first, out_width)[:, None]
    src = np.where(j < p, j, j - y_len[:, None] + x_len[:, None])
    from_inp = np.take_along_axis(inp, np.clip(src, 0, width - 1), axis=1)
    from_y = np.take_along_axis(y, np.clip(j - p, 0, y.shape[1] - 1), axis=1)
    out = np.where((j >= p) & (j < p + y_len[:, None]), from_y, from_inp)
    return out, out_len


def _write_at(mat: np.ndarray, rows: np.ndarray, pos: np.ndarray, pat: np.ndarray, pat_len: np.ndarray) -> None:
    """Write each row's pattern into ``mat`` at ``pos`` (in place)."""
    width = mat.shape[1]
    if len(rows) == 0:
        return
    if pat_len.min() == pat_len.max():  # fast path: one pattern length
        p = int(pat_len[0])
        flat = (rows * width + pos)[:, None] + np.arange(p)[None, :]
        mat.reshape(-1)[flat] = pat[:, :p]
        return
    r, c = np.nonzero(np.arange(pat.shape[1])[None, :] < pat_len[:, None])
    mat[rows[r], pos[r] + c] = pat[r, c]


def generate_chunk(split: SplitPlan, seed: int, chunk: int, start: int, stop: int) -> pa.Table:
    """Rows ``start:stop`` of ``split`` (chunk number ``chunk``) as an Arrow table with :data:`SCHEMA`."""
    rng = rng_for(seed, 1000 + SPLITS.index(split.name), chunk)
    rules = split.rules
    idx = split.assign[start:stop]
    noop = split.noop[start:stop]
    n = len(idx)
    x, x_len, y, y_len = rules.x[idx], rules.x_len[idx], rules.y[idx], rules.y_len[idx]
    lo, hi = split.input_length
    lengths = rng.integers(lo, hi + 1, n) if lo < hi else np.full(n, hi, dtype=np.int64)
    inp = rng.integers(0, split.alphabet_size, (n, hi), dtype=np.uint8)

    applied = np.nonzero(~noop)[0]
    pos = (rng.random(len(applied)) * (lengths[applied] - x_len[applied] + 1)).astype(np.int64)
    _write_at(inp, applied, pos, x[applied], x_len[applied])

    first = leftmost(inp, lengths, x, x_len)
    for _ in range(_MAX_NOOP_ROUNDS):
        bad = np.nonzero(noop & (first >= 0))[0]
        if len(bad) == 0:
            break
        inp[bad] = rng.integers(0, split.alphabet_size, (len(bad), hi), dtype=np.uint8)
        first[bad] = leftmost(inp[bad], lengths[bad], x[bad], x_len[bad])
    else:
        raise ConfigError(
            f"{split.name}: cannot build no-op inputs (x keeps occurring in random inputs); "
            f"use a larger alphabet_size or longer pattern_length, or noop_share 0"
        )
    assert not (first[applied] < 0).any(), "an applied example lost its pattern"

    # Output: y written over x at its leftmost occurrence. In place where |x| = |y|, shifted otherwise.
    same_len = applied[x_len[applied] == y_len[applied]]
    shifted = applied[x_len[applied] != y_len[applied]]
    width = max(hi, int((lengths[shifted] - x_len[shifted] + y_len[shifted]).max()) if len(shifted) else 0)
    out = np.zeros((n, width), dtype=np.uint8)
    out[:, :hi] = inp
    _write_at(out, same_len, first[same_len], y[same_len], y_len[same_len])
    out_len = lengths.copy()
    if len(shifted):
        rows_out, rows_len = _replace_first(
            inp[shifted], lengths[shifted], first[shifted], y[shifted], y_len[shifted], x_len[shifted]
        )
        out[shifted, : rows_out.shape[1]] = rows_out
        out_len[shifted] = rows_len
    return pa.Table.from_arrays(
        [
            pa.array(split.rule_ids[idx], pa.int64()),
            letters_to_strings(x, x_len),
            letters_to_strings(y, y_len),
            letters_to_strings(inp, lengths),
            letters_to_strings(out, out_len),
            pa.array(first < 0, pa.bool_()),
            pa.array(FAMILIES, pa.string()).take(pa.array(rules.family[idx], pa.int8())),
            pa.array(rules.k[idx], pa.int64()),
        ],
        schema=SCHEMA,
    )


def _column_bytes(col: pa.ChunkedArray | pa.Array) -> bytes:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
        offsets = np.frombuffer(arr.buffers()[1], dtype=off_type)[arr.offset : arr.offset + len(arr) + 1]
        data = arr.buffers()[2]
        body = b"" if data is None else data.to_pybytes()[offsets[0] : offsets[-1]]
        return np.diff(offsets).astype("<i8").tobytes() + body
    if pa.types.is_boolean(arr.type):
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.uint8).tobytes()
    return np.asarray(arr.to_numpy(zero_copy_only=False)).astype("<i8").tobytes()


def table_digest(table: pa.Table) -> str:
    """sha256 of a table's content (column names, lengths, values), independent of Arrow chunking."""
    h = hashlib.sha256()
    for name in table.column_names:
        h.update(name.encode() + b"\0")
        h.update(hashlib.sha256(_column_bytes(table.column(name))).digest())
    return h.hexdigest()
