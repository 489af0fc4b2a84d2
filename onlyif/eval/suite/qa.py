"""Exact-match QA (GSM8K, MATH style): greedy generation, final-answer extraction, comparison with the reference.

Extraction (``extract: number``, GSM8K): the first number after the last ``####``, else after the last "The answer
is", else the last number in the text; ``$``, ``+`` and thousands commas are dropped and ``42.0`` is ``42``.
``extract: boxed`` (MATH): the content of the last ``\\boxed{…}``, else what follows the last "The answer is" on
its line, else the last number. Two answers match when both read as numbers (integers, decimals, ``a/b``,
``\\frac{a}{b}``) and are equal, else when their normalized text is equal (MATH's ``strip_string`` rules: no spaces,
``\\left``/``\\right``, units, degrees, ``\\%``, dollars; ``dfrac`` = ``frac``; ``\\frac12`` = ``\\frac{1}{2}``).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Literal

from pydantic import Field, model_validator

from onlyif.errors import OnlyIfError
from onlyif.eval.suite.base import (
    Context,
    DataTaskSpec,
    Task,
    TaskResult,
    check_template,
    get_field,
    register,
    split_examples,
)

_NUMBER = re.compile(r"[-+]?\$?\d(?:[\d,]*\d)?(?:\.\d+)?")
_ANSWER_IS = re.compile(r"the (?:final )?answer is", re.IGNORECASE)
_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}$")


class QASpec(DataTaskSpec):
    """A question-answer set scored by exact match of the extracted final answer."""

    kind: Literal["qa"]
    question_field: str = "question"
    answer_field: str = "answer"
    """The reference; GSM8K's full solution ending ``#### 42`` works as is (and as the answer of shot rows)."""
    prompt_template: str = "Question: {question}\nAnswer:"
    extract: Literal["number", "boxed"] = "number"
    max_new_tokens: int = Field(256, ge=1)
    stop: list[str] = ["Question:"]
    """Generated text is cut at the first of these (besides the model's EOS)."""

    @model_validator(mode="after")
    def _check_template(self) -> QASpec:
        check_template(self.prompt_template, {"question"}, {"question"})
        return self


def normalize_number(text: str) -> str:
    """``"$1,234.50"`` → ``"1234.5"``; ``"42.0"`` → ``"42"``."""
    value = _as_number(text)
    if value is None:
        return text.strip()
    if value.denominator == 1:
        return str(value.numerator)
    return text.strip().replace("$", "").replace(",", "").lstrip("+").rstrip("0")


def _first_number(text: str) -> str | None:
    m = _NUMBER.search(text)
    return normalize_number(m.group()) if m else None


def _last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def extract_number(text: str) -> str | None:
    """The GSM8K-style final number of a solution (see the module doc), normalized; None when there is none."""
    if "####" in text and (n := _first_number(text.rsplit("####", 1)[1])) is not None:
        return n
    hits = list(_ANSWER_IS.finditer(text))
    if hits and (n := _first_number(text[hits[-1].end() :])) is not None:
        return n
    return _last_number(text)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{…}`` (or ``\\fbox{…}``), braces balanced; None when there is none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j].strip()
    return None


def extract_boxed(text: str) -> str | None:
    """The MATH-style final answer of a solution (see the module doc); None when there is none."""
    if (boxed := last_boxed(text)) is not None:
        return boxed
    hits = list(_ANSWER_IS.finditer(text))
    if hits:
        answer = text[hits[-1].end() :].split("\n", 1)[0].strip().rstrip(".").strip().strip("$").strip()
        if answer:
            return answer
    return _last_number(text)


def _as_number(text: str) -> Fraction | None:
    s = text.strip().replace("$", "").replace(",", "").replace(" ", "")
    if m := _FRAC.match(s):
        num, den = int(m.group(2)), int(m.group(3))
        if den == 0:
            return None
        return Fraction(-num if m.group(1) else num, den)
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def normalize_math(text: str) -> str:
    """MATH's answer normalization (Hendrycks et al.'s ``strip_string``), compactly."""
    s = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\").replace("tfrac", "frac")
    s = s.replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    if "\\text{ " in s:  # trailing units: "5 \text{ cm}"
        s = s.split("\\text{ ")[0]
    s = s.replace("\\%", "").replace("%", "").replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    parts = s.split("=")
    if len(parts) == 2 and len(parts[0].strip()) <= 2:  # "x = 5"
        s = parts[1]
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s).replace(" ", "")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    if m := re.fullmatch(r"(-?\d+)/(\d+)", s):
        s = f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}"
    return s


def answers_match(predicted: str | None, expected: str, extract: str = "number") -> bool:
    """Equal as numbers when both read as one, else equal as (for ``boxed``: MATH-normalized) text."""
    if predicted is None:
        return False
    a, b = _as_number(predicted), _as_number(expected)
    if a is not None and b is not None:
        return a == b
    if extract == "boxed":
        return normalize_math(predicted) == normalize_math(expected)
    return predicted.strip() == expected.strip()


def reference_answer(answer: str, extract: str) -> str | None:
    """The final answer of a reference: GSM8K's ``#### 42``; for MATH the boxed part, or the whole short answer."""
    if extract == "number":
        return extract_number(answer)
    return last_boxed(answer) if "\\box" in answer or "\\fbox" in answer else answer.strip()


def cut_at_stop(text: str, stops: list[str]) -> str:
    """``text`` up to the first occurrence of any stop sequence."""
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut].strip()


@register
class QATask(Task):
    kind = "qa"
    spec = QASpec
    cfg: QASpec

    @property
    def primary(self) -> str:
        return "exact_match"

    def evaluate(self, ctx: Context) -> TaskResult:
        from onlyif.lm.decode import decode, stop_on_strings

        cfg = self.cfg
        shots, rows = split_examples(self.name, cfg)
        chat = ctx.use_chat(self.name, cfg.chat_template)
        demos = [
            (self._prompt(r, f"shot row {i}"), str(get_field(r, cfg.answer_field, self.name, f"shot row {i}")).strip())
            for i, r in enumerate(shots)
        ]
        prompts, expected = [], []
        for i, row in rows:
            answer = str(get_field(row, cfg.answer_field, self.name, f"row {i}"))
            ref = reference_answer(answer, cfg.extract)
            if ref is None:
                raise OnlyIfError(
                    f"task {self.name}: row {i}: no final answer in {cfg.answer_field!r} ({answer[-60:]!r})"
                )
            prompts.append(ctx.render(demos, self._prompt(row, f"row {i}"), chat))
            expected.append((answer, ref))
        ids, truncated = self._encode(ctx, prompts, chat)
        eos = ctx.codec.eos_id
        on_strings = stop_on_strings(
            lambda g: ctx.tokenizer.decode(g, skip_special_tokens=True), [cfg.stop] * len(ids)
        )
        ends = ctx.end_ids - {eos}
        gens = decode(
            ctx.model,
            ids,
            cfg.max_new_tokens,
            eos,
            ctx.codec.pad_id,
            batch_size=ctx.batch_size,
            stop_check=lambda i, g: g[-1] in ends or on_strings(i, g),
            desc=self.name,
        )
        extract = extract_number if cfg.extract == "number" else extract_boxed
        records, correct = [], 0
        for (i, row), gen, (answer, ref) in zip(rows, gens, expected, strict=True):
            output = cut_at_stop(ctx.codec.decode(gen), cfg.stop)
            predicted = extract(output)
            ok = answers_match(predicted, ref, cfg.extract)
            correct += ok
            records.append(
                {
                    "index": i,
                    "question": row[cfg.question_field],
                    "reference": answer,
                    "expected": ref,
                    "output": output,
                    "predicted": predicted,
                    "correct": ok,
                }
            )
        n = len(records)
        return TaskResult(
            {"exact_match": correct / n, "n": float(n)},
            records,
            {"chat_template": chat, "shots": len(demos), "truncated_prompts": truncated, "example_prompt": prompts[0]},
        )

    def _prompt(self, row: dict, where: str) -> str:
        return self.cfg.prompt_template.format(question=get_field(row, self.cfg.question_field, self.name, where))

    def _encode(self, ctx: Context, prompts: list[str], chat: bool) -> tuple[list[list[int]], int]:
        """Token ids, left-truncated so that prompt + ``max_new_tokens`` fit the model; how many were cut."""
        room = None if ctx.max_positions is None else ctx.max_positions - self.cfg.max_new_tokens
        if room is not None and room < 1:
            raise OnlyIfError(
                f"task {self.name}: max_new_tokens {self.cfg.max_new_tokens} leaves no room for a prompt in the "
                f"model's {ctx.max_positions} positions"
            )
        ids = [ctx.encode(p, chat) for p in prompts]
        cut = sum(room is not None and len(x) > room for x in ids)
        return ([x[-room:] for x in ids] if room is not None else ids), cut
