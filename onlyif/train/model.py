"""Model factory: a from-scratch GPT-2 for the character tokenizer, or any pretrained HF causal-LM directory."""

from __future__ import annotations

from typing import Any

from onlyif.lm.models import check_model_dir, load_causal_lm, resolve_pretrained
from onlyif.tasks.tokenizer import BOS_ID, EOS_ID, PAD_ID, CharTokenizer
from onlyif.train.config import ModelConfig


def build_model(cfg: ModelConfig) -> Any:
    """A fresh GPT-2 (character vocabulary) or the pretrained model, in fp32 on CPU."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if cfg.pretrained is not None:
        return load_causal_lm(
            check_model_dir(resolve_pretrained(cfg.pretrained, "model.pretrained")), "model.pretrained"
        )
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
