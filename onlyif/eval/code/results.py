"""What a code evaluation leaves behind: one ``results.jsonl`` line per sample, ``summary.json`` with pass@k and
the run's settings, and (when a tracking URI is set) one MLflow run with both files."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onlyif.eval.code.passk import mean_pass_at_k
from onlyif.eval.code.score import Scored
from onlyif.io import write_json_atomic, write_text_atomic
from onlyif.mlflow_names import log_params, to_mlflow

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
STDERR_CHARS = 1000
"""The end of each failing program's stderr kept in ``results.jsonl``."""


def result_row(s: Scored) -> dict[str, Any]:
    """One ``results.jsonl`` line: the sample, whether it passed, why not (error kind, stderr tail)."""
    row: dict[str, Any] = {"task_id": s.task_id, "sample": s.index}
    row.update(
        {"solution": s.sample.solution} if s.sample.solution is not None else {"completion": s.sample.completion}
    )
    row.update(
        passed=s.base.passed,
        error=s.base.kind,
        exit_code=s.base.exit_code,
        wall_s=round(s.base.wall_s, 4),
        cpu_s=round(s.base.cpu_s, 4),
        attempts=s.base.attempts,
        stderr="" if s.base.passed else s.base.stderr_tail[-STDERR_CHARS:],
    )
    if s.has_plus:
        row["plus_passed"] = s.plus_passed
        row["plus_error"] = s.plus.kind if s.plus is not None else None
        row["plus_stderr"] = "" if s.plus is None or s.plus.passed else s.plus.stderr_tail[-STDERR_CHARS:]
    return row


def counts(scored: Sequence[Scored], plus: bool = False) -> list[tuple[int, int]]:
    """``(n, c)`` per problem (samples, samples passing base, or base and plus), in problem order."""
    per: dict[str, list[int]] = {}
    for s in scored:
        n_c = per.setdefault(s.task_id, [0, 0])
        n_c[0] += 1
        n_c[1] += bool(s.plus_passed if plus else s.base.passed)
    return [(n, c) for n, c in per.values()]


def metrics(prefix: str, scored: Sequence[Scored], ks: Sequence[int]) -> dict[str, float]:
    """``<prefix>/pass@k`` for each k every problem has enough samples for; ``<prefix>/plus/pass@k`` too when the
    benchmark has plus inputs."""
    out = {f"{prefix}/pass@{k}": v for k, v in mean_pass_at_k(counts(scored), ks).items()}
    if any(s.has_plus for s in scored):
        out.update({f"{prefix}/plus/pass@{k}": v for k, v in mean_pass_at_k(counts(scored, plus=True), ks).items()})
    return out


def error_counts(scored: Sequence[Scored], plus: bool = False) -> dict[str, int]:
    """Failures per kind (assertion, timeout, syntax, runtime, memory, killed), of the base tests or plus inputs."""
    results = (s.plus if plus else s.base for s in scored)
    return dict(sorted(Counter(r.kind for r in results if r is not None and r.kind is not None).items()))


def samples_per_task(scored: Sequence[Scored]) -> int | dict[str, int]:
    """The number of samples of each problem, or its min and max when they differ."""
    ns = [n for n, _ in counts(scored)]
    return ns[0] if min(ns) == max(ns) else {"min": min(ns), "max": max(ns)}


def write_outputs(out_dir: Path, scored: Sequence[Scored], summary: dict[str, Any]) -> None:
    """``results.jsonl`` and ``summary.json`` in ``out_dir``, each written atomically."""
    lines = "".join(json.dumps(result_row(s), ensure_ascii=False) + "\n" for s in scored)
    write_text_atomic(out_dir / RESULTS, lines)
    write_json_atomic(out_dir / SUMMARY, summary)


def log_to_mlflow(uri: str, experiment: str, summary: dict[str, Any], out_dir: Path) -> str:
    """One MLflow run: settings as params, ``<bench>/pass_at_k`` metrics (MLflow refuses ``@``), the two files as
    artifacts. Returns the run id."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    from onlyif.mlflow_store import artifacts_beside, open_client

    client = open_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            exp_id = client.create_experiment(experiment, artifact_location=artifacts_beside(uri))
        except MlflowException:  # created meanwhile by another process
            exp_id = client.get_experiment_by_name(experiment).experiment_id
    else:
        exp_id = found.experiment_id
    run = client.create_run(exp_id, run_name=f"code-eval {summary['benchmark']}", tags={"onlyif.kind": "code-eval"})
    run_id = run.info.run_id
    try:
        params = {k: summary[k] for k in ("benchmark", "benchmark_path", "source", "model", "samples_file")}
        params |= {k: summary[k] for k in ("n_problems", "samples_per_task", "workers", "limits")}
        if summary.get("generation"):
            params["generation"] = summary["generation"]
        log_params(client, run_id, params)
        now = int(time.time() * 1000)
        client.log_batch(
            run_id, metrics=[Metric(to_mlflow(k), float(v), now, 0) for k, v in summary["metrics"].items()]
        )
        for name in (SUMMARY, RESULTS):
            client.log_artifact(run_id, os.fspath(out_dir / name))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
    return run_id
