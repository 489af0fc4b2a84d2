"""Multiple choice by log-likelihood (MMLU, ARC style), as lm-evaluation-harness scores it.

Each choice is a continuation of the prompt: its letter (``continuation: letter``, the choices listed in the
prompt, as MMLU is usually run) or its text (``continuation: text``, as ARC/HellaSwag). The continuation's tokens
are those of ``prompt + continuation`` after the prompt's own tokens; ``accuracy`` picks the choice with the highest
summed log-likelihood, ``accuracy_norm`` the highest mean log-likelihood per continuation token (lm-eval normalizes by
bytes; per token is our choice). The primary metric is ``accuracy`` for letters and ``accuracy_norm`` for texts
unless ``primary`` says otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

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

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TEMPLATES = {"letter": "{question}\n{choices}\nAnswer:", "text": "Question: {question}\nAnswer:"}


class ChoiceSpec(DataTaskSpec):
    """A multiple-choice set: a question, its choices and the index, letter or label of the right one."""

    kind: Literal["choice"]
    question_field: str = "question"
    choices_field: str = "choices"
    """A list of texts (MMLU; labelled A, B, …) or ``{text: [...], label: [...]}`` (ARC)."""
    answer_field: str | None = None
    """Default: ``answer`` when the row has it (MMLU), else ``answerKey`` (ARC)."""
    continuation: Literal["letter", "text"] = "letter"
    prompt_template: str | None = None
    """``{question}`` and ``{choices}`` (lines ``A. text``); default ``TEMPLATES[continuation]``."""
    primary: Literal["accuracy", "accuracy_norm"] | None = None

    @model_validator(mode="after")
    def _check_template(self) -> ChoiceSpec:
        if self.prompt_template is not None:
            check_template(self.prompt_template, {"question", "choices"}, {"question"})
        return self


def parse_choices(value: Any, where: str) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of a row's choices: a list (labels A, B, …) or ARC's ``{text, label}``."""
    if isinstance(value, dict) and "text" in value:
        texts, labels = list(value["text"]), list(value.get("label") or LETTERS[: len(value["text"])])
    elif isinstance(value, list | tuple):
        texts, labels = list(value), list(LETTERS[: len(value)])
    else:
        raise OnlyIfError(f"{where}: choices must be a list or {{text: [...], label: [...]}} (got {value!r:.80})")
    if len(texts) < 2 or len(texts) != len(labels):
        raise OnlyIfError(f"{where}: need at least two choices, one label each (got {value!r:.80})")
    return [str(t) for t in texts], [str(lab) for lab in labels]


def gold_index(answer: Any, labels: list[str], where: str) -> int:
    """The right choice: an index, a label (``"B"``, ARC's ``"3"``) or a letter."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        index = answer
    elif isinstance(answer, str) and answer.strip() in labels:
        index = labels.index(answer.strip())
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS:
        index = LETTERS.index(answer.strip().upper())
    else:
        raise OnlyIfError(f"{where}: answer {answer!r} is neither an index nor one of the labels {labels}")
    if not 0 <= index < len(labels):
        raise OnlyIfError(f"{where}: answer {answer!r} is out of range for {len(labels)} choices")
    return index


@register
class ChoiceTask(Task):
    kind = "choice"
    spec = ChoiceSpec
    cfg: ChoiceSpec

    @property
    def primary(self) -> str:
        return self.cfg.primary or ("accuracy" if self.cfg.continuation == "letter" else "accuracy_norm")

    def evaluate(self, ctx: Context) -> TaskResult:
        from onlyif.lm.loss import response_nll

        cfg = self.cfg
        shots, rows = split_examples(self.name, cfg)
        chat = ctx.use_chat(self.name, cfg.chat_template)
        demos = []
        for i, row in enumerate(shots):
            prompt, conts, gold = self._example(row, f"shot row {i}")
            demos.append((prompt, conts[gold]))
        examples, contexts, continuations = [], [], []
        for i, row in rows:
            prompt, conts, gold = self._example(row, f"row {i}")
            context = ctx.render(demos, prompt, chat)
            ctx_ids = ctx.encode(context, chat)
            for cont in conts:
                c_ids, cont_ids = self._pair(ctx, context, ctx_ids, ("" if chat else " ") + cont, chat, i)
                contexts.append(c_ids)
                continuations.append(cont_ids)
            examples.append((i, row, conts, gold, context))
        nll, counts = response_nll(
            ctx.model, contexts, continuations, ctx.codec.pad_id, ctx.batch_size, desc=self.name
        )
        records, k = [], 0
        hits = {"accuracy": 0, "accuracy_norm": 0}
        for i, row, conts, gold, _ in examples:
            ll = [-x for x in nll[k : k + len(conts)]]
            norm = [v / c for v, c in zip(ll, counts[k : k + len(conts)], strict=True)]
            k += len(conts)
            pred, pred_norm = ll.index(max(ll)), norm.index(max(norm))
            hits["accuracy"] += pred == gold
            hits["accuracy_norm"] += pred_norm == gold
            records.append(
                {
                    "index": i,
                    "question": row[cfg.question_field],
                    "choices": conts,
                    "gold": gold,
                    "loglik": ll,
                    "loglik_norm": norm,
                    "pred": pred,
                    "pred_norm": pred_norm,
                    "correct": pred == gold,
                    "correct_norm": pred_norm == gold,
                }
            )
        n = len(records)
        metrics = {name: hit / n for name, hit in hits.items()}
        info = {"chat_template": chat, "shots": len(demos), "example_prompt": examples[0][4]}
        return TaskResult({**metrics, "n": float(n)}, records, info)

    def _example(self, row: dict[str, Any], where: str) -> tuple[str, list[str], int]:
        """The prompt text, the continuation texts (labels or choice texts) and the gold index of a row."""
        cfg = self.cfg
        full = f"task {self.name}: {where}"
        question = get_field(row, cfg.question_field, self.name, where)
        texts, labels = parse_choices(get_field(row, cfg.choices_field, self.name, where), full)
        answer_field = cfg.answer_field or ("answer" if "answer" in row else "answerKey")
        gold = gold_index(get_field(row, answer_field, self.name, where), labels, full)
        listing = "\n".join(f"{lab}. {t}" for lab, t in zip(labels, texts, strict=True))
        template = cfg.prompt_template or TEMPLATES[cfg.continuation]
        prompt = template.format(question=question, choices=listing)
        return prompt, labels if cfg.continuation == "letter" else texts, gold

    def _pair(
        self, ctx: Context, context: str, ctx_ids: list[int], cont: str, chat: bool, i: int
    ) -> tuple[list[int], list[int]]:
        """Context and continuation ids (the continuation's are the joint encoding's tail, as lm-eval does),
        the context cut from the left when both do not fit the model."""
        whole = ctx.encode(context + cont, chat)
        if len(whole) > len(ctx_ids) and whole[: len(ctx_ids)] == ctx_ids:
            cont_ids = whole[len(ctx_ids) :]
        else:
            cont_ids = list(ctx.tokenizer(cont, add_special_tokens=False)["input_ids"])
        if not cont_ids:
            raise OnlyIfError(f"task {self.name}: row {i}: choice {cont!r} has no tokens")
        limit = ctx.max_positions
        if limit is not None and len(ctx_ids) + len(cont_ids) > limit:
            if len(cont_ids) >= limit:
                raise OnlyIfError(f"task {self.name}: row {i}: a choice alone is longer than the model's {limit}")
            return ctx_ids[-(limit - len(cont_ids)) :], cont_ids
        return ctx_ids, cont_ids
