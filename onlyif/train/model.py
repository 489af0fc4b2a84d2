"""Model factory: a from-scratch GPT-2 for the character tokenizer, or any pretrained HF causal-LM directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from onlyif.errors import OnlyIfError
from onlyif.tasks.tokenizer import BOS_ID, EOS_ID, PAD_ID, CharTokenizer
from onlyif.train.config import DataConfig, ModelConfig
from onlyif.train.data import CharCodec, Codec, HFCodec

CHAR_TOKENIZER_FILE = "onlyif_tokenizer.json"


def check_model_dir(path: str | os.PathLike) -> Path:
    """An HF model directory must exist and hold ``config.json``."""
    p = Path(path)
    if not p.is_dir():
        raise OnlyIfError(f"model {p}: directory not found")
    if not (p / "config.json").is_file():
        raise OnlyIfError(f"model {p}: no config.json (not a Hugging Face model directory)")
    return p


def build_model(cfg: ModelConfig) -> Any:
    """A fresh GPT-2 (character vocabulary) or the pretrained model, in fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    if cfg.pretrained is not None:
        path = check_model_dir(cfg.pretrained)
        try:
            return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise OnlyIfError(f"model.pretrained {path}: cannot load ({str(exc).splitlines()[0]})") from None
    config = GPT2Config(
        vocab_size=CharTokenizer().vocab_size,
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return GPT2LMHeadModel(config)


def max_positions(model_config: Any) -> int | None:
    """The longest sequence an HF config accepts, if it says."""
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(model_config, name, None)
        if isinstance(value, int):
            return value
    return None


def load_codec(model_dir: str | os.PathLike | None, data_cfg: DataConfig | None = None) -> Codec:
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
    return HFCodec(tokenizer, chat_template=bool(data_cfg and data_cfg.chat_template))


def save_codec(codec: Codec, directory: str | os.PathLike) -> None:
    """Write the tokenizer beside an exported model so the directory is self-contained."""
    if isinstance(codec, CharCodec):
        codec.tok.save(directory)
    elif isinstance(codec, HFCodec):
        codec.tokenizer.save_pretrained(directory)
