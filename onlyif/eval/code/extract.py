"""Code from model output: the right fenced block of a chat answer, a base model's continuation cut at the stop
sequences of its benchmark, and the preamble of a prompt (imports, helpers) a whole-function answer needs."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

FUNCTION_STOPS = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>")
"""Stops for continuing a function body (HumanEval style): bigcode-evaluation-harness's ``humaneval`` task list,
the Codex paper's five (``\\nclass``, ``\\ndef``, ``\\n#``, ``\\nif``, ``\\nprint``) plus decorators, a closing
fence and StarCoder2's file separator. Indented lines never match: only a new top-level statement ends the body."""

PROGRAM_STOPS = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")
"""Stops for writing a whole program after a docstring prompt (MBPP style): bigcode-evaluation-harness's ``mbpp``
task list (a ``def`` must not stop it: the answer is a function)."""

PYTHON_TAGS = frozenset({"python", "py", "python3", "py3"})


@dataclass(frozen=True)
class Block:
    """One fenced block: its info-string tag (lower case, ``""`` when untagged), dedented code, and whether its
    closing fence came."""

    tag: str
    code: str
    closed: bool = True


def fenced_blocks(text: str) -> list[Block]:
    """The non-empty ````` fenced blocks of a markdown answer, in order; an unterminated last fence (the model ran
    out of tokens) runs to the end of the text."""
    found: list[tuple[str, list[str]]] = []
    tag: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if tag is None:
            if stripped.startswith("```"):
                info = stripped[3:].strip().split()
                tag, lines = (info[0].lower() if info else ""), []
        elif stripped.startswith("```") or stripped.endswith("```"):
            if not stripped.startswith("```"):  # code and the closing fence on one line
                lines.append(line.rstrip()[:-3])
            found.append((tag, lines, True))
            tag = None
        else:
            lines.append(line)
    if tag is not None:
        found.append((tag, lines, False))
    blocks = [Block(tag, textwrap.dedent("\n".join(lines)).strip("\n") + "\n", closed) for tag, lines, closed in found]
    return [b for b in blocks if b.code.strip()]


def defines(code: str, entry_point: str) -> bool:
    """Whether ``code`` defines ``entry_point`` as a top-level function."""
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M) is not None


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code of a chat answer: the first fenced block defining ``entry_point``, else the first block tagged
    Python, else the longest block; an answer without fences is returned as it is."""
    blocks = fenced_blocks(text)
    if not blocks:
        return text
    if entry_point:
        for block in blocks:
            if defines(block.code, entry_point):
                return block.code
    for block in blocks:
        if block.tag in PYTHON_TAGS:
            return block.code
    return max(blocks, key=lambda b: len(b.code)).code


def answer_complete(text: str, entry_point: str) -> bool:
    """Whether a chat answer already holds a closed block defining ``entry_point``: :func:`extract_code` would
    pick that block whatever followed, so decoding may stop."""
    return any(b.closed and defines(b.code, entry_point) for b in fenced_blocks(text))


def truncate_at_stops(text: str, stops: tuple[str, ...] | list[str]) -> str:
    """``text`` up to the earliest occurrence of any stop sequence (human-eval's convention for base models)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def prompt_preamble(prompt: str, entry_point: str) -> str:
    """What a prompt defines before ``entry_point``'s ``def`` (imports, helper functions): a whole-function answer
    runs after it, so it may use them without repeating them. Empty when the prompt does not define it."""
    match = re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", prompt, re.M)
    return prompt[: match.start()] if match else ""
