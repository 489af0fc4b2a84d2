"""The task interface of the eval suite: task configs, the registry by ``kind``, the shared model context, reading
local data files and rendering (few-shot, chat) prompts.

A task kind is one module: a config class (a :class:`TaskSpec` with ``kind: Literal["name"]``) and a :class:`Task`
subclass decorated with :func:`register`; :mod:`onlyif.eval.suite.config` lists the config classes.
"""

from __future__ import annotations

import gzip
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from onlyif.config import Config
from onlyif.errors import OnlyIfError

ChatSetting = bool | Literal["auto"]
"""``auto``: the model's chat template when its tokenizer has one; ``true``: required; ``false``: plain text."""


class TaskSpec(Config):
    """What every task config has."""

    kind: str
    max_examples: int | None = Field(None, ge=1)
    """Score only the first N examples (a fixed subset, after the few-shot rows are set aside)."""


class DataTaskSpec(TaskSpec):
    """A task read from one local file of rows, optionally prompted with few-shot examples."""

    path: str
    """A ``.jsonl`` / ``.jsonl.gz`` / ``.json`` (a list of rows) / ``.parquet`` file, or a folder of them."""
    shots: int = Field(0, ge=0)
    """Few-shot examples before each prompt: the first N rows of ``shots_path``, or else the first N rows of
    ``path`` (then excluded from scoring)."""
    shots_path: str | None = None
    chat_template: ChatSetting | None = None
    """Override of the suite's ``chat_template`` for this task."""

    @model_validator(mode="after")
    def _check_shots(self) -> DataTaskSpec:
        if self.shots_path is not None and self.shots == 0:
            raise ValueError("shots_path: set shots (how many of its rows to use) as well")
        return self


@dataclass
class TaskResult:
    """A task's metrics (unprefixed names, e.g. ``exact_match``), one record per scored example, and facts for the
    summary (e.g. one rendered prompt, whether the chat template was used)."""

    metrics: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class Context:
    """What tasks share: the model (loaded once, on first use), its tokenizer and the suite's settings."""

    def __init__(
        self, model_dir: str | os.PathLike, device: str, batch_size: int, chat_template: ChatSetting, out_dir: Path
    ) -> None:
        self.model_dir = model_dir
        self.device = device
        self.batch_size = batch_size
        self.chat_template = chat_template
        self.out_dir = out_dir

    @cached_property
    def _loaded(self) -> tuple[Any, Any]:
        from onlyif.lm.codec import HFCodec
        from onlyif.lm.models import load_eval_model

        model, codec = load_eval_model(self.model_dir, self.device)
        if not isinstance(codec, HFCodec):
            raise OnlyIfError(
                f"--model {self.model_dir}: the suite needs a model with a Hugging Face tokenizer "
                "(this one uses the rewrite task's character tokenizer)"
            )
        return model, codec

    @property
    def model(self) -> Any:
        return self._loaded[0]

    @property
    def codec(self) -> Any:
        """The model's :class:`~onlyif.lm.codec.HFCodec` (``tokenizer``, ``eos_id``, ``pad_id``)."""
        return self._loaded[1]

    @property
    def tokenizer(self) -> Any:
        return self.codec.tokenizer

    @property
    def end_ids(self) -> set[int]:
        """Every end-of-sequence id of the model's generation config (chat models often add their end of turn)."""
        value = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        return set() if value is None else {int(v) for v in (value if isinstance(value, list | tuple) else [value])}

    @property
    def max_positions(self) -> int | None:
        from onlyif.lm.models import max_positions

        return max_positions(self.model.config)

    def use_chat(self, task: str, setting: ChatSetting | None) -> bool:
        """Whether ``task`` renders prompts with the chat template (its own setting, else the suite's)."""
        setting = self.chat_template if setting is None else setting
        has = bool(getattr(self.tokenizer, "chat_template", None))
        if setting is True and not has:
            raise OnlyIfError(f"task {task}: chat_template is true but the model's tokenizer has no chat template")
        return has if setting == "auto" else bool(setting)

    def render(self, shots: list[tuple[str, str]], query: str, chat: bool) -> str:
        """The prompt text: few-shot (prompt, answer) pairs then ``query``.

        Plain text joins ``prompt + " " + answer`` blocks with blank lines; with the chat template the shots are
        user/assistant turns and the query the last user turn, followed by the assistant header.
        """
        if not chat:
            return "".join(f"{p} {a}\n\n" for p, a in shots) + query
        messages = []
        for p, a in shots:
            messages += [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": query})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, text: str, chat: bool) -> list[int]:
        """Token ids of a rendered prompt (chat-rendered text already holds its special tokens)."""
        return list(self.tokenizer(text, add_special_tokens=not chat)["input_ids"])


class Task(ABC):
    """One configured task of the suite. Subclasses set ``kind`` and ``spec`` and implement :meth:`evaluate`."""

    kind: ClassVar[str]
    spec: ClassVar[type[TaskSpec]]

    def __init__(self, name: str, cfg: TaskSpec) -> None:
        self.name = name
        self.cfg = cfg

    @property
    @abstractmethod
    def primary(self) -> str:
        """The metric (unprefixed) that enters ``suite/score``."""

    @property
    def needs_model(self) -> bool:
        return True

    def check(self) -> None:
        """Fail in one line before the model is loaded when an input file is missing."""
        for key in ("path", "shots_path"):
            path = getattr(self.cfg, key, None)
            if path is not None and not Path(path).exists():
                raise OnlyIfError(f"task {self.name}: {key} {path}: not found")

    @abstractmethod
    def evaluate(self, ctx: Context) -> TaskResult: ...


def split_examples(name: str, cfg: DataTaskSpec) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
    """The shot rows and the ``(row number in path, row)`` pairs to score, per ``shots`` and ``max_examples``."""
    n = cfg.max_examples
    if cfg.shots_path is not None:
        shots = read_rows(cfg.shots_path, cfg.shots)
        if len(shots) < cfg.shots:
            raise OnlyIfError(f"task {name}: shots_path {cfg.shots_path}: {len(shots)} rows, fewer than shots")
        rows, offset = read_rows(cfg.path, n), 0
    else:
        rows = read_rows(cfg.path, None if n is None else cfg.shots + n)
        shots, rows, offset = rows[: cfg.shots], rows[cfg.shots :], cfg.shots
    if not rows:
        raise OnlyIfError(f"task {name}: path {cfg.path}: no rows to score after the {cfg.shots} shot rows")
    return shots, list(enumerate(rows, offset))


def check_template(template: str, allowed: set[str], required: set[str]) -> None:
    """A ``str.format`` template may use only ``allowed`` fields and must use ``required`` (``{{``/``}}`` are
    literal braces); raises ``ValueError`` for the config error."""
    import string

    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"prompt_template: {exc} (write literal braces as {{{{ and }}}})") from None
    if fields - allowed or required - fields:
        raise ValueError(
            f"prompt_template: may use {', '.join(f'{{{f}}}' for f in sorted(allowed))} and must use "
            f"{', '.join(f'{{{f}}}' for f in sorted(required))} (got fields {sorted(fields)})"
        )


KINDS: dict[str, type[Task]] = {}
"""Task classes by their ``kind:`` name."""


def register(cls: type[Task]) -> type[Task]:
    KINDS[cls.kind] = cls
    return cls


def read_rows(path: str | os.PathLike, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` rows of a jsonl (optionally gzipped), json (a list) or parquet file, or of a folder of
    such files (sorted by name); an unreadable file or line is one error naming it."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and _format(f) is not None)
        if not files:
            raise OnlyIfError(f"{p}: no .jsonl, .json or .parquet files")
    elif p.is_file():
        if _format(p) is None:
            raise OnlyIfError(f"{p}: unknown format (expected .jsonl, .jsonl.gz, .json or .parquet)")
        files = [p]
    else:
        raise OnlyIfError(f"{p}: not found")
    rows: list[dict[str, Any]] = []
    for f in files:
        if limit is not None and len(rows) >= limit:
            break
        rows += _read_file(f, None if limit is None else limit - len(rows))
    return rows


def _format(p: Path) -> str | None:
    name = p.name.lower()
    for suffix in (".jsonl", ".jsonl.gz", ".json", ".parquet"):
        if name.endswith(suffix):
            return suffix
    return None


def _read_file(p: Path, limit: int | None) -> list[dict[str, Any]]:
    fmt = _format(p)
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as exc:  # any unreadable file is the same user error
            raise OnlyIfError(f"{p}: not a readable parquet file ({exc.__class__.__name__})") from None
        return table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()
    if fmt == ".json":
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise OnlyIfError(f"{p}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise OnlyIfError(f"{p}: expected a JSON list of objects (use .jsonl for one object a line)")
        return data[:limit]
    rows = []
    with gzip.open(p, "rt") if fmt == ".jsonl.gz" else open(p) as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise OnlyIfError(f"{p} line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise OnlyIfError(f"{p} line {lineno}: expected a JSON object")
            rows.append(row)
    return rows


def get_field(row: dict[str, Any], name: str, task: str, where: str) -> Any:
    """``row[name]``; a missing field is one error naming the task, the row (``where``) and the fields it has."""
    if name not in row:
        raise OnlyIfError(f"task {task}: {where}: no field {name!r} (fields: {', '.join(sorted(row))})")
    return row[name]
