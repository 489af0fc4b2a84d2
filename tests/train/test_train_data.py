"""Pure parts of training: loss masks on token ids, collation, bucketing, dataset checks, DeepSpeed config, LR
schedule, config validation, the model factory and the HF-tokenizer codec (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from onlyif.config import validate_config
from onlyif.errors import ConfigError, OnlyIfError
from onlyif.lm.batches import IGNORE_INDEX, bucket, collate, join_examples
from onlyif.lm.codec import CharCodec, HFCodec, load_codec
from onlyif.lm.datasets import dataset_kind, read_rows
from onlyif.lm.models import check_model_dir
from onlyif.tasks.tokenizer import CharTokenizer
from onlyif.train.config import TrainConfig
from onlyif.train.ds_config import build_ds_config, lr_factor
from onlyif.train.loop import micro_batches_per_epoch, total_optimizer_steps
from onlyif.train.model import build_model
from tests._train_fixtures import make_synthetic_dataset, synthetic_rows, tiny_cfg, tiny_hf_model, write_split


def test_loss_mask_covers_exactly_the_prompt_tokens():
    codec = CharCodec()
    rows = {
        "rule_x": ["ab", "c"],
        "rule_y": ["cd", "aa"],
        "input": ["xxab".replace("x", "b"), "abcd"],
        "output": ["bbcd", "abaad"],
    }
    prompts, responses = codec.encode(rows)
    tok = CharTokenizer()
    assert prompts[0] == tok.encode_prompt("ab", "cd", "bbab") and responses[0] == [*tok.encode("bbcd"), 2]
    seqs, plens = join_examples(prompts, responses, max_length=64, truncate=False)
    batch = collate(seqs, plens, pad_id=0)
    for i in range(2):
        n_p, n = len(prompts[i]), len(prompts[i]) + len(responses[i])
        labels, ids = batch["labels"][i], batch["input_ids"][i]
        assert (labels[:n_p] == IGNORE_INDEX).all()  # every prompt token masked ...
        assert labels[n_p:n].tolist() == responses[i]  # ... every response token (and its EOS) kept, unshifted
        assert ids[:n].tolist() == prompts[i] + responses[i]
        assert (labels[n:] == IGNORE_INDEX).all() and (ids[n:] == 0).all() and batch["attention_mask"][i].sum() == n


def test_join_refuses_or_truncates_long_rows():
    with pytest.raises(OnlyIfError, match="row 1: prompt\\+response is 6 tokens, longer than the model's 5"):
        join_examples([[1, 2], [1, 2, 3]], [[4], [4, 5, 6]], max_length=5, truncate=False)
    seqs, plens = join_examples([[1, 2], [1, 2, 3, 4, 5]], [[4, 5, 6, 7], [6]], max_length=5, truncate=True)
    assert [s.tolist() for s in seqs] == [[1, 2, 4, 5, 6]] and plens.tolist() == [2]  # prompt-only row dropped


def test_bucketing_groups_similar_lengths():
    lengths = np.array([9, 1, 8, 2, 7, 3])
    groups = bucket(lengths, batch_size=2)
    assert [sorted(lengths[g].tolist()) for g in groups] == [[1, 2], [3, 7], [8, 9]]
    assert sorted(np.concatenate(groups).tolist()) == list(range(6))


def test_dataset_checks(tmp_path):
    data = make_synthetic_dataset(tmp_path / "d", n_train=8, n_test=4)
    assert dataset_kind(data, "train") == "synthetic"
    assert len(read_rows(data, "train", limit=5)["output"]) == 5
    with pytest.raises(OnlyIfError, match="dataset directory not found"):
        dataset_kind(tmp_path / "nope", "train")
    with pytest.raises(
        OnlyIfError, match="split 'test_domain' not found \\(splits present: test_seen, test_unseen, train\\)"
    ):
        dataset_kind(data, "test_domain")
    write_split(tmp_path / "bad", "train", [{"question": "q", "answer": "a"}], parts=1)
    with pytest.raises(OnlyIfError, match="part-00000.parquet: wrong columns \\['answer', 'question'\\]"):
        dataset_kind(tmp_path / "bad", "train")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(OnlyIfError, match="no parquet files"):
        dataset_kind(tmp_path / "empty", "train")
    pq.write_table(pa.table({"prompt": ["p"], "response": ["r"]}), tmp_path / "x.parquet")
    (tmp_path / "text" / "train").mkdir(parents=True)
    (tmp_path / "x.parquet").rename(tmp_path / "text" / "train" / "a.parquet")
    assert dataset_kind(tmp_path / "text", "train") == "text"
    with pytest.raises(OnlyIfError, match="reads only the synthetic rewrite task"):
        CharCodec().encode({"prompt": ["p"], "response": ["r"]})


def test_early_stop_probe_skips_no_op_rows_that_copying_solves(tmp_path):
    from onlyif.train.inputs import probe_items

    data = make_synthetic_dataset(tmp_path / "d", n_train=40, n_test=4)  # every 5th row a no-op
    codec = CharCodec()
    metric, items = probe_items(tiny_cfg(early_stop={"sample": 12}), codec, data)
    rows = read_rows(data, "train")
    prompts = codec.prompt_texts(rows)
    first_applied = [prompts[i] for i, noop in enumerate(rows["noop"]) if not noop][:12]
    assert metric == "train/exact_match_applied" and [it["noop"] for it in items] == [False] * 12
    assert [it["prompt"] for it in items] == first_applied
    metric, items = probe_items(tiny_cfg(early_stop={"sample": 12, "rows": "all"}), codec, data)
    assert metric == "train/exact_match" and [it["noop"] for it in items].count(True) == 3  # rows 0, 5, 10
    write_split(tmp_path / "n", "train", synthetic_rows(10, [("ab", "cd")], 0, noop_every=1), parts=1)
    metric, items = probe_items(tiny_cfg(early_stop={"sample": 4}), codec, tmp_path / "n")
    assert metric == "train/exact_match" and len(items) == 4  # no applied row to probe: all rows are probed
    assert probe_items(tiny_cfg(), codec, data) == ("", [])  # no early stop, no probe


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_config(stage):
    cfg = tiny_cfg(deepspeed__zero_stage=stage, deepspeed__bf16=True, optim__grad_accum=2, optim__grad_clip=0.5)
    ds = build_ds_config(cfg, total_steps=10)
    assert ds["zero_optimization"] == {"stage": stage}
    assert ds["bf16"] == {"enabled": True} and ds["fp16"] == {"enabled": False}
    assert ds["gradient_accumulation_steps"] == 2 and ds["gradient_clipping"] == 0.5
    assert ds["optimizer"]["type"] == "AdamW" and ds["optimizer"]["params"]["torch_adam"] is True
    off = build_ds_config(tiny_cfg(deepspeed__offload_optimizer=True), total_steps=10)
    assert off["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert off["optimizer"]["params"]["torch_adam"] is False  # ZeRO-Offload runs DeepSpeed's CPU Adam


# A worker's DeepSpeed start, in a fresh interpreter: ZeRO-2 over gloo, world size 1.
_DEEPSPEED_START = """
import os, sys
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="{port}", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
import torch
from onlyif.train.config import TrainConfig
from onlyif.train.ds_config import build_ds_config
from onlyif.train.loop import _init_deepspeed, param_groups
cfg = TrainConfig.model_validate({{"deepspeed": {{"zero_stage": 2}}}})
deepspeed = _init_deepspeed(cfg)
print("mlflow imported:", "mlflow" in sys.modules)
model = torch.nn.Linear(4, 4)
engine, *_ = deepspeed.initialize(model=model, model_parameters=param_groups(model, 0.0), config=build_ds_config(cfg, 10))
engine.backward(engine(torch.ones(2, 4)).sum())
engine.step()
print("optimizer:", type(engine.optimizer).__name__)
print("torch compiler imported:", "torch._inductor.compile_fx" in sys.modules)
print("dynamo left off:", "TORCHDYNAMO_DISABLE" in os.environ)
import mlflow
print("mlflow later:", mlflow.__name__)
"""


def test_deepspeed_starts_without_the_imports_a_worker_never_uses():
    """No MLflow import (DeepSpeed's autotuner asks for it) and no torch compiler (DeepSpeed's Muon optimizer, which
    ``initialize`` and ZeRO's gradient reduction import, compiles its kernels at import); ZeRO-2 still takes our AdamW
    and steps, and MLflow imports afterwards."""
    import subprocess
    import sys

    from tests._ports import free_port

    code = _DEEPSPEED_START.format(port=free_port())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if ": " in line]
    assert lines == [
        "mlflow imported: False",
        "optimizer: DeepSpeedZeroOptimizer",
        "torch compiler imported: False",
        "dynamo left off: False",
        "mlflow later: mlflow",
    ], out.stdout


def test_lr_schedules():
    lin = tiny_cfg(optim__warmup=2.0, optim__schedule="linear")
    assert [round(lr_factor(s, lin, 6), 3) for s in range(7)] == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    cos = tiny_cfg(optim__warmup=0.0, optim__schedule="cosine")
    assert lr_factor(0, cos, 4) == 1.0 and lr_factor(2, cos, 4) == pytest.approx(0.5) and lr_factor(4, cos, 4) == 0.0
    assert lr_factor(3, tiny_cfg(optim__warmup=0.5, optim__schedule="constant"), 4) == 1.0


def test_step_counts():
    cfg = tiny_cfg(batch_size=10, optim__grad_accum=3, epochs=2)
    assert micro_batches_per_epoch(95, cfg) == 9  # 10 micro-batches, the partial accumulation dropped
    assert total_optimizer_steps(95, cfg) == 6
    assert total_optimizer_steps(95, tiny_cfg(batch_size=10, optim__grad_accum=3, epochs=2, max_steps=4)) == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"deepspeed": {"fp16": True}}, "deepspeed.fp16: fp16 needs GPUs"),
        ({"model": {"n_embd": 30, "n_head": 4}}, "model.n_embd: must be divisible by n_head=4"),
        ({"deepspeed": {"zero_stage": 4}}, "deepspeed.zero_stage: Input should be less than or equal to 3"),
        ({"deepspeed": {"offload_optimizer": True, "zero_stage": 0}}, "offload_optimizer: needs zero_stage >= 1"),
        ({"optim": {"schedule": "step"}}, "optim.schedule"),
        ({"checkpoint": {"metric": "x", "keep": None}}, "checkpoint.metric: ranking needs checkpoint.keep"),
        (
            {"checkpoint": {"metric": "test_unseen/exact_match"}, "eval": {"every_epochs": 2}},
            "checkpoint.metric: an eval metric ranks checkpoints only with eval.every_epochs: 1",
        ),
    ],
)
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(TrainConfig, data)


def test_model_factory_and_codecs(tmp_path):
    model = build_model(tiny_cfg().model)
    assert model.config.vocab_size == 32 and model.config.n_layer == 2
    with pytest.raises(OnlyIfError, match="no config.json"):
        check_model_dir(tmp_path)
    with pytest.raises(OnlyIfError, match="directory not found"):
        check_model_dir(tmp_path / "nope")
    hf_dir = tiny_hf_model(tmp_path / "llama")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text((hf_dir / "config.json").read_text())
    with pytest.raises(OnlyIfError, match=r"config-only: no weights \(none of model.safetensors, "):
        check_model_dir(tmp_path / "config-only")
    codec = load_codec(hf_dir)
    assert isinstance(codec, HFCodec)
    prompts, responses = codec.encode({"prompt": ["add one to two"], "response": [" three "]})
    assert responses[0][-1] == codec.eos_id and codec.decode(responses[0]) == "three"
    assert codec.expected({"prompt": ["p"], "response": [" three "]}) == ["three"]
    assert codec.decode(codec.tokenizer("two three", add_special_tokens=False)["input_ids"]) == "two three"
