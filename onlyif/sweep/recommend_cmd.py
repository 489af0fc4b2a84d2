"""``onlyif recommend EXP_DIR``: fit the ranked metric of a finished sweep on its grid labels and propose a mixture
(or I) for a budget, with its uncertainty and a ready-to-run config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from onlyif.errors import ConfigError

RECOMMEND_DIR = "recommend"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from onlyif.sweep.report_cmd import add_experiment_arguments

    add_experiment_arguments(parser)
    parser.add_argument("--budget", type=int, metavar="N", help="budget to recommend for (default: the largest seen)")
    parser.add_argument("--metric", metavar="M", help="metric to optimize (default: the sweep's report.metric)")
    parser.add_argument("--out", metavar="DIR", help=f"output folder (default: EXP_DIR/{RECOMMEND_DIR})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the CV folds, candidates and bootstrap")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")


def make_recommendation(
    exp_dir: str | Path,
    *,
    source: str = "tune",
    metric: str | None = None,
    budget: int | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``recommend.md``/``.json``/``.png`` and the recommended config for the sweep in ``exp_dir``; return the
    JSON dict. The default ``out`` (``EXP_DIR/recommend``), or a folder holding an earlier ``recommend.json``, is
    replaced without ``overwrite``."""
    from onlyif.io import atomic_dir
    from onlyif.report.recommend import recommend
    from onlyif.report.recommend_output import write_recommendation
    from onlyif.sweep.report_cmd import load_trials

    if budget is not None and budget < 1:
        raise ConfigError(f"--budget {budget}: must be at least 1")
    exp = Path(exp_dir).resolve()
    cfg, _, trials, where = load_trials(exp, source)
    rec = recommend(trials, metric=metric or cfg.report.metric, budget=budget, seed=seed)
    out_dir = Path(out) if out is not None else exp / RECOMMEND_DIR
    ours = out is None or (out_dir / "recommend.json").is_file()
    with atomic_dir(out_dir, overwrite=overwrite or ours) as tmp:
        return write_recommendation(
            rec,
            tmp,
            title=f"Recommendation from sweep {cfg.name}",
            source=where,
            mixture=cfg.mixture,
            task=cfg.task if cfg.mixture is None else None,
        )


def run(args: argparse.Namespace) -> int:
    result = make_recommendation(
        args.exp_dir,
        source=args.source,
        metric=args.metric,
        budget=args.budget,
        out=args.out,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    out = Path(args.out) if args.out else Path(args.exp_dir) / RECOMMEND_DIR
    best = result["recommendation"]
    chosen = next(m for m in result["models"] if m["name"] == result["chosen"])
    base = next(m for m in result["models"] if m["name"] == "constant")
    labels = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["labels"].items())
    print(f"recommended: {labels}")
    print(f"predicted {result['metric']}: {best['predicted']:.4g} ± {best['uncertainty']:.2g} (bootstrap std)")
    print(
        f"model: {result['chosen']}, CV RMSE {chosen['cv_rmse']:.3g} (R² {chosen['cv_r2']:.2f}) vs constant "
        f"{base['cv_rmse']:.3g}"
    )
    for note in result["notes"]:
        print(f"note: {note}")
    if result["config"]:
        print(f"config: {out / result['config']}")
    print(f"recommendation: {out / 'recommend.md'}")
    return 0
