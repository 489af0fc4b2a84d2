"""Scoring samples in the sandbox: the canonical outputs of EvalPlus inputs (once per problem), then every sample's
base tests, then the plus inputs for the samples that passed base (EvalPlus: plus = base and plus inputs pass)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from onlyif.errors import OnlyIfError
from onlyif.eval.code.execute import run_programs
from onlyif.eval.code.problems import Problem, Sample
from onlyif.eval.code.programs import difftest_program, expected_program, parse_expected, test_program
from onlyif.eval.code.sandbox import ExecResult, Limits

TIME_FACTOR = 4.0
"""As in EvalPlus, a candidate may take this many times the canonical solution's time on the same inputs ..."""
MAX_SCALED_S = 60.0
"""... up to this many seconds (EvalPlus's per-task cap); never less than the configured limits."""
EXPECTED_MIN_S = 120.0
"""Wall and CPU seconds allowed to the canonical solution computing its outputs (more when the limits say so)."""


@dataclass(frozen=True)
class Scored:
    """One sample's outcome. ``plus`` is None when the problem has no plus inputs or the base tests failed."""

    task_id: str
    index: int
    sample: Sample
    base: ExecResult
    plus: ExecResult | None
    has_plus: bool

    @property
    def plus_passed(self) -> bool | None:
        """Base tests and plus inputs passed (None when the problem has no plus inputs)."""
        if not self.has_plus:
            return None
        return self.base.passed and self.plus is not None and self.plus.passed


@dataclass
class Expected:
    """Canonical outputs and the seconds they took, per input set (``base``, ``plus``)."""

    outputs: dict[str, list[Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _input_sets(problem: Problem) -> dict[str, list[Any]]:
    sets = {"base": problem.base_inputs, "plus": problem.plus_inputs}
    return {name: inputs for name, inputs in sets.items() if inputs is not None}


def expected_outputs(problems: Sequence[Problem], limits: Limits, workers: int | None) -> dict[str, Expected]:
    """Run each problem's canonical solution once on its EvalPlus inputs (problems without any are left out)."""
    todo = [p for p in problems if _input_sets(p)]
    seconds = max(EXPECTED_MIN_S, limits.timeout_s)
    generous = replace(
        limits,
        timeout_s=seconds,
        cpu_s=max(seconds, limits.cpu_s),
        memory_mb=max(4096, limits.memory_mb),
        output_bytes=max(1 << 28, limits.output_bytes),
        output_limit_mb=max(512, limits.output_limit_mb),
    )
    sources = [expected_program(p, _input_sets(p)) for p in todo]
    results = run_programs(sources, generous, workers=workers, desc="canonical outputs", keep_stdout=True)
    out: dict[str, Expected] = {}
    for problem, result in zip(todo, results, strict=True):
        parsed = parse_expected(result.stdout_tail) if result.passed else None
        if parsed is None:
            last = result.stderr_tail.strip().splitlines()[-1:] or ["no output"]
            raise OnlyIfError(
                f"task {problem.task_id}: the canonical solution failed on the benchmark's inputs "
                f"({result.kind or 'no outputs printed'}): {last[0]}"
            )
        out[problem.task_id] = Expected(
            {name: value[0] for name, value in parsed.items()}, {name: value[1] for name, value in parsed.items()}
        )
    return out


def scaled(limits: Limits, canonical_s: float) -> Limits:
    """``limits`` with wall and CPU time raised to what the canonical solution's time allows (EvalPlus style)."""
    allowed = min(MAX_SCALED_S, TIME_FACTOR * canonical_s + 1.0)
    return replace(limits, timeout_s=max(limits.timeout_s, allowed), cpu_s=max(limits.cpu_s, allowed))


def _program(
    problem: Problem, sample: Sample, which: str, expected: Mapping[str, Expected], limits: Limits
) -> tuple[str, Limits]:
    """The program checking ``sample`` on the ``base`` tests or ``plus`` inputs, and its limits."""
    exp = expected.get(problem.task_id)
    if exp is None or which not in exp.outputs:
        return test_program(problem, sample), limits
    inputs = problem.base_inputs if which == "base" else problem.plus_inputs
    program = difftest_program(problem, sample, inputs, exp.outputs[which])
    return program, scaled(limits, exp.seconds[which])


def score_samples(
    problems: Sequence[Problem],
    samples: Mapping[str, Sequence[Sample]],
    limits: Limits,
    *,
    workers: int | None = None,
) -> tuple[list[Scored], dict[str, float]]:
    """Every sample of every problem scored, in problem then sample order, and the seconds of each stage."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    expected = expected_outputs(problems, limits, workers)
    timings["expected_s"] = time.perf_counter() - start
    items = [(p, i, s) for p in problems for i, s in enumerate(samples[p.task_id])]

    start = time.perf_counter()
    jobs = [_program(p, s, "base", expected, limits) for p, _, s in items]
    base = run_programs([j[0] for j in jobs], [j[1] for j in jobs], workers=workers, desc="base tests")
    timings["base_s"] = time.perf_counter() - start

    start = time.perf_counter()
    todo = [k for k, (p, _, _) in enumerate(items) if p.plus_inputs is not None and base[k].passed]
    jobs = [_program(items[k][0], items[k][2], "plus", expected, limits) for k in todo]
    plus_results = run_programs([j[0] for j in jobs], [j[1] for j in jobs], workers=workers, desc="plus inputs")
    plus: dict[int, ExecResult] = dict(zip(todo, plus_results, strict=True))
    timings["plus_s"] = time.perf_counter() - start

    scored = [
        Scored(p.task_id, i, s, base[k], plus.get(k), p.plus_inputs is not None) for k, (p, i, s) in enumerate(items)
    ]
    return scored, timings
