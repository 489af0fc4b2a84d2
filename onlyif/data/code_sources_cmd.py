"""``onlyif sources --out DIR``: offline code and general instruction rows from documented Python source."""

from __future__ import annotations

import argparse

from onlyif.cli import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (jsonl files + manifest.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")


def run(args: argparse.Namespace) -> int:
    from onlyif.config import load_config
    from onlyif.data.code_sources import CodeSourcesConfig, build_code_sources

    cfg = load_config(CodeSourcesConfig, args.config, args.overrides)
    manifest = build_code_sources(cfg, args.out, overwrite=args.overwrite)
    for name, info in manifest["files"].items():
        print(f"  {name:<22} {info['rows']:>6} rows")
    dropped = manifest["humaneval_entry_points_dropped"]
    print(
        f"sources: {args.out} (seed {cfg.seed}, licenses {', '.join(manifest['licenses'])}; "
        f"{len(dropped)} HumanEval entry-point names dropped: {', '.join(dropped) or 'none'})"
    )
    return 0
