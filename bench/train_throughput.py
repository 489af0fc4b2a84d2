"""Training tokens/s: our Ray Train + DeepSpeed (ZeRO-2, 2 CPU workers) vs a plain single-process torch loop and vs
Ray Train with plain DDP (no DeepSpeed), on the same model, micro-batch, data and collation, in one run.

    .venv/bin/python bench/train_throughput.py                  # emergence-sized GPT-2 (3 layers, d 128), ~4 min
    .venv/bin/python bench/train_throughput.py --rows 2048 --epochs 1   # quicker

Throughput is counted on real (non-pad) tokens over the training loop only (warm last epoch; start-up, eval and
checkpointing excluded): per wall second divided by the cores used (1 thread per worker), and per CPU-second the
training processes consumed (the fair per-core figure on a shared, oversubscribed machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onlyif.tasks.config import TaskConfig  # noqa: E402
from onlyif.train.config import TrainConfig  # noqa: E402

MODEL = {"n_layer": 3, "n_embd": 128, "n_head": 4, "n_positions": 64}


def make_data(root: Path, rows: int) -> Path:
    from onlyif.data.generate import generate_dataset

    task = TaskConfig(
        alphabet_size=8,
        input_length=16,
        pattern_length=3,
        instructions=1000,
        budget=rows,
        test_seen=64,
        test_unseen=64,
    )
    generate_dataset(task, root, progress=False)
    return root


def batches(data: Path, batch_size: int, rows_limit: int | None = None) -> list[dict]:
    """The same tokenization, length bucketing and padding the trainer uses, precomputed."""
    import torch

    from onlyif.lm.batches import bucket, collate, join_examples
    from onlyif.lm.codec import CharCodec
    from onlyif.lm.datasets import read_rows

    codec = CharCodec()
    seqs, plens = join_examples(*codec.encode(read_rows(data, "train", rows_limit)), max_length=64, truncate=False)
    out = []
    for idx in bucket([len(s) for s in seqs], batch_size):
        arrays = collate([seqs[i] for i in idx], [plens[i] for i in idx], codec.pad_id)
        out.append({k: torch.from_numpy(v) for k, v in arrays.items()})
    return out


def step(model, opt, batch: dict) -> int:
    """One AdamW step with clipping, as both baselines take it; returns the batch's tokens."""
    import torch

    loss = model(**batch).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return int(batch["attention_mask"].sum())


def plain_torch(data: Path, batch_size: int, epochs: int) -> tuple[float, float, float]:
    """Single process, 1 thread, AdamW: tokens/s of the last epoch and peak RSS (MB)."""
    import torch

    from onlyif.train.config import ModelConfig
    from onlyif.train.model import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ModelConfig(**MODEL))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data_batches = batches(data, batch_size)
    rate = cpu_rate = 0.0
    for _ in range(epochs):
        tokens, t0, c0 = 0, time.perf_counter(), time.process_time()
        for b in data_batches:
            tokens += step(model, opt, b)
        rate, cpu_rate = tokens / (time.perf_counter() - t0), tokens / (time.process_time() - c0)
    return rate, cpu_rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ddp_loop(config: dict) -> None:
    """Ray Train worker without DeepSpeed: DDP (gloo) on the same Ray Data shard, collation and model."""
    import ray.train
    import ray.train.torch
    import torch

    from onlyif.train.config import ModelConfig
    from onlyif.train.loop import _Collate
    from onlyif.train.model import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ray.train.torch.prepare_model(build_model(ModelConfig(**MODEL)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    shard = ray.train.get_dataset_shard("train")
    collate_fn = _Collate(config["batch_size"], 0)
    for epoch in range(config["epochs"]):
        tokens, t0, c0 = 0, time.perf_counter(), time.process_time()
        for chunk in shard.iter_torch_batches(batch_size=config["batch_size"] * 16, collate_fn=collate_fn):
            for b in chunk:
                tokens += step(model, opt, b)
        t = torch.tensor([tokens, time.perf_counter() - t0, time.process_time() - c0], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        n = torch.distributed.get_world_size()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        metrics = {
            "epoch": epoch + 1,
            "tokens_per_s": t[0].item() / (t[1].item() / n),
            "tokens_per_cpu_s": t[0].item() / t[2].item(),
            "peak_rss_mb": rss,
        }
        with tempfile.TemporaryDirectory() as tmp:  # Result.metrics needs a checkpoint reported with them
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def ray_ddp(data: Path, batch_size: int, epochs: int, workers: int) -> tuple[float, float, float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from onlyif.lm.codec import CharCodec
    from onlyif.train.inputs import shard_config, train_shards

    cfg = TrainConfig.model_validate({"model": MODEL, "batch_size": batch_size, "scaling": {"num_workers": workers}})
    shards, _ = train_shards(cfg, data, CharCodec(), "synthetic")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = TorchTrainer(
            ddp_loop,
            train_loop_config={"batch_size": batch_size, "epochs": epochs},
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(storage_path=tmp, name="ddp"),
            datasets={"train": shards[0]},
            dataset_config=shard_config(shards),
        )
        result = trainer.fit()
    m = result.metrics
    return m["tokens_per_s"], m["tokens_per_cpu_s"], m["peak_rss_mb"]


def ours(data: Path, batch_size: int, epochs: int, workers: int) -> tuple[float, float, float]:
    from onlyif.train.api import run_training

    cfg = TrainConfig.model_validate(
        {
            "model": MODEL,
            "batch_size": batch_size,
            "epochs": epochs,
            "scaling": {"num_workers": workers},
            "deepspeed": {"zero_stage": 2},
            "eval": {"splits": []},
            "mlflow": False,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = run_training(cfg, data, Path(tmp) / "run")
    last = out.history[-1]
    return last["tokens_per_s"], last["tokens_per_cpu_s"], last["peak_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from onlyif.ray_utils import init_ray

    init_ray(num_cpus=args.workers + 2, progress=False)
    w = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data", args.rows)
        rows = [("plain torch, 1 process, 1 thread", 1, *plain_torch(data, args.batch_size, args.epochs))]
        print(rows[-1], flush=True)
        rows.append((f"Ray Train + DeepSpeed ZeRO-2, {w}w", w, *ours(data, args.batch_size, args.epochs, w)))
        print(rows[-1], flush=True)
        rows.append((f"Ray Train DDP, {w} workers", w, *ray_ddp(data, args.batch_size, args.epochs, w)))
    base, base_cpu = rows[0][2], rows[0][3]
    print(f"model {MODEL}, micro-batch {args.batch_size}, {args.rows} rows, epochs {args.epochs}, workers {w}")
    print(f"{'setup':<34}{'tokens/s':>10}{'per core':>10}{'ratio':>7}{'tok/CPU-s':>11}{'ratio':>7}{'peak RSS MB':>13}")
    for name, cores, rate, cpu_rate, rss in rows:
        print(
            f"{name:<34}{rate:>10.0f}{rate / cores:>10.0f}{rate / cores / base:>7.2f}"
            f"{cpu_rate:>11.0f}{cpu_rate / base_cpu:>7.2f}{rss:>13.0f}"
        )


if __name__ == "__main__":
    main()
