"""Turn one raw record of a supported format into the normalized schema, or say why it cannot be parsed.

Normalized row: ``id``, ``source``, ``domain``, ``messages`` (list of ``{role, content}``), and the flattened
``prompt`` / ``response`` strings (``response`` = the last assistant turn, ``prompt`` = everything before it).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "input", "output", "system"),
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "prompt_response": ("prompt", "response", "system"),
}
"""Canonical fields each record format reads (a source's ``columns`` maps them to its own column names)."""

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "output"),
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "prompt_response": ("prompt", "response"),
}

ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "system": "system",
}


class RecordError(ValueError):
    """A record that cannot be normalized; the message is the quarantine reason."""


def _text(record: dict[str, Any], field: str, column: str, required: bool) -> str | None:
    value = record.get(column)
    if value is None:
        if required:
            raise RecordError(f"missing field {column!r}")
        return None
    if not isinstance(value, str):
        raise RecordError(f"field {column!r} is {type(value).__name__}, expected a string")
    return value


def _turns(value: Any, column: str, role_key: str, content_key: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RecordError(f"field {column!r} is a string that is not a JSON list of turns") from None
    if not isinstance(value, list) or not value:
        raise RecordError(f"field {column!r} must be a non-empty list of turns")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise RecordError(f"{column}[{i}] is {type(turn).__name__}, expected a mapping")
        role, content = turn.get(role_key), turn.get(content_key)
        if not isinstance(role, str) or role.lower() not in ROLE_ALIASES:
            raise RecordError(f"{column}[{i}].{role_key}: unknown role {role!r}")
        if not isinstance(content, str):
            raise RecordError(f"{column}[{i}].{content_key} is {type(content).__name__}, expected a string")
        turns.append({"role": ROLE_ALIASES[role.lower()], "content": content})
    return turns


def to_messages(record: dict[str, Any], fmt: str, columns: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The conversation of ``record`` in format ``fmt`` (``columns`` renames canonical fields)."""
    if not isinstance(record, dict):
        raise RecordError(f"record is {type(record).__name__}, expected a mapping")
    cols = {f: (columns or {}).get(f, f) for f in FORMAT_FIELDS[fmt]}
    req = REQUIRED_FIELDS[fmt]
    if fmt == "alpaca":
        instruction = _text(record, "instruction", cols["instruction"], True)
        extra = _text(record, "input", cols["input"], False)
        output = _text(record, "output", cols["output"], True)
        system = _text(record, "system", cols["system"], False)
        user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
        return ([{"role": "system", "content": system}] if system else []) + msgs
    if fmt == "prompt_response":
        vals = {f: _text(record, f, cols[f], f in req) for f in cols}
        msgs = [{"role": "user", "content": vals["prompt"]}, {"role": "assistant", "content": vals["response"]}]
        return ([{"role": "system", "content": vals["system"]}] if vals["system"] else []) + msgs
    column = cols[req[0]]
    if record.get(column) is None:
        raise RecordError(f"missing field {column!r}")
    if fmt == "messages":
        return _turns(record[column], column, "role", "content")
    return _turns(record[column], column, "from", "value")


def flatten(messages: list[dict[str, str]]) -> tuple[str, str]:
    """``(prompt, response)``: the last assistant turn is the response; the turns before it form the prompt.

    A single user turn (optionally after a system turn) is used as is; longer histories are written as
    ``role: content`` blocks separated by blank lines.
    """
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise RecordError("no assistant turn")
    history = messages[:last]
    if not any(m["role"] == "user" for m in history):
        raise RecordError("no user turn before the last assistant turn")
    roles = [m["role"] for m in history]
    if roles in (["user"], ["system", "user"]):
        prompt = "\n\n".join(m["content"] for m in history)
    else:
        prompt = "\n\n".join(f"{m['role']}: {m['content']}" for m in history)
    return prompt, messages[last]["content"]


HASH_HEX = 16  # hex digits of the content hash that ends every row id


def row_id(source: str, messages: list[dict[str, str]]) -> str:
    """A content-derived id, ``<source>-<16 hex digits>``: stable across file order, block layout and reruns."""
    payload = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
    return f"{source}-{hashlib.sha256(payload.encode()).hexdigest()[:HASH_HEX]}"


def normalize_record(
    record: dict[str, Any], fmt: str, source: str, domain: str, columns: dict[str, str] | None = None
) -> dict[str, Any]:
    """The normalized row of ``record``; raises :class:`RecordError` with the reason if it cannot be parsed."""
    messages = to_messages(record, fmt, columns)
    prompt, response = flatten(messages)
    return {
        "id": row_id(source, messages),
        "source": source,
        "domain": domain,
        "messages": messages,
        "prompt": prompt,
        "response": response,
    }
