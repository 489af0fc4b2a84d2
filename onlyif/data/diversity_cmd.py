"""``onlyif diversity DATA``: distinct-n, embedding spread, cluster coverage/entropy and Vendi score, per domain."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="a mixture or dataset directory, or a .parquet/.jsonl file")
    parser.add_argument("--split", help="split folder of a dataset directory (default: train)")
    parser.add_argument("--text-column", help="column holding the text (default: prompt+response or the rule prompt)")
    parser.add_argument("--embed-model", default="minilm", help="minilm | hashing | a local model directory")
    parser.add_argument("--sample", type=int, default=1000, help="rows embedded for the embedding metrics")
    parser.add_argument("--clusters", type=int, default=16, help="k of the k-means for coverage / entropy")
    parser.add_argument("--max-rows", type=int, default=200_000, help="rows for distinct-n (a seeded subset beyond)")
    parser.add_argument("--unit", choices=["words", "chars"], help="distinct-n tokens (default: by the data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", metavar="DIR", help="where to write diversity.json and .png (default: DATA/diversity)"
    )


def run(args: argparse.Namespace) -> int:
    from onlyif.config import validate_config
    from onlyif.data.diversity import compute_diversity, load_texts, summary_lines, write_report
    from onlyif.data.mixture_config import DiversityConfig, EmbedConfig
    from onlyif.errors import ConfigError
    from onlyif.ray_utils import init_ray

    embed = validate_config(EmbedConfig, {"model": args.embed_model}, "--embed-model")
    validate_config(DiversityConfig, {"sample": args.sample, "clusters": args.clusters}, "options")
    if args.seed < 0 or args.max_rows < 1:
        raise ConfigError("--seed must be >= 0 and --max-rows >= 1")
    texts, domains = load_texts(args.data, args.split, args.text_column)
    init_ray()
    report, emb, groups = compute_diversity(
        texts, domains, embed, args.sample, args.clusters, args.seed, args.unit, max_rows=args.max_rows
    )
    data = Path(args.data)
    out = Path(args.out) if args.out else (data if data.is_dir() else data.parent) / "diversity"
    write_report(report, emb, groups, out)
    print("\n".join(summary_lines(report)))
    print(f"wrote {out / 'diversity.json'} and {out / 'diversity.png'}")
    return 0
