"""``onlyif mix --config FILE --out DIR``: build a budgeted mixture of real instruction data."""

from __future__ import annotations

import argparse
import sys

from onlyif.cli import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, required=True)
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output directory or s3://… URI (parquet + manifest.json)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (shown on a terminal only)")


def run(args: argparse.Namespace) -> int:
    from onlyif.config import load_config
    from onlyif.data.mixture import build_mixture
    from onlyif.data.mixture_config import MixtureConfig
    from onlyif.storage import build_at, is_uri

    cfg = load_config(MixtureConfig, args.config, args.overrides)
    progress = not args.no_progress and sys.stderr.isatty()  # bars on a terminal, none in a log file
    if is_uri(args.out):  # built here (its writers run on this node), then published, manifest.json last
        _, manifest = build_at(args.out, lambda d: build_mixture(cfg, d, progress=progress), args.overwrite)
    else:
        manifest = build_mixture(cfg, args.out, overwrite=args.overwrite, progress=progress)
    t = manifest["totals"]
    print(
        f"mixture: {manifest['rows']} rows → {args.out} (read {t['read']}, quarantined {t['quarantined']}, "
        f"filtered {t['filtered']}, decontaminated {t['contaminated']}, duplicates "
        f"{t['exact_duplicates']}+{t['near_duplicates']}, upsampled {t['upsampled']}); config {manifest['config_hash'][:12]}"
    )
    for s in manifest["sources"]:
        print(
            f"  {s['name']:<20} {s['domain']:<12} {s['selected']:>8} of {s['available']:>8} available ({s['selection']})"
        )
    return 0
