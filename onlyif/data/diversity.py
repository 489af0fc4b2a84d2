"""Diversity metrics of a dataset directory (a mixture, a synthetic dataset, or any parquet/jsonl data).

Distinct-n runs over every row; the embedding metrics (mean pairwise distance, k-means coverage/entropy, Vendi)
over a seeded sample embedded with Ray Data (:mod:`onlyif.data.embed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from onlyif.data.mixture_config import EmbedConfig, MixtureConfig
from onlyif.errors import OnlyIfError
from onlyif.mixing.metrics import diversity_report


def _read_table(data: Path, split: str | None):
    """The rows of ``data``; an unreadable file is named in one line."""
    import pyarrow as pa

    try:
        return _read_table_of(data, split)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OnlyIfError(f"{data}: cannot be read ({first})") from None


def _read_table_of(data: Path, split: str | None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if data.is_file():
        if data.suffix == ".parquet":
            return pq.read_table(data)
        if data.suffix in (".jsonl", ".json"):
            import pyarrow.json as pj

            return pj.read_json(data)
        raise OnlyIfError(f"{data}: expected a directory, .parquet or .jsonl file")
    if not data.is_dir():
        raise OnlyIfError(f"{data}: not found")
    candidates = [data / split] if split else [data / "train", data]
    for folder in candidates:
        files = sorted(folder.glob("*.parquet"))
        if files:
            return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    where = f"split {split!r} of " if split else ""
    raise OnlyIfError(
        f"{data}: no parquet files found in {where}the directory (looked in {[str(c) for c in candidates]})"
    )


def load_texts(
    data: str | Path, split: str | None = None, text_column: str | None = None
) -> tuple[list[str], list[str]]:
    """``(texts, domains)`` of a dataset.

    Text: ``text_column`` if given; else prompt + response (mixtures and other normalized data); else the
    rewrite-task prompt ``x→y|ξ=`` built from ``rule_x``/``rule_y``/``input`` (synthetic datasets). Domain: the
    ``domain`` column, or ``all``.
    """
    table = _read_table(Path(data), split)
    if table.num_rows == 0:
        raise OnlyIfError(f"{data}: the dataset has no rows")
    names = table.column_names
    if text_column is not None:
        if text_column not in names:
            raise OnlyIfError(f"--text-column {text_column!r}: not a column of {data} (columns: {names})")
        texts = [str(t) for t in table.column(text_column).to_pylist()]
    elif {"prompt", "response"} <= set(names):
        texts = [
            f"{p}\n\n{r}"
            for p, r in zip(table.column("prompt").to_pylist(), table.column("response").to_pylist(), strict=True)
        ]
    elif {"rule_x", "rule_y", "input"} <= set(names):
        from onlyif.tasks.tokenizer import format_prompt

        cols = [table.column(c).to_pylist() for c in ("rule_x", "rule_y", "input")]
        texts = [format_prompt(x, y, xi) for x, y, xi in zip(*cols, strict=True)]
    else:
        raise OnlyIfError(
            f"{data}: no prompt/response or rule_x/rule_y/input columns; pass --text-column (columns: {names})"
        )
    domains = [str(d) for d in table.column("domain").to_pylist()] if "domain" in names else ["all"] * len(texts)
    return texts, domains


def compute_diversity(
    texts: list[str],
    domains: list[str],
    embed: EmbedConfig,
    sample: int = 1000,
    clusters: int = 16,
    seed: int = 0,
    unit: str | None = None,
    num_blocks: int = 8,
    max_rows: int = 200_000,
) -> tuple[dict[str, Any], np.ndarray, list[str]]:
    """``(report, sample embeddings, sample domains)``.

    Distinct-n covers every row up to ``max_rows`` (a seeded subset beyond); the embedding metrics cover a
    seeded ``sample`` of those rows.
    """
    from onlyif.data.embed import embed_texts

    if not texts:
        raise OnlyIfError("diversity: the dataset has no rows")
    total = len(texts)
    rng = np.random.default_rng(seed)
    if total > max_rows:  # distinct-n on a seeded subset: bounded time and memory on 10⁶-row datasets
        keep = np.sort(rng.permutation(total)[:max_rows])
        texts, domains = [texts[i] for i in keep], [domains[i] for i in keep]
    rows = np.sort(rng.permutation(len(texts))[: min(sample, len(texts))])
    emb = embed_texts([texts[i] for i in rows], embed, num_blocks)
    report = diversity_report(texts, domains, emb, rows, clusters=clusters, seed=seed, unit=unit)
    report |= {"embedder": embed.model, "sample": int(len(rows)), "seed": seed, "rows_total": total}
    return report, emb, [domains[i] for i in rows]


def mixture_diversity(table, cfg: MixtureConfig) -> dict[str, Any]:
    """Diversity report of a mixture's output table (for its manifest)."""
    texts = [
        f"{p}\n\n{r}"
        for p, r in zip(table.column("prompt").to_pylist(), table.column("response").to_pylist(), strict=True)
    ]
    domains = table.column("domain").to_pylist()
    d = cfg.diversity
    report, _, _ = compute_diversity(
        texts, domains, cfg.embed, d.sample, d.clusters, cfg.seed, num_blocks=cfg.num_blocks
    )
    return report


def plot_diversity(report: dict[str, Any], emb: np.ndarray, groups: list[str], path: str | Path) -> None:
    """PNG: 2-D PCA projection of the sample coloured by domain, and per-domain metric bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    domains = sorted(report["domains"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    ax = axes[0]
    if len(emb) >= 2:
        xy = PCA(n_components=2, random_state=0).fit_transform(emb)
        g = np.asarray(groups)
        for d in domains:
            m = g == d
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, label=d)
        ax.legend(markerscale=3, fontsize=8)
    ax.set_title(f"embedding sample ({report['embedder']}), PCA")
    ax = axes[1]
    metrics = ["distinct_2", "mean_pairwise_distance", "cluster_coverage", "cluster_entropy"]
    names = ["overall", *domains]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        block = report["overall"] if name == "overall" else report["domains"][name]
        ax.bar(np.arange(len(metrics)) + i * width, [block[m] for m in metrics], width, label=name)
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, metrics, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("diversity by domain (Vendi in the JSON)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict[str, Any], emb: np.ndarray, groups: list[str], out: str | Path) -> Path:
    """Write ``diversity.json`` and ``diversity.png`` into ``out``."""
    from onlyif.io import write_json_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "diversity.json", report)
    plot_diversity(report, emb, groups, out / "diversity.png")
    return out


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A small text table of the report."""
    head = (
        f"{'domain':<16}{'rows':>8}{'dist-1':>8}{'dist-2':>8}{'dist-3':>8}{'mpd':>8}{'cov':>7}{'ent':>7}{'vendi':>9}"
    )
    lines = [head]
    blocks = [("overall", report["overall"]), *sorted(report["domains"].items())]
    for name, b in blocks:
        lines.append(
            f"{name[:15]:<16}{b['rows']:>8}{b['distinct_1']:>8.3f}{b['distinct_2']:>8.3f}{b['distinct_3']:>8.3f}"
            f"{b['mean_pairwise_distance']:>8.3f}{b['cluster_coverage']:>7.2f}{b['cluster_entropy']:>7.2f}{b['vendi']:>9.2f}"
        )
    return lines
