"""MBPP+ argument types: JSON stores tuples, sets and complex numbers as lists and strings; these tasks need them back.

The task numbers and conversions are EvalPlus's (``evalplus/data/mbpp.py``, MBPP+ v0.2.0), so outputs compare
as EvalPlus compares them.
"""

from __future__ import annotations

from typing import Any

_TUPLE_ARGS = {
    2,
    116,
    132,
    143,
    222,
    261,
    273,
    394,
    399,
    421,
    424,
    429,
    470,
    560,
    579,
    596,
    616,
    630,
    726,
    740,
    744,
    809,
}
_TUPLE_ITEMS = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_FIRST_ARG_ITEMS = {75, 413, 444, 753}
_SECOND_ARG = {106, 750}
_FIRST_ARG = {250, 405, 446, 617, 720, 763, 808}
_NESTED_TUPLES = {259, 401, 445}
_ALL_TUPLES = {580, 615, 791}


def _deep_tuple(value: Any) -> Any:
    return tuple(_deep_tuple(v) for v in value) if isinstance(value, list) else value


def _convert(number: int, inp: list[Any]) -> Any:
    if number in _TUPLE_ARGS:
        return [tuple(arg) for arg in inp]
    if number in _TUPLE_ITEMS:
        return [[tuple(item) for item in arg] for arg in inp]
    if number in _FIRST_ARG_ITEMS:
        return [[tuple(item) for item in inp[0]], inp[1]]
    if number in _SECOND_ARG:
        return [inp[0], tuple(inp[1])]
    if number == 115:  # EvalPlus turns an empty list into an empty dict here; kept for identical outputs
        return [[set(item) if isinstance(item, list) and item else {} for item in inp[0]]]
    if number == 124:
        return (float(inp[0]), complex(inp[1]))
    if number in _FIRST_ARG:
        return [tuple(inp[0]), *inp[1:]]
    if number in _NESTED_TUPLES:
        return [tuple(tuple(item) for item in arg) for arg in inp]
    if number == 278:
        return [tuple(tuple(item) if isinstance(item, list) else item for item in inp[0])]
    if number == 307:
        return [tuple(inp[0]), inp[1], inp[2]]
    if number == 722:
        return [{key: tuple(value) for key, value in inp[0].items()}, *inp[1:]]
    if number == 252:
        return [complex(inp[0])]
    if number in _ALL_TUPLES:
        return _deep_tuple(inp)
    return inp


def typed_inputs(task_id: str, inputs: list[Any]) -> list[Any]:
    """The argument lists of an MBPP+ task (``Mbpp/<n>``) with the Python types its canonical solution expects."""
    number = task_id.rpartition("/")[2]
    if not task_id.startswith("Mbpp/") or not number.isdigit():
        return inputs
    return [_convert(int(number), inp) for inp in inputs]
