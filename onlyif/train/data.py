"""Pure data side of training and evaluation: dataset checks, tokenization, loss masks, bucketing, collation.

Two dataset kinds are accepted (one parquet folder per split, ``DATA/<split>/*.parquet``):

* ``synthetic`` — the rewrite-task contract written by ``onlyif generate`` (``rule_x``, ``rule_y``, ``input``,
  ``output``, optionally ``noop``, ``domain``, ``k``, ``rule_id``): prompt ``format_prompt(x, y, ξ)``, response
  ``output`` + EOS.
* ``text`` — generic instruction data (``prompt`` and ``response`` strings, e.g. from ``onlyif mix``).

A *codec* turns rows into prompt/response token ids and generated ids back into text: :class:`CharCodec` (the
character tokenizer, synthetic rows only) or :class:`HFCodec` (a pretrained model's tokenizer, either kind).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from onlyif.errors import OnlyIfError
from onlyif.tasks.tokenizer import EOS_ID, PAD_ID, CharTokenizer, format_prompt

IGNORE_INDEX = -100
SYNTHETIC_COLUMNS = ("rule_x", "rule_y", "input", "output")
TEXT_COLUMNS = ("prompt", "response")
META_COLUMNS = ("noop", "domain", "k", "rule_id")
Kind = Literal["synthetic", "text"]


def split_files(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """The parquet files of ``DATA/<split>``; a clear error when the folder or its files are missing."""
    root = Path(data_dir)
    if not root.is_dir():
        raise OnlyIfError(f"--data {root}: dataset directory not found")
    folder = root / split
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise OnlyIfError(f"--data {root}: split {split!r} not found (splits present: {', '.join(present) or 'none'})")
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise OnlyIfError(f"{folder}: no parquet files")
    return files


def dataset_kind(data_dir: str | os.PathLike, split: str) -> Kind:
    """``synthetic`` or ``text`` from the split's parquet schema; names the file and missing columns if neither."""
    import pyarrow.parquet as pq

    first = split_files(data_dir, split)[0]
    try:
        names = set(pq.read_schema(first).names)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise OnlyIfError(f"{first}: not a readable parquet file ({exc.__class__.__name__})") from None
    if set(SYNTHETIC_COLUMNS) <= names:
        return "synthetic"
    if set(TEXT_COLUMNS) <= names:
        return "text"
    missing_syn = sorted(set(SYNTHETIC_COLUMNS) - names)
    missing_txt = sorted(set(TEXT_COLUMNS) - names)
    raise OnlyIfError(
        f"{first}: wrong columns {sorted(names)}: need the synthetic contract (missing {missing_syn}) "
        f"or prompt/response text (missing {missing_txt})"
    )


def read_rows(data_dir: str | os.PathLike, split: str, limit: int | None = None) -> dict[str, list]:
    """The first ``limit`` rows of a split as column lists (the columns codecs and metrics use)."""
    import pyarrow.parquet as pq

    kind = dataset_kind(data_dir, split)
    wanted = (SYNTHETIC_COLUMNS if kind == "synthetic" else TEXT_COLUMNS) + META_COLUMNS
    cols: dict[str, list] = {}
    for f in split_files(data_dir, split):
        schema_names = pq.read_schema(f).names
        table = pq.read_table(f, columns=[c for c in wanted if c in schema_names])
        if limit is not None:
            table = table.slice(0, limit - len(next(iter(cols.values()), [])))
        for name in table.column_names:
            cols.setdefault(name, []).extend(table.column(name).to_pylist())
        if limit is not None and len(next(iter(cols.values()), [])) >= limit:
            break
    return cols


class Codec:
    """Rows → (prompt ids, response ids); generated ids → text. Subclasses fix the tokenizer."""

    pad_id: int
    eos_id: int

    def encode(self, rows: dict[str, Sequence]) -> tuple[list[list[int]], list[list[int]]]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def expected(self, rows: dict[str, Sequence]) -> list[str]:
        """The reference output of each row, as :meth:`decode` would render a perfect generation."""
        return [str(v) for v in rows["output" if "output" in rows else "response"]]

    def prompt_texts(self, rows: dict[str, Sequence]) -> list[str]:
        if "prompt" in rows:
            return [str(p) for p in rows["prompt"]]
        return [
            format_prompt(x, y, xi) for x, y, xi in zip(rows["rule_x"], rows["rule_y"], rows["input"], strict=True)
        ]


class CharCodec(Codec):
    """The rewrite task's character tokenizer: ``<bos>x→y|ξ=`` then ``output<eos>``."""

    def __init__(self) -> None:
        self.tok = CharTokenizer()
        self.pad_id, self.eos_id = PAD_ID, EOS_ID

    def encode(self, rows: dict[str, Sequence]) -> tuple[list[list[int]], list[list[int]]]:
        if "rule_x" not in rows:
            raise OnlyIfError(
                "the character tokenizer reads only the synthetic rewrite task; give model.pretrained "
                "(an HF model directory with its tokenizer) to train on prompt/response text"
            )
        prompts = [
            self.tok.encode_prompt(x, y, xi)
            for x, y, xi in zip(rows["rule_x"], rows["rule_y"], rows["input"], strict=True)
        ]
        responses = [self.tok.encode_response(o) for o in rows["output"]]
        return prompts, responses

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids))


class HFCodec(Codec):
    """A pretrained model's tokenizer; responses end with its EOS token, comparisons ignore outer whitespace."""

    def __init__(self, tokenizer: Any, chat_template: bool = False) -> None:
        if tokenizer.eos_token_id is None:
            raise OnlyIfError(f"tokenizer {tokenizer.name_or_path!r} has no EOS token; responses need one")
        if chat_template and not getattr(tokenizer, "chat_template", None):
            raise OnlyIfError(f"data.chat_template: tokenizer {tokenizer.name_or_path!r} has no chat template")
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id)

    def encode(self, rows: dict[str, Sequence]) -> tuple[list[list[int]], list[list[int]]]:
        texts = self.prompt_texts(rows)
        if self.chat_template:
            prompts = [
                list(
                    self.tokenizer.apply_chat_template(
                        [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True, return_dict=False
                    )
                )
                for t in texts
            ]
        else:
            prompts = [list(p) for p in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        answers = self.tokenizer([str(r) for r in self.expected(rows)], add_special_tokens=False)["input_ids"]
        return prompts, [[*a, self.eos_id] for a in answers]

    def decode(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def expected(self, rows: dict[str, Sequence]) -> list[str]:
        return [s.strip() for s in super().expected(rows)]


def join_examples(
    prompts: list[list[int]],
    responses: list[list[int]],
    max_length: int,
    truncate: bool,
    describe: Callable[[int], str] = lambda i: f"row {i}",
) -> tuple[list[np.ndarray], np.ndarray]:
    """Concatenate prompt+response ids; return sequences and prompt lengths.

    Sequences longer than ``max_length`` are cut at ``max_length`` when ``truncate`` (rows left with no response
    token are dropped), else refused with an error naming the row (``describe(i)``).
    """
    seqs, plens = [], []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids = p + r
        if len(ids) > max_length:
            if not truncate:
                raise OnlyIfError(
                    f"{describe(i)}: prompt+response is {len(ids)} tokens, longer than the model's {max_length} "
                    f"(raise model.n_positions)"
                )
            if len(p) >= max_length:
                continue
            ids = ids[:max_length]
        seqs.append(np.asarray(ids, dtype=np.int32))
        plens.append(len(p))
    return seqs, np.asarray(plens, dtype=np.int32)


def loss_labels(seq: np.ndarray, prompt_len: int) -> np.ndarray:
    """Labels for causal-LM loss: the sequence with every prompt position masked (``-100``)."""
    labels = seq.astype(np.int64, copy=True)
    labels[:prompt_len] = IGNORE_INDEX
    return labels


def collate(seqs: Sequence[np.ndarray], prompt_lens: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad to the longest sequence: ``input_ids``, ``attention_mask``, ``labels`` (prompt and pad masked)."""
    n, width = len(seqs), max(len(s) for s in seqs)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    labels = np.full((n, width), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, (s, p) in enumerate(zip(seqs, prompt_lens, strict=True)):
        input_ids[i, : len(s)] = s
        labels[i, : len(s)] = loss_labels(s, int(p))
        mask[i, : len(s)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def bucket(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices of micro-batches of ``batch_size`` rows after a stable sort by length (less padding per batch)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
