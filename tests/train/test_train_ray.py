"""Ray Train + DeepSpeed training on a real local Ray cluster (2 CPU workers): loss goes down, exports load,
ZeRO stages and bf16 run, resume reproduces an uninterrupted run, bad scaling fails fast.

Each training run pays Ray Train's start-up and DeepSpeed's import, so the runs carry several checks each: ZeRO-3 is
the stage of the explicit resume (its partitioned checkpoints and gathered export), ZeRO-1 + bf16 that of the
pretrained model trained through the CLI, and the worker-failure run reads its dataset from ``s3://`` (a local moto
server)."""

from __future__ import annotations

import json
import os
import signal
import sys

import psutil
import pytest
import torch
from ray import cloudpickle
from ray.train import UserCallback

from onlyif.errors import ConfigError, OnlyIfError
from onlyif.train.api import run_training
from tests._s3_fixtures import BUCKET, moto_s3
from tests._train_fixtures import make_synthetic_dataset, tiny_cfg

pytestmark = pytest.mark.usefixtures("ray_cluster")
# Callbacks defined here run in the Ray Train controller, which cannot import this test module: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), n_train=256)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted 2-epoch ZeRO-2 run (shared by the tests that compare against it)."""
    return run_training(tiny_cfg(mlflow=True), data, tmp_path_factory.mktemp("ref") / "run")


def _weights(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).state_dict()


def _max_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_zero2_two_workers_reduces_loss_and_exports(reference):
    hist = reference.history
    assert [h["epoch"] for h in hist] == [1, 2]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert reference.metrics["step"] == 8  # 256 rows / 2 workers / batch 32 = 4 steps per epoch
    for key in ("test_seen/exact_match", "test_unseen/exact_match_applied", "test_unseen/exact_match_noop"):
        assert 0.0 <= reference.metrics[key] <= 1.0
    model = _weights(reference.model_dir)
    assert model["transformer.wte.weight"].shape == (32, 32)
    lines = [json.loads(x) for x in (reference.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["kind"] == "epoch"] == [1, 2]
    failures = (reference.run_dir / "eval" / "test_unseen_failures.jsonl").read_text().splitlines()
    assert all({"prompt", "expected", "got"} <= json.loads(f).keys() for f in failures)


def test_mlflow_run_has_params_and_metrics(reference):
    from mlflow import MlflowClient

    info = json.loads((reference.run_dir / "mlflow_run.json").read_text())
    run = MlflowClient(info["tracking_uri"]).get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["deepspeed.zero_stage"] == "2"
    assert run.data.metrics["train_loss"] == pytest.approx(reference.metrics["train_loss"])
    assert "test_unseen/exact_match" in run.data.metrics


class _AbortAfterEpoch(UserCallback):
    """Stops the run (an error in the controller) once epoch 1 is reported and checkpointed."""

    def after_report(self, run_context, metrics, checkpoint):
        if metrics[0].get("kind") == "epoch" and metrics[0]["epoch"] == 1:
            raise RuntimeError("stop after epoch 1")


def test_explicit_resume_matches_uninterrupted_run(data, reference, tmp_path):
    # ZeRO-3: each worker checkpoints and restores its own partitions; the export gathers the full weights
    zero3 = tiny_cfg(deepspeed__zero_stage=3)
    run_dir = tmp_path / "run"
    with pytest.raises(Exception, match="stop after epoch 1"):
        run_training(zero3, data, run_dir, callbacks=[_AbortAfterEpoch()])
    assert not (run_dir / "model").exists()
    resumed = run_training(zero3, data, run_dir, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.metrics["step"] == reference.metrics["step"]
    assert "test_unseen/exact_match" in resumed.metrics
    weights = _weights(resumed.model_dir)
    assert weights["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # gathered, not a rank's partition
    # Same seed, same shards, same seeded shuffles, gloo sums in a fixed order: the uninterrupted ZeRO-2 run's
    # weights up to float noise.
    assert _max_diff(weights, _weights(reference.model_dir)) < 1e-6


class _KillWorkerAfterEpoch(UserCallback):
    """Simulates a node failure: SIGKILLs one Ray Train worker process once epoch 1 is checkpointed."""

    def __init__(self):
        self.done = False

    def after_report(self, run_context, metrics, checkpoint):
        if not self.done and metrics[0].get("kind") == "epoch" and metrics[0]["epoch"] == 1:
            self.done = True
            # this cluster's workers only: children of the raylet that started this (controller) process
            raylet = psutil.Process().parent()
            workers = [p for p in raylet.children() if "RayTrainWorker" in " ".join(p.cmdline())]
            os.kill(workers[0].pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def s3_data(data, tmp_path_factory):
    """The module's dataset published to ``s3://`` on a local moto server (with a hand-made manifest)."""
    import shutil

    from onlyif.storage import publish

    with moto_s3(tmp_path_factory.mktemp("node_cache")):
        folder = shutil.copytree(data, tmp_path_factory.mktemp("s3_data") / "data")
        (folder / "manifest.json").write_text(json.dumps({"note": "hand-made"}))
        uri = f"s3://{BUCKET}/train-data"
        publish(folder, uri, overwrite=False)
        yield uri


def test_worker_failure_resumes_from_latest_checkpoint(s3_data, reference, tmp_path):
    # the dataset is read from s3:// (a node-local copy of it): the same rows train to the same weights
    out = run_training(tiny_cfg(), s3_data, tmp_path / "run", callbacks=[_KillWorkerAfterEpoch()])
    assert [h["epoch"] for h in out.history] == [1, 2]
    assert out.metrics["step"] == reference.metrics["step"]
    assert _max_diff(_weights(out.model_dir), _weights(reference.model_dir)) < 1e-6
    assert json.loads((out.run_dir / "run.json").read_text())["data"] == s3_data  # what a resume reads again


def _raise_user_error(config):
    from onlyif.errors import ConfigError

    with open(config["attempts"], "a") as f:
        f.write("attempt\n")
    raise ConfigError("train: row 3: a user error a worker finds")


def test_a_workers_user_error_ends_the_run_without_retries(tmp_path):
    """FailureConfig(max_failures=2) would restart the worker group twice; StopOnUserError ends the run at the first
    user error, and the error reaches the driver as itself (one line, its class and exit code)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from onlyif.ray_errors import user_error
    from onlyif.train.user_errors import StopOnUserError

    attempts = tmp_path / "attempts"
    trainer = TorchTrainer(
        _raise_user_error,
        train_loop_config={"attempts": str(attempts)},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(
            storage_path=str(tmp_path), failure_config=FailureConfig(max_failures=2), callbacks=[StopOnUserError()]
        ),
    )
    with pytest.raises(Exception) as info:
        trainer.fit()
    found = user_error(info.value)
    assert isinstance(found, ConfigError) and str(found) == "train: row 3: a user error a worker finds", info.value
    assert attempts.read_text().splitlines() == ["attempt"] * 2  # one try of the 2 workers, no restart


def test_pretrained_model_on_text_data_via_cli_with_zero1_bf16(tmp_path, capsys):
    from onlyif.cli import main
    from tests._train_fixtures import TEXT_CORPUS, tiny_hf_model, write_split

    pairs = [{"prompt": p, "response": r} for p, r in zip(TEXT_CORPUS[::2], TEXT_CORPUS[1::2], strict=True)]
    write_split(tmp_path / "data", "train", pairs * 22, parts=2)
    write_split(tmp_path / "heldout", "test_seen", pairs, parts=1)  # eval split in its own folder (--eval-data)
    model_dir = tiny_hf_model(tmp_path / "llama")
    args = [
        "train",
        "--data",
        str(tmp_path / "data"),
        "--eval-data",
        str(tmp_path / "heldout"),
        "--out",
        str(tmp_path / "run"),
        "--set",
        f"model.pretrained={model_dir}",
    ]
    for kv in ("batch_size=8", "epochs=1", "mlflow=false", "eval.splits=[test_seen]", "scaling.num_workers=2"):
        args += ["--set", kv]
    # ZeRO-2 fp32 is the reference run, ZeRO-3 the explicit resume; ZeRO-0 trains in the sweep smoke test on the
    # local cluster (tests/test_cluster.py) and in `onlyif reproduce`
    for kv in ("deepspeed.zero_stage=1", "deepspeed.bf16=true", "log_every_steps=2"):
        args += ["--set", kv]
    assert main(args) == 0
    # progress on the console (not a terminal here: plain lines) and the JSON result last on stdout
    out, err = capsys.readouterr()
    assert json.loads(out[out.index("{\n") :])["run_dir"] == str(tmp_path / "run")  # after DeepSpeed's line, if any
    shown = [line for line in err.splitlines() if line.startswith("train: ")]
    assert shown[0].startswith("train: epoch 1/1  step 2/5  loss "), err
    assert shown[-1].startswith("train: epoch 1/1  step 5/5  loss ") and "  test_seen/exact_match " in shown[-1], err
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")).__name__ == "LlamaForCausalLM"
    assert AutoTokenizer.from_pretrained(tmp_path / "run" / "model").eos_token == "</s>"
    weights = _weights(tmp_path / "run" / "model")
    assert all(torch.isfinite(w).all() for w in weights.values())
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(x["kind"], x["step"]) for x in lines] == [("step", 2), ("step", 4), ("epoch", 5)]  # 33 rows / 8 -> 5
    assert lines[0]["tokens_per_s"] > 0 and lines[0]["lr"] > 0
    assert "test_seen/exact_match" in lines[-1] and lines[-1]["train_loss"] > 0
    assert 0.0 < lines[-1]["test_seen/loss"] < 20.0
    run_info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_info["eval_data"] == [str((tmp_path / "heldout").resolve())]


def test_bad_inputs_fail_fast_with_one_line(data, tmp_path):
    with pytest.raises(
        ConfigError, match="scaling.num_workers: 8 workers × 1 CPU need 8 CPU but the Ray cluster has 4"
    ):
        run_training(tiny_cfg(scaling__num_workers=8), data, tmp_path / "a")
    with pytest.raises(OnlyIfError, match="dataset directory not found"):
        run_training(tiny_cfg(), tmp_path / "missing", tmp_path / "b")
    (tmp_path / "no-config").mkdir()
    with pytest.raises(OnlyIfError, match="no config.json"):
        run_training(tiny_cfg(model__pretrained=str(tmp_path / "no-config")), data, tmp_path / "c")
    (tmp_path / "no-config" / "config.json").write_text('{"model_type": "gpt2"}')  # a config and nothing else
    with pytest.raises(OnlyIfError, match="no-config: no weights"):  # in the driver: no worker starts, no retry
        run_training(tiny_cfg(model__pretrained=str(tmp_path / "no-config")), data, tmp_path / "c")
    with pytest.raises(OnlyIfError, match="--eval-data .*absent: dataset directory not found"):
        run_training(tiny_cfg(), data, tmp_path / "f", eval_data=[tmp_path / "absent"])
    with pytest.raises(OnlyIfError, match="split 'test_seen' is in both"):
        run_training(tiny_cfg(), data, tmp_path / "g", eval_data=[data, data])
    with pytest.raises(OnlyIfError, match="--resume .*: no earlier run found"):
        run_training(tiny_cfg(), data, tmp_path / "d", resume=True)
    long_rows = make_synthetic_dataset(tmp_path / "long", n_train=8, n_test=2)
    with pytest.raises(
        OnlyIfError, match="long/train: prompt '.*': prompt\\+response is \\d+ tokens, longer than the model's 16"
    ):
        run_training(tiny_cfg(model__n_positions=16), long_rows, tmp_path / "e")
    assert not any((tmp_path / x).exists() for x in "abcdefg")  # nothing written for a run that cannot start


def test_llama_arch_learns_and_stops_early_once_training_rows_are_reproduced(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", n_train=2048)
    cfg = tiny_cfg(
        model__arch="llama",
        model__n_embd=64,
        batch_size=64,
        epochs=15,
        eval__every_epochs=0,
        early_stop={"train_exact_match": 0.5, "sample": 64, "patience": 2},
    )
    out = run_training(cfg, data, tmp_path / "run")
    probe = [h["train/exact_match_applied"] for h in out.history]  # no-op rows left out
    stop = len(out.history)
    assert stop < 15 and out.metrics["early_stopped"] == 1, probe  # learned before the schedule's end
    assert probe[-1] >= 0.5 and probe[-2] >= 0.5 and (stop == 2 or probe[-3] < 0.5), probe  # the first streak of 2
    assert "test_unseen/exact_match" in out.metrics  # the last epoch is evaluated and exported like any final one
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out.model_dir).config.model_type == "llama"


def test_small_and_large_train_splits_tokenize_to_the_same_shards(data, monkeypatch):
    import onlyif.train.inputs as inputs
    from onlyif.lm.codec import CharCodec

    def shard_rows(cfg):
        shards, per_worker = inputs.train_shards(cfg, data, CharCodec(), "synthetic")
        return per_worker, [[(list(r["input_ids"]), int(r["prompt_len"])) for r in s.take_all()] for s in shards]

    in_process = shard_rows(tiny_cfg())
    monkeypatch.setattr(inputs, "IN_PROCESS_BYTES", 0)  # every split counts as large: Ray Data map_batches
    assert shard_rows(tiny_cfg()) == in_process
    assert in_process[0] == 128 and len(in_process[1]) == 2  # 256 rows over 2 workers, in file order
    monkeypatch.setattr(inputs, "IN_PROCESS_BYTES", 1 << 40)  # 3 workers: 85 rows each, the last row left out
    three = shard_rows(tiny_cfg(scaling__num_workers=3))
    assert three[0] == 85 and [len(s) for s in three[1]] == [85] * 3
    monkeypatch.setattr(inputs, "IN_PROCESS_BYTES", 0)
    assert shard_rows(tiny_cfg(scaling__num_workers=3)) == three  # as Ray Data's `split(3, equal=True)` cuts them
    assert sum(three[1], []) == sum(in_process[1], [])[:255]
    # a row too long for the model, met in a Ray Data task: handed back as data, raised here as the same one line
    with pytest.raises(OnlyIfError, match=r"/train: prompt '.*': prompt\+response is \d+ tokens, longer than") as exc:
        inputs.train_shards(tiny_cfg(model__n_positions=16), data, CharCodec(), "synthetic")
    assert str(exc.value).startswith(f"{data / 'train'}: prompt") and "\n" not in str(exc.value)
