"""Character tokenizer and the one prompt format of the rewrite task.

Prompt format (the only place it is defined)::

    <bos> x → y | ξ =      then the target:   output <eos>

written without spaces, e.g. rule ``ab → ca`` on ``bbabb`` is the prompt ``<bos>ab→ca|bbabb=`` and the response
``bbcab<eos>``. Ids: 0 PAD, 1 BOS, 2 EOS, 3 ``→``, 4 ``|``, 5 ``=``, then ``a``…``z`` as 6…31 (vocab 32), so
one tokenizer serves every alphabet size.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import numpy as np

ARROW, SEP, ANSWER = "→", "|", "="
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
SYMBOLS = (ARROW, SEP, ANSWER)
LETTERS = string.ascii_lowercase


def format_prompt(x: str, y: str, xi: str) -> str:
    """The prompt text for rule ``x → y`` applied to input ``xi`` (BOS not included)."""
    return f"{x}{ARROW}{y}{SEP}{xi}{ANSWER}"


class CharTokenizer:
    """Maps task characters to ids and back; vectorized batch encoding for training data."""

    vocab: tuple[str, ...] = SPECIALS + SYMBOLS + tuple(LETTERS)
    pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID
    name = "onlyif-char"

    def __init__(self) -> None:
        self._index = {tok: i for i, tok in enumerate(self.vocab)}
        lut = np.full(256, -1, dtype=np.int16)
        for ch in LETTERS:
            lut[ord(ch)] = self._index[ch]
        lut[ord(SEP)] = self._index[SEP]
        lut[ord(ANSWER)] = self._index[ANSWER]
        self._byte_lut = lut

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (no BOS/EOS added). Unknown characters raise ``ValueError``."""
        try:
            return [self._index[ch] for ch in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the task vocabulary") from None

    def decode(self, ids: list[int] | np.ndarray) -> str:
        """Text of ``ids``, stopping at the first EOS and skipping PAD/BOS."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i > EOS_ID:
                out.append(self.vocab[i])
        return "".join(out)

    def encode_prompt(self, x: str, y: str, xi: str) -> list[int]:
        """``<bos> x → y | ξ =`` as ids."""
        return [BOS_ID, *self.encode(format_prompt(x, y, xi))]

    def encode_response(self, output: str) -> list[int]:
        """``output <eos>`` as ids."""
        return [*self.encode(output), EOS_ID]

    def encode_letters(self, texts: list[str] | np.ndarray) -> list[np.ndarray]:
        """Vectorized encoding of letter-only strings (inputs, outputs, patterns) into int16 id arrays."""
        out = []
        for t in texts:
            ids = self._byte_lut[np.frombuffer(t.encode("ascii"), dtype=np.uint8)]
            if (ids < 0).any():
                raise ValueError(f"{t!r} has characters outside a…z")
            out.append(ids)
        return out

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``onlyif_tokenizer.json`` into ``directory`` (beside an exported model)."""
        path = Path(directory) / "onlyif_tokenizer.json"
        path.write_text(json.dumps({"name": self.name, "vocab": list(self.vocab)}, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CharTokenizer:
        """Load from a directory written by :meth:`save` (checks the vocabulary matches)."""
        path = Path(directory) / "onlyif_tokenizer.json"
        data = json.loads(path.read_text())
        tok = cls()
        if tuple(data.get("vocab", ())) != tok.vocab:
            raise ValueError(f"{path}: vocabulary differs from this version's {cls.name} tokenizer")
        return tok
