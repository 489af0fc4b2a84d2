"""Training tokens/s: our Ray Train + DeepSpeed (ZeRO-2, 2 CPU workers) vs a plain single-process torch loop and vs
Ray Train with plain DDP (no DeepSpeed), on the same model, micro-batch, data and collation, in one run.

    .venv/bin/python bench/train_throughput.py                  # emergence-sized GPT-2 (3 layers, d 128), ~4 min
    .venv/bin/python bench/train_throughput.py --rows 2048 --epochs 1   # quicker
    .venv/bin/python bench/train_throughput.py --rows 4096 --repeats 3  # alternating rounds: medians and spread

Throughput is counted on real (non-pad) tokens over the training loop only (warm last epoch; start-up, eval and
checkpointing excluded): per wall second divided by the cores used (1 thread per worker), and per CPU-second the
training processes consumed (the fair per-core figure on a shared, oversubscribed machine). One more row runs the
plain loop in as many processes at once as there are workers: what the cores give per core when all of them train
(shared caches, memory bandwidth, clocks), the ceiling for the distributed rows on the same cores. With
``--repeats N`` the setups run in N alternating rounds (this VM's speed drifts within minutes) and the table shows
each setup's median, its range, and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onlyif.gc_tuning import raise_gc_thresholds  # noqa: E402
from onlyif.tasks.config import TaskConfig  # noqa: E402
from onlyif.train.config import TrainConfig  # noqa: E402
from tests._machine import cpu_counters  # noqa: E402

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


def _plain_torch_child(data: Path, batch_size: int, epochs: int, start, results) -> None:
    start.wait()  # all copies begin together
    results.put(plain_torch(data, batch_size, epochs))


def plain_torch_at_once(data: Path, batch_size: int, epochs: int, copies: int) -> tuple[float, float, float]:
    """The plain loop in ``copies`` processes at once (one per worker of the other rows): their summed tokens/s, the
    mean tokens per CPU-second, and no peak RSS (a forked child's ``ru_maxrss`` starts at its parent's)."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_plain_torch_child, args=(data, batch_size, epochs, start, results)) for _ in range(copies)
    ]
    for proc in procs:
        proc.start()
    start.set()
    got = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    return sum(g[0] for g in got), statistics.mean(g[1] for g in got), float("nan")


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
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds of all setups")
    parser.add_argument(
        "--poll", type=float, default=None, help="Ray Train's worker poll interval, s (default: the trainer's, 0.2)"
    )
    args = parser.parse_args()
    raise_gc_thresholds()  # the baseline in this process as onlyif runs its own (onlyif.gc_tuning)
    if args.poll is not None:
        os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(args.poll)
    else:
        from onlyif.train.api import HEALTH_CHECK_INTERVAL_S

        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(HEALTH_CHECK_INTERVAL_S))

    from onlyif.ray_utils import init_ray

    init_ray(num_cpus=args.workers + 2, progress=False)
    w, b, e = args.workers, args.batch_size, args.epochs
    setups = [
        ("plain torch, 1 process, 1 thread", 1, lambda: plain_torch(data, b, e)),
        *([(f"plain torch, {w} processes at once", w, lambda: plain_torch_at_once(data, b, e, w))] if w > 1 else []),
        (f"Ray Train + DeepSpeed ZeRO-2, {w}w", w, lambda: ours(data, b, e, w)),
        (f"Ray Train DDP, {w} workers", w, lambda: ray_ddp(data, b, e, w)),
    ]
    runs: list[list[tuple[float, float, float]]] = [[] for _ in setups]
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data", args.rows)
        for r in range(args.repeats):
            for i, (name, _, run) in enumerate(setups):
                before = cpu_counters()
                runs[i].append(run())
                after = cpu_counters()
                stolen = f" ({after[1] - before[1]:.1f} CPU-s stolen by the hypervisor)" if before and after else ""
                print(f"round {r + 1}/{args.repeats}: {name}: {runs[i][-1]}{stolen}", flush=True)
    print(
        f"model {MODEL}, micro-batch {b}, {args.rows} rows, epochs {e}, workers {w}, rounds {args.repeats}, "
        f"Ray Train poll {os.environ['RAY_TRAIN_HEALTH_CHECK_INTERVAL_S']} s"
    )
    print(f"{'setup':<36}{'per core':>10}{'range':>14}{'ratio':>7}{'tok/CPU-s':>11}{'ratio':>7}{'peak RSS MB':>13}")
    for (name, cores, _), got in zip(setups, runs, strict=True):
        per_core = [g[0] / cores for g in got]
        # the ratio of each round to the same round's single-process loop, then their median
        ratio = statistics.median(g[0] / cores / base[0] for g, base in zip(got, runs[0], strict=True))
        cpu_ratio = statistics.median(g[1] / base[1] for g, base in zip(got, runs[0], strict=True))
        spread = f"{min(per_core):.0f}-{max(per_core):.0f}"
        rss = max(g[2] for g in got)
        print(
            f"{name:<36}{statistics.median(per_core):>10.0f}{spread:>14}{ratio:>7.2f}"
            f"{statistics.median(g[1] for g in got):>11.0f}{cpu_ratio:>7.2f}{'—' if math.isnan(rss) else f'{rss:.0f}':>13}"
        )


if __name__ == "__main__":
    main()
