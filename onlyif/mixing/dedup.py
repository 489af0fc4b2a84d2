"""Exact and near-duplicate removal with deterministic "keep the first" semantics.

Near duplicates use MinHash signatures over character shingles and datasketch's ``MinHashLSH`` index. Signatures are
computed per batch (in parallel on Ray Data); the keep/drop decisions are one sequential pass in a fixed order
(config source order, then row id), so the same input always keeps the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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
    lsh = MinHashLSH(threshold=threshold, num_perm=len(signatures[0]))
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
