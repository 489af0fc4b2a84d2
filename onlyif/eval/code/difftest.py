"""Differential testing, as EvalPlus scores base and plus inputs: a candidate's output on each input must equal the
canonical solution's (floats within ``atol``; a few tasks have their own check).

Sandboxed programs run this module's source (standard library only) in a namespace of its own, after the
candidate's code; the evaluator imports it for :func:`encode` / :func:`decode`, the JSON form in which inputs and
outputs cross the sandbox.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from collections.abc import Callable
from typing import Any

MARKER = "@@onlyif-outputs@@ "
"""Prefix of the stdout line on which :func:`print_outputs` writes the canonical outputs."""

# EvalPlus's special checks (evalplus/eval/_special_oracle.py), by dataset and entry point.
MBPP_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}
MBPP_SET_EQUAL = {
    "similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
    "intersection_array", "find_dissimilar", "Diff",
}  # fmt: skip


def encode(value: Any) -> Any:
    """A JSON-able form of ``value`` that :func:`decode` turns back into the same types (tuples, sets, dicts with any
    keys, complex, bytes, non-finite floats); anything else raises ``TypeError``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, set | frozenset):
        return {type(value).__name__: [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, complex):
        return {"complex": [value.real, value.imag]}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return encode(value.tolist())
    raise TypeError(f"cannot compare outputs of type {type(value).__name__}")


def decode(obj: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    ((tag, v),) = obj.items()
    if tag == "tuple":
        return tuple(decode(x) for x in v)
    if tag == "set":
        return {decode(x) for x in v}
    if tag == "frozenset":
        return frozenset(decode(x) for x in v)
    if tag == "dict":
        return {decode(k): decode(x) for k, x in v}
    if tag == "complex":
        return complex(v[0], v[1])
    if tag == "bytes":
        return bytes.fromhex(v)
    raise ValueError(f"unknown tag {tag!r}")


def is_floats(x: Any) -> bool:
    if isinstance(x, float):
        return True
    return isinstance(x, list | tuple) and bool(x) and all(isinstance(i, float) for i in x)


def close(out: Any, exp: Any, atol: float, rtol: float = 1e-07) -> bool:
    """``numpy.allclose(out, exp, rtol, atol)`` for numbers and (nested) sequences of numbers."""
    if isinstance(out, list | tuple) and isinstance(exp, list | tuple):
        return len(out) == len(exp) and all(close(a, b, atol, rtol) for a, b in zip(out, exp, strict=True))
    try:
        if math.isinf(abs(out)) or math.isinf(abs(exp)):
            return out == exp
        return abs(out - exp) <= atol + rtol * abs(exp)
    except TypeError:
        return False


def poly(xs: list[float], x: float) -> float:
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def surface_area(base_edge: float, height: float) -> int:
    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def digit_distance(num1: int, num2: int) -> int:
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width), strict=True))


def same(out: Any, exp: Any, inp: Any, atol: float, dataset: str, entry_point: str) -> bool:
    """Whether ``out`` (the candidate's output on ``inp``) matches ``exp`` (the canonical one), as EvalPlus checks."""
    try:
        if dataset == "humaneval" and entry_point == "find_zero":
            return abs(poly(*inp, out)) <= atol
        exact = bool(out == exp)
        if dataset == "mbpp":
            if entry_point == "are_equivalent":
                exact = True
            elif entry_point == "sum_div":
                exact = exact or out == 0
            elif entry_point == "surface_Area":
                exact = exact or abs(out - surface_area(*inp)) <= atol
            elif entry_point == "digit_distance_nums":
                exact = exact or out == digit_distance(*inp)
            elif entry_point in MBPP_SET_EQUAL:
                exact = set(out) == set(exp)
            elif entry_point in MBPP_NOT_NONE:
                exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    except Exception:  # an output that cannot even be compared is a wrong one
        return False
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if exact or atol == 0:
        return exact
    return type(out) is type(exp) and close(out, exp, atol)


def print_outputs(fn: Callable | None, inputs_json: str, not_none: bool = False) -> None:
    """Run the canonical solution ``fn`` on each input set of ``inputs_json`` (encoded ``{name: [args, ...]}``) and
    print the outputs (encoded, with the seconds each set took) on one line after :data:`MARKER`."""
    import time

    if not callable(fn):
        raise NameError("the canonical solution defines no entry point function")
    result = {}
    for name, arg_lists in decode(json.loads(inputs_json)).items():
        start, outputs = time.perf_counter(), []
        for args in arg_lists:
            out = fn(*copy.deepcopy(args))
            outputs.append(out is not None if not_none else out)
        result[name] = {"outputs": encode(outputs), "seconds": time.perf_counter() - start}
    sys.stdout.write("\n" + MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def check_outputs(fn: Any, inputs_json: str, expected_json: str, entry_point: str, atol: float, dataset: str) -> None:
    """Raise ``AssertionError`` at the first input on which ``fn`` (the candidate's ``entry_point``) gives another
    output than the expected (canonical) one."""
    if not callable(fn):
        raise NameError(f"the solution defines no function {entry_point!r}")
    arg_lists, expected = decode(json.loads(inputs_json)), decode(json.loads(expected_json))
    if len(arg_lists) != len(expected):
        raise ValueError("inputs and expected outputs differ in length")
    for i, (args, exp) in enumerate(zip(arg_lists, expected, strict=True)):
        out = fn(*copy.deepcopy(args))
        if not same(out, exp, args, atol, dataset, entry_point):
            raise AssertionError(f"input #{i}: got {_short(out)}, expected {_short(exp)}")


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
