"""Model factory: a from-scratch decoder (GPT-2 or Llama-style) for the character tokenizer, or any pretrained HF
causal-LM directory."""

from __future__ import annotations

from typing import Any

from onlyif.lm.models import check_model_dir, load_causal_lm, resolve_pretrained
from onlyif.tasks.tokenizer import BOS_ID, EOS_ID, PAD_ID, CharTokenizer
from onlyif.train.config import ModelConfig


def build_model(cfg: ModelConfig) -> Any:
    """A fresh decoder on the character vocabulary (``cfg.arch``), or the pretrained model, in fp32 on CPU."""
    if cfg.pretrained is not None:
        return load_causal_lm(
            check_model_dir(resolve_pretrained(cfg.pretrained, "model.pretrained")), "model.pretrained"
        )
    special = {"vocab_size": CharTokenizer().vocab_size, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}
    special["pad_token_id"] = PAD_ID
    inner = cfg.n_inner or 4 * cfg.n_embd
    if cfg.arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            hidden_size=cfg.n_embd,
            intermediate_size=inner,
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head,
            num_key_value_heads=cfg.n_head,
            max_position_embeddings=cfg.n_positions,
            attention_dropout=cfg.dropout,
            tie_word_embeddings=True,
            **special,
        )
        return LlamaForCausalLM(config)
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=inner,
        # GPT-2's tanh-approximated GELU as one fused op: the same function as HF's default "gelu_new", which spends
        # ~30 % of a small model's CPU step in its five separate elementwise ops
        activation_function="gelu_pytorch_tanh",
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        **special,
    )
    return GPT2LMHeadModel(config)
