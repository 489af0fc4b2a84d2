"""Codecs: rows → prompt/response token ids, generated ids → text.

:class:`CharCodec` is the character tokenizer of the rewrite task (synthetic rows only); :class:`HFCodec` wraps a
pretrained model's tokenizer (either dataset kind, optionally through its chat template).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onlyif.errors import OnlyIfError
from onlyif.tasks.tokenizer import EOS_ID, PAD_ID, CharTokenizer, format_prompt

CHAR_TOKENIZER_FILE = "onlyif_tokenizer.json"


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


def load_codec(model_dir: str | os.PathLike | None, chat_template: bool = False) -> Codec:
    """The codec of a model: the character tokenizer for from-scratch/onlyif-exported models, else its HF tokenizer."""
    if model_dir is None or (Path(model_dir) / CHAR_TOKENIZER_FILE).is_file():
        if model_dir is not None:
            CharTokenizer.load(model_dir)  # checks the vocabulary matches
        return CharCodec()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise OnlyIfError(f"model {model_dir}: no usable tokenizer ({str(exc).splitlines()[0]})") from None
    return HFCodec(tokenizer, chat_template=chat_template)


def save_codec(codec: Codec, directory: str | os.PathLike) -> None:
    """Write the tokenizer beside an exported model so the directory is self-contained."""
    if isinstance(codec, CharCodec):
        codec.tok.save(directory)
    elif isinstance(codec, HFCodec):
        codec.tokenizer.save_pretrained(directory)
