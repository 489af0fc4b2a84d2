"""Vectorized example generation for one chunk of a split, and the content digest of a table (pure).

For each example: draw an input of the configured length; for an *applied* example write x at a random
position; for a *no-op* example redraw the input until x does not occur. The output replaces the LEFTMOST
occurrence of x by y (``input.replace(x, y, 1)``), found with a rolling hash over all windows and verified.

One module: the vectorized leftmost search, the writers of x and y and the per-chunk generation share one array
layout (padded ``uint8`` rows + lengths), and the split digest is defined over the columns they produce.
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import xxhash

from onlyif.errors import ConfigError
from onlyif.tasks.plan import SPLITS, SplitPlan, rng_for
from onlyif.tasks.rules import FAMILIES

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

_MAX_NOOP_ROUNDS = 1000
_BLOCK = 16384  # rows per leftmost() pass: bounds the candidate matrix (rows x starts booleans)


def _u64_windows(buf: np.ndarray, n_starts: int, offset: int) -> np.ndarray:
    """A read-only ``rows × n_starts`` view of the 8 bytes starting at each column ``offset + s`` of ``buf``."""
    return np.ndarray((buf.shape[0], n_starts), dtype="<u8", buffer=buf, offset=offset, strides=(buf.shape[1], 1))


def _first_confirmed(cand: np.ndarray, first: np.ndarray, rest_matches) -> np.ndarray:
    """Each row's leftmost candidate start (``cand``: rows × starts, its first 8 letters match) for which
    ``rest_matches(rows, starts)`` confirms the rest of the pattern, written into ``first``; a row whose candidate
    fails drops it and takes its next one."""
    rows = np.arange(cand.shape[0])
    col = cand.argmax(axis=1)
    keep = cand[rows, col]
    rows, col = rows[keep], col[keep]
    while len(rows):
        ok = rest_matches(rows, col)
        first[rows[ok]] = col[ok]
        rows, col = rows[~ok], col[~ok]
        cand[rows, col] = False  # a false candidate: try the row's next one
        sub = cand[rows]
        col = sub.argmax(axis=1)
        keep = sub[np.arange(len(rows)), col]
        rows, col = rows[keep], col[keep]
    return first


def _leftmost_fixed(inp: np.ndarray, lengths: np.ndarray, pat: np.ndarray, p: int, first: np.ndarray) -> np.ndarray:
    """:func:`leftmost` when every pattern has the same length ``p >= 8``: no padding, no masks. The words
    compared start at 0, 8, … and the last one at ``p - 8`` (overlapping), so every read stays in the window."""
    n, width = inp.shape
    n_starts = width - p + 1
    offsets = [*range(0, p - 8, 8), p - 8]
    pat_words = [np.ndarray((n,), dtype="<u8", buffer=pat, offset=o, strides=(pat.shape[1],)) for o in offsets]
    cand = _u64_windows(inp, n_starts, 0) == pat_words[0][:, None]
    if lengths.min() < width:
        cand &= np.arange(n_starts)[None, :] + p <= lengths[:, None]
    tails = [(_u64_windows(inp, n_starts, o), w) for o, w in zip(offsets[1:], pat_words[1:], strict=True)]

    def rest_matches(rows: np.ndarray, col: np.ndarray) -> np.ndarray:
        ok = np.ones(len(rows), dtype=bool)
        for win, w in tails:
            ok &= win[rows, col] == w[rows]
        return ok

    return _first_confirmed(cand, first, rest_matches)


def leftmost(inp: np.ndarray, lengths: np.ndarray, pat: np.ndarray, pat_len: np.ndarray) -> np.ndarray:
    """Start of the leftmost occurrence of each row's pattern in its input, or -1 (exact, like ``str.find``).

    Each window's first 8 letters are read as one little-endian uint64 (an unaligned strided view) and compared
    with the pattern's first 8 letters (masked where the pattern is shorter): one vector compare per window.
    The first candidate of each row is then checked on the rest of the pattern, 8 letters at a time; a row whose
    candidate fails drops it and takes its next one (rare: it needs 8 equal letters).
    """
    n, width = inp.shape
    if n > _BLOCK:
        return np.concatenate(
            [
                leftmost(inp[s : s + _BLOCK], lengths[s : s + _BLOCK], pat[s : s + _BLOCK], pat_len[s : s + _BLOCK])
                for s in range(0, n, _BLOCK)
            ]
        )
    first = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return first
    pat_len = np.asarray(pat_len, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    pmin, pmax = int(pat_len.min()), int(pat_len.max())
    n_starts = width - max(pmin, 1) + 1
    if n_starts <= 0:
        return first
    if pmin == pmax >= 8 and inp.flags.c_contiguous and pat.flags.c_contiguous:
        return _leftmost_fixed(inp, lengths, pat, pmin, first)
    words = max(1, -(-pmax // 8))
    # Zero-padded copies: every 8-byte read below stays inside its own row.
    buf = np.zeros((n, max(width, width - pmin + 8 * words)), dtype=np.uint8)
    buf[:, :width] = inp
    mask = np.where(np.arange(8 * words)[None, :] < pat_len[:, None], np.uint8(255), np.uint8(0))
    pbuf = np.zeros((n, 8 * words), dtype=np.uint8)
    pbuf[:, : min(pat.shape[1], 8 * words)] = pat[:, : 8 * words]
    pbuf &= mask
    p64, m64 = pbuf.view("<u8"), mask.view("<u8")
    win = _u64_windows(buf, n_starts, 0)
    cand = win == p64[:, :1] if pmin >= 8 else (win & m64[:, :1]) == p64[:, :1]
    if pmin != pmax or lengths.min() < width:  # the pattern must end inside the row's input
        cand &= np.arange(n_starts)[None, :] + pat_len[:, None] <= lengths[:, None]
    tails = [_u64_windows(buf, n_starts, 8 * k) for k in range(1, words)]

    def rest_matches(rows: np.ndarray, col: np.ndarray) -> np.ndarray:
        ok = np.ones(len(rows), dtype=bool)
        for k, tail in enumerate(tails, start=1):
            ok &= (tail[rows, col] & m64[rows, k]) == p64[rows, k]
        return ok

    return _first_confirmed(cand, first, rest_matches)


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
    if pat_len.min() == pat_len.max() and mat.flags.c_contiguous:  # fast path: one length, p-byte records
        p = int(pat_len[0])
        if p == 0:
            return
        slots = np.ndarray((mat.shape[0], width - p + 1), dtype=f"V{p}", buffer=mat, strides=(width, 1))
        slots[rows, pos] = np.ascontiguousarray(pat[:, :p]).view(f"V{p}")[:, 0]
        return
    r, c = np.nonzero(np.arange(pat.shape[1])[None, :] < pat_len[:, None])
    mat[rows[r], pos[r] + c] = pat[r, c]


_A = np.uint8(ord("a"))


def _ascii_strings(mat: np.ndarray, lengths: np.ndarray) -> pa.StringArray:
    """An Arrow string array from a matrix of ASCII letters and row lengths; zero-copy when every row is full."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n, width = mat.shape
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    if n and lengths.min() == lengths.max() == width and mat.flags.c_contiguous:
        data = mat
    elif n and lengths.min() == lengths.max():
        data = np.ascontiguousarray(mat[:, : lengths[0]])
    else:
        data = mat[np.arange(width)[None, :] < lengths[:, None]]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def random_letters(rng: np.random.Generator, alphabet_size: int, shape: tuple[int, int]) -> np.ndarray:
    """``rng.integers(0, alphabet_size, shape, dtype=np.uint8)``, the same values and generator state after.

    For a power-of-two alphabet on a little-endian machine with a PCG64 generator holding no buffered 32-bit
    half, numpy's Lemire draw of a uint8 below 2**k is the top k bits of the next byte of the raw 64-bit
    output stream (no rejection); when the byte count is a multiple of 8 that stream is exactly
    ``random_raw(size // 8)``, about 5× faster. Anything else takes ``rng.integers`` itself. Checked against
    ``rng.integers`` by ``tests/test_tasks.py``.
    """
    size = shape[0] * shape[1]
    bits = alphabet_size.bit_length() - 1
    if (
        2 <= alphabet_size <= 256
        and alphabet_size == 1 << bits
        and size % 8 == 0
        and sys.byteorder == "little"
        and isinstance(rng.bit_generator, np.random.PCG64)
        and not rng.bit_generator.state["has_uint32"]
    ):
        out = rng.bit_generator.random_raw(size // 8).view(np.uint8).reshape(shape)
        out >>= np.uint8(8 - bits)
        return out
    return rng.integers(0, alphabet_size, shape, dtype=np.uint8)


def generate_chunk(split: SplitPlan, seed: int, chunk: int, start: int, stop: int) -> pa.Table:
    """Rows ``start:stop`` of ``split`` (chunk number ``chunk``) as an Arrow table with :data:`SCHEMA`."""
    rng = rng_for(seed, 1000 + SPLITS.index(split.name), chunk)
    rules = split.rules
    idx = split.assign[start:stop]
    noop = split.noop[start:stop]
    n = len(idx)
    # Letters are ASCII bytes from here on ("a" = 97), so the letter matrices are the string columns' data.
    x = np.take(rules.x + _A, idx, axis=0)
    y = np.take(rules.y + _A, idx, axis=0)
    x_len, y_len = rules.x_len[idx], rules.y_len[idx]
    lo, hi = split.input_length
    lengths = rng.integers(lo, hi + 1, n) if lo < hi else np.full(n, hi, dtype=np.int64)
    inp = random_letters(rng, split.alphabet_size, (n, hi))
    inp += _A

    applied = np.nonzero(~noop)[0]
    pos = (rng.random(len(applied)) * (lengths[applied] - x_len[applied] + 1)).astype(np.int64)
    _write_at(inp, applied, pos, x[applied], x_len[applied])

    first = leftmost(inp, lengths, x, x_len)
    for _ in range(_MAX_NOOP_ROUNDS):
        bad = np.nonzero(noop & (first >= 0))[0]
        if len(bad) == 0:
            break
        inp[bad] = random_letters(rng, split.alphabet_size, (len(bad), hi)) + _A
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
    if width == hi:
        out = inp.copy()
    else:
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
            _ascii_strings(x, x_len),
            _ascii_strings(y, y_len),
            _ascii_strings(inp, lengths),
            _ascii_strings(out, out_len),
            pa.array(first < 0, pa.bool_()),
            pa.array(FAMILIES, pa.string()).take(pa.array(rules.family[idx], pa.int8())),
            pa.array(rules.k[idx], pa.int64()),
        ],
        schema=SCHEMA,
    )


DIGEST = "xxh3_128"
"""The content digest of a table and a split: XXH3-128 (xxHash >= 0.8, whose output is frozen), hex."""


def _column_hash(col: pa.ChunkedArray | pa.Array) -> bytes:
    """XXH3-128 of one column's content: for strings the int64 little-endian length of each value, then the
    values' bytes; booleans one byte each; integers int64 little-endian. Fed from the Arrow buffers (no copy of
    the string bytes), so it is the hash of that byte string whatever the Arrow chunking."""
    h = xxhash.xxh3_128()
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        off_type = np.int64 if pa.types.is_large_string(col.type) else np.int32
        bodies = []
        for arr in chunks:
            offsets = np.frombuffer(arr.buffers()[1], dtype=off_type)[arr.offset : arr.offset + len(arr) + 1]
            h.update(np.diff(offsets).astype("<i8").tobytes())
            data = arr.buffers()[2]
            if data is not None and len(offsets) and offsets[-1] > offsets[0]:
                bodies.append(memoryview(data)[offsets[0] : offsets[-1]])
        for body in bodies:
            h.update(body)
        return h.digest()
    for arr in chunks:
        if pa.types.is_boolean(arr.type):
            h.update(np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.uint8).tobytes())
        else:
            h.update(np.asarray(arr.to_numpy(zero_copy_only=False)).astype("<i8").tobytes())
    return h.digest()


def table_digest(table: pa.Table) -> str:
    """:data:`DIGEST` of a table's content (column names, lengths, values), independent of Arrow chunking:
    the hash of, per column in order, its name, a NUL byte and its column hash (16 bytes)."""
    h = xxhash.xxh3_128()
    for name in table.column_names:
        h.update(name.encode() + b"\0")
        h.update(_column_hash(table.column(name)))
    return h.hexdigest()
