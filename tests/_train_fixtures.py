"""Helpers for the training/evaluation tests: tiny synthetic datasets and tiny random-weight HF models on disk."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from onlyif.train.config import TrainConfig

ALPHABET = "abcd"


def synthetic_rows(
    n: int, rules: list[tuple[str, str]], seed: int, input_length: int = 6, noop_every: int = 5
) -> list[dict]:
    """Rewrite-task rows following the parquet contract (``output = input.replace(x, y, 1)``)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rule_id = i % len(rules)
        x, y = rules[rule_id]
        noop = i % noop_every == 0
        while True:
            xi = "".join(rng.choice(ALPHABET) for _ in range(input_length))
            if not noop and x not in xi:
                pos = rng.randrange(input_length - len(x) + 1)
                xi = xi[:pos] + x + xi[pos + len(x) :]
            if (x in xi) != noop:
                break
        rows.append(
            {
                "rule_id": rule_id,
                "rule_x": x,
                "rule_y": y,
                "input": xi,
                "output": xi.replace(x, y, 1),
                "noop": noop,
                "domain": "random" if rule_id % 2 == 0 else "repeated",
                "k": 1 + rule_id % 2,
            }
        )
    return rows


def write_split(root: Path, split: str, rows: list[dict], parts: int = 2) -> None:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    step = max(1, -(-len(rows) // parts))
    for j, start in enumerate(range(0, len(rows), step)):
        pq.write_table(pa.Table.from_pylist(rows[start : start + step]), folder / f"part-{j:05d}.parquet")


def make_synthetic_dataset(root: Path, n_train: int = 256, n_test: int = 32, seed: int = 0) -> Path:
    """A tiny dataset: train / test_seen on 4 rules, test_unseen on 2 other rules."""
    seen = [("ab", "cd"), ("ba", "dc"), ("cc", "aa"), ("da", "bb")]
    unseen = [("ad", "ca"), ("bd", "ab")]
    write_split(root, "train", synthetic_rows(n_train, seen, seed))
    write_split(root, "test_seen", synthetic_rows(n_test, seen, seed + 1), parts=1)
    write_split(root, "test_unseen", synthetic_rows(n_test, unseen, seed + 2), parts=1)
    return root


def tiny_cfg(**overrides) -> TrainConfig:
    """A 2-layer, 32-wide GPT-2 on 2 CPU workers, ZeRO-2 fp32, MLflow off (tests switch it on where needed)."""
    base = {
        "model": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 32},
        "optim": {"lr": 0.003, "warmup": 0.0},
        "batch_size": 32,
        "epochs": 2,
        "eval": {"max_examples": 32, "batch_size": 64, "failures": 3},
        "mlflow": False,
    }
    for key, value in overrides.items():
        node = base
        parts = key.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return TrainConfig.model_validate(base)


TEXT_CORPUS = [
    "add one to two",
    "three",
    "what is two plus two",
    "four",
    "name a color",
    "red",
]


def tiny_hf_model(path: Path) -> Path:
    """A random-weight 2-layer Llama with a small word-level tokenizer (built offline), saved like an HF model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    words = sorted({w for line in TEXT_CORPUS for w in line.split()} | set("abcdefghijklmnopqrstuvwxyz=|→"))
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
