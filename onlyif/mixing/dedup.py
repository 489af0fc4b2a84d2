"""Exact and near-duplicate removal with deterministic "keep the first" semantics.

Near duplicates use MinHash signatures over character shingles and datasketch's ``MinHashLSH``. Signatures are
computed per batch (in parallel on Ray Data); the keep/drop decisions are one sequential pass in a fixed order
(config source order, then row id), so the same input always keeps the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from onlyif.mixing.text import char_shingles

MINHASH_SEED = 1
SCHEME = "affine32"  # datasketch's 32-bit permutation scheme: uint32 hash values


def minhash_signatures(texts: Sequence[str], num_perm: int, shingle: int) -> np.ndarray:
    """``(len(texts), num_perm)`` uint32 MinHash signatures of the texts' character shingles."""
    if not texts:
        return np.zeros((0, num_perm), dtype=np.uint32)
    sets = [[s.encode() for s in char_shingles(t, shingle)] for t in texts]
    hashes = MinHash.bulk(sets, num_perm=num_perm, seed=MINHASH_SEED, scheme=SCHEME)
    return np.stack([h.hashvalues for h in hashes])


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
