"""Diversity metrics of a text collection: lexical (distinct-n) and semantic (embedding) spread.

All metrics are higher-is-more-diverse:
- ``distinct_n``: distinct n-grams / total n-grams (n = 1..3), over all rows;
- ``mean_pairwise_distance``: mean cosine distance between distinct pairs of embeddings;
- ``cluster_coverage`` / ``cluster_entropy``: k-means (fit on the whole sample) — share of the k clusters a
  group occupies, and the normalized entropy of its cluster histogram (1 = spread evenly over all k);
- ``vendi``: Vendi score (Friedman & Dieng 2023), exp of the entropy of the eigenvalues of K/n with K the cosine
  similarity matrix — the "effective number" of distinct items, between 1 and n.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from onlyif.mixing.text import words


def tokenize(text: str, unit: str) -> list[str]:
    """Word tokens (``unit="words"``) or characters (``"chars"``, for text without spaces)."""
    return words(text) if unit == "words" else list(text)


def choose_unit(texts: Sequence[str]) -> str:
    """``"words"`` for natural text, ``"chars"`` when texts average under 3 whitespace-separated tokens
    (e.g. the rewrite-task prompt ``ab→ca|bbabb=``)."""
    if not texts:
        return "words"
    return "words" if np.mean([len(t.split()) for t in texts[:1000]]) >= 3 else "chars"


def distinct_n(tokenized: Sequence[list[str]], n: int) -> float:
    """Distinct n-grams over total n-grams in all rows (0 when there are none)."""
    seen: set[str] = set()
    total = 0
    for toks in tokenized:
        grams = ["\x1f".join(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def _unit(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float64)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norms > 0, norms, 1.0)


def mean_pairwise_distance(emb: np.ndarray) -> float:
    """Mean cosine distance ``1 − cos`` over distinct pairs (0 for fewer than 2 rows)."""
    n = len(emb)
    if n < 2:
        return 0.0
    u = _unit(emb)
    s = u.sum(0)
    mean_sim = (float(s @ s) - float(np.einsum("ij,ij->", u, u))) / (n * (n - 1))
    return 1.0 - mean_sim


def vendi_score(emb: np.ndarray) -> float:
    """Vendi score with the cosine-similarity kernel (1 for identical rows, n for orthogonal ones)."""
    n = len(emb)
    if n == 0:
        return 0.0
    u = _unit(emb)
    # eigenvalues of K/n = U Uᵀ/n equal those of the (smaller) Gram matrix Uᵀ U/n
    gram = u @ u.T if n <= u.shape[1] else u.T @ u
    eig = np.clip(np.linalg.eigvalsh(gram / n), 0.0, None)
    eig = eig[eig > 1e-12]
    return float(np.exp(-np.sum(eig * np.log(eig))))


def cluster_stats(labels: np.ndarray, k: int) -> dict[str, float]:
    """Coverage (occupied clusters / k) and normalized entropy of a cluster-label histogram."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    if counts.sum() == 0:
        return {"cluster_coverage": 0.0, "cluster_entropy": 0.0}
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 else 0.0
    return {"cluster_coverage": float((counts > 0).sum() / k), "cluster_entropy": entropy}


def kmeans_labels(emb: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means cluster labels of the unit-normalized embeddings (scikit-learn, fixed seed)."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(emb)))
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(_unit(emb).astype(np.float32))


def diversity_report(
    texts: Sequence[str],
    groups: Sequence[str],
    emb: np.ndarray,
    emb_rows: np.ndarray,
    clusters: int = 16,
    seed: int = 0,
    unit: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Metrics overall and per group (domain).

    ``texts``/``groups``: every row (for distinct-n). ``emb``: embeddings of the sampled rows ``emb_rows``
    (indices into ``texts``) for the embedding metrics.
    """
    unit = unit or choose_unit(texts)
    groups = np.asarray(groups, dtype=object)
    tokenized = [tokenize(t, unit) for t in texts]
    labels = kmeans_labels(emb, clusters, seed) if len(emb) else np.zeros(0, dtype=np.int64)
    k = int(labels.max()) + 1 if len(labels) else clusters
    sample_groups = groups[emb_rows] if len(emb_rows) else groups[:0]

    def block(rows: np.ndarray, srows: np.ndarray) -> dict:
        out = {"rows": int(len(rows)), "sampled": int(len(srows))}
        for n in (1, 2, 3):
            out[f"distinct_{n}"] = distinct_n([tokenized[i] for i in rows], n)
        out["mean_pairwise_distance"] = mean_pairwise_distance(emb[srows])
        out.update(cluster_stats(labels[srows], k))
        out["vendi"] = vendi_score(emb[srows])
        return out

    report = {
        "unit": unit,
        "clusters": k,
        "overall": block(np.arange(len(texts)), np.arange(len(emb))),
        "domains": {},
    }
    for g in sorted(set(groups.tolist())):
        if log:
            log(f"diversity: domain {g}")
        report["domains"][g] = block(np.flatnonzero(groups == g), np.flatnonzero(sample_groups == g))
    return report


def flat_metrics(report: dict, prefix: str = "diversity") -> dict[str, float]:
    """``{"diversity.overall.vendi": ..., "diversity.code.distinct_2": ...}``: a report as flat metrics (MLflow)."""
    out = {}
    blocks = [("overall", report["overall"]), *sorted(report["domains"].items())]
    for name, block in blocks:
        for key, value in block.items():
            out[f"{prefix}.{name}.{key}"] = float(value)
    return out
