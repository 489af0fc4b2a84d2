"""Exact and near-duplicate removal with deterministic "keep the first" semantics.

Rows are ordered by (config source order, row id); of a group of duplicates the first is kept and every other
row names the kept row it duplicates. Near duplicates use MinHash signatures over character shingles and
datasketch's ``MinHashLSH``: :func:`near_duplicates` is the sequential rule (a row is dropped when it matches an
earlier *kept* row). The table functions below let that rule run partitioned: rows that share no LSH band with
any other row can never be dropped or cause a drop, and rows in different connected components of the
"shares a band" graph never meet in an LSH query — so running :func:`near_duplicates` on each component alone
drops exactly the rows the single pass over all rows drops.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import LeanMinHash, MinHashLSH

from onlyif.mixing.text import shingle_hashes

MINHASH_SEED = 1
SCHEME = "affine32"  # datasketch's 32-bit permutation scheme: uint32 hash values


def minhash_signatures(texts: Sequence[str], num_perm: int, shingle: int) -> np.ndarray:
    """``(len(texts), num_perm)`` uint32 MinHash signatures of the texts' character shingles.

    Vectorized over a batch: each permutation is a multiply-add-shift hash ``(a·x + b) mod 2⁶⁴ >> 32`` of the
    32-bit shingle hashes (2-universal), with fixed seeded ``a, b`` so signatures agree across processes.
    datasketch's per-value Python loop is ~5x slower; its LSH index consumes these signatures unchanged.
    """
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    rng = np.random.default_rng(MINHASH_SEED)
    a = (rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    hashes = [shingle_hashes(t, shingle) for t in texts]
    for start in range(0, len(texts), 64):
        chunk = hashes[start : start + 64]
        offsets = np.cumsum([0] + [len(h) for h in chunk[:-1]])
        flat = np.concatenate(chunk).astype(np.uint64)
        permuted = ((a[:, None] * flat[None, :] + b[:, None]) >> np.uint64(32)).astype(np.uint32)
        out[start : start + len(chunk)] = np.minimum.reduceat(permuted, offsets, axis=1).T
    return out


def exact_duplicates(keys: Sequence[str]) -> dict[int, int]:
    """``{dropped position: kept position}`` for rows whose key appeared at an earlier position."""
    first: dict[str, int] = {}
    dropped = {}
    for pos, key in enumerate(keys):
        if key in first:
            dropped[pos] = first[key]
        else:
            first[key] = pos
    return dropped


def near_duplicates(signatures: Sequence[np.ndarray], threshold: float) -> dict[int, int]:
    """``{dropped position: kept position}``: LSH finds a kept row with estimated Jaccard ≥ ``threshold``.

    Rows are visited in order and only kept rows enter the index, so the first row of a group is kept and each
    dropped row points to the earliest kept row it matches.
    """
    if len(signatures) == 0:
        return {}
    num_perm = len(signatures[0])
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=lsh_params(threshold, num_perm))
    kept: dict[int, LeanMinHash] = {}
    dropped = {}
    for pos, sig in enumerate(signatures):
        mh = LeanMinHash(seed=MINHASH_SEED, hashvalues=np.asarray(sig, dtype=np.uint32), scheme=SCHEME)
        # LSH candidates are probable matches: confirm with the signature estimate
        matches = [c for c in lsh.query(mh) if mh.jaccard(kept[c]) >= threshold]
        if matches:
            dropped[pos] = min(matches)
        else:
            lsh.insert(pos, mh)
            kept[pos] = mh
    return dropped


@functools.lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """``(bands, rows per band)`` of datasketch's ``MinHashLSH`` for this threshold (its default weights; found by
    numerical integration, ~10 ms — hence the cache)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def signature_matrix(column: pa.Array | pa.ChunkedArray, num_perm: int) -> np.ndarray:
    """``(n, num_perm)`` uint32 signatures from a binary column of their bytes."""
    width = 4 * num_perm
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    fixed = arr.cast(pa.binary(width))
    data = fixed.buffers()[1]
    raw = np.frombuffer(data, dtype=np.uint8)[fixed.offset * width : (fixed.offset + len(fixed)) * width]
    return raw.view(np.uint32).reshape(len(fixed), num_perm)


def band_rows(sigs: np.ndarray, locs: np.ndarray, bands: int, rows: int) -> tuple[pa.Table, np.ndarray]:
    """One row per (row, LSH band): ``band``, the band's bytes as ``key`` and the row's ``loc``; with a uint32
    hash per output row to partition on (rows with equal ``(band, key)`` get equal hashes)."""
    n = len(locs)
    keys, hashes = [], []
    for i in range(bands):
        part = np.ascontiguousarray(sigs[:, i * rows : (i + 1) * rows])
        keys.append(pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * rows), n, [None, pa.py_buffer(part.tobytes())]))
        hashes.append(part[:, 0] ^ np.uint32(i * 2654435761 % 2**32))
    table = pa.table(
        {
            "band": pa.array(np.repeat(np.arange(bands, dtype=np.int16), n)),
            "key": pa.concat_arrays(keys) if keys else pa.array([], pa.binary(4 * rows)),
            "loc": pa.array(np.tile(locs.astype(np.int64), bands)),
        }
    )
    return table, np.concatenate(hashes) if hashes else np.zeros(0, np.uint32)


def band_edges(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(a, b)`` linking the rows (``loc``) that share a band: a chain through each group, enough to
    connect it."""
    grouped = table.group_by(["band", "key"], use_threads=False).aggregate([("loc", "list")])
    lists = grouped.column("loc_list").combine_chunks()
    lists = lists.filter(pc.greater(pc.list_value_length(lists), 1))
    values = lists.flatten().to_numpy()
    ends = lists.offsets.to_numpy()[1:] - lists.offsets.to_numpy()[0] - 1
    inner = np.ones(max(len(values) - 1, 0), dtype=bool)
    inner[ends[:-1]] = False
    return values[:-1][inner], values[1:][inner]


def components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(nodes, labels)``: the connected component of every node of the edge list (labels are 0..k-1)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes = np.unique(np.concatenate([a, b]))
    if len(nodes) == 0:
        return nodes, np.zeros(0, np.int64)
    ia, ib = np.searchsorted(nodes, a), np.searchsorted(nodes, b)
    graph = coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(len(nodes), len(nodes)))
    _, labels = connected_components(graph, directed=False)
    return nodes, labels.astype(np.int64)


def first_of_groups(table: pa.Table, group: str) -> pa.Table:
    """Rows of ``table`` that are not the first of their ``group`` in ``(group, src, id)`` order, with the id
    of that first row as ``duplicate_of`` (exact dedup on one hash partition)."""
    t = table.sort_by([(group, "ascending"), ("src", "ascending"), ("id", "ascending")])
    keys = t.column(group).to_numpy(zero_copy_only=False)
    if len(keys) == 0:
        return t.append_column("duplicate_of", pa.array([], pa.string()))
    first = np.r_[True, keys[1:] != keys[:-1]]
    lead = np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0))
    t = t.append_column("duplicate_of", t.column("id").take(pa.array(lead)))
    return t.filter(pa.array(~first))


def near_duplicates_by_component(table: pa.Table, threshold: float, num_perm: int) -> pa.Table:
    """:func:`near_duplicates` run on each ``comp`` group in ``(src, id)`` order; returns the dropped rows with
    ``duplicate_of`` (the id of the kept row each matches first)."""
    t = table.sort_by([("comp", "ascending"), ("src", "ascending"), ("id", "ascending")])
    comp = t.column("comp").to_numpy()
    sigs = signature_matrix(t.column("minhash"), num_perm)
    ids = t.column("id").to_pylist()
    starts = np.flatnonzero(np.r_[True, comp[1:] != comp[:-1]]) if len(comp) else np.zeros(0, np.int64)
    dropped, kept_of = [], []
    for lo, hi in zip(starts, np.r_[starts[1:], len(comp)][: len(starts)], strict=True):
        for pos, keep in sorted(near_duplicates(list(sigs[lo:hi]), threshold).items()):
            dropped.append(lo + pos)
            kept_of.append(ids[lo + keep])
    out = t.take(pa.array(dropped, pa.int64())).drop_columns(["minhash"])
    return out.append_column("duplicate_of", pa.array(kept_of, pa.string()))
