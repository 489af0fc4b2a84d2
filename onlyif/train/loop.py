"""The Ray Train worker loop: a DeepSpeed engine fed by a Ray Data shard, evaluated and checkpointed every epoch.

The loop reads only its ``config`` (built by :func:`onlyif.train.api.run_training`):

* ``cfg`` — the :class:`TrainConfig` as a dict;
* ``codec`` — the tokenizer codec; ``eval_items`` — {split: items} decoded after evaluated epochs;
* ``probe_items`` — training rows decoded after every epoch for ``early_stop`` (empty without it), reported as
  ``probe_metric``;
* ``rows_per_worker`` and ``total_steps`` — fixed by the driver so every worker runs the same number of steps.

Each epoch ends with ``ray.train.report(metrics, checkpoint=...)``: every worker saves its DeepSpeed engine
checkpoint (ZeRO shards included) into a local folder that Ray persists into one checkpoint directory; rank 0 adds
``train_state.json``, the evaluation failures (``eval/<split>.jsonl``) and, after the last epoch, ``hf_model/``
(a ``save_pretrained`` export). A restarted worker group or a resumed run loads the latest checkpoint.

The epoch loop, its evaluation, early stopping and checkpointing share one worker's state (engine, shard iterator,
codec, step counters), hence one module of small functions rather than several.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import resource
import time
from pathlib import Path
from typing import Any

from onlyif.io import staging_dir
from onlyif.lm.batches import bucket, collate
from onlyif.ray_utils import environ_set
from onlyif.train.config import TrainConfig
from onlyif.train.ds_config import build_ds_config, lr_factor

ENGINE_TAG = "engine"
HF_EXPORT = "hf_model"
STATE_FILE = "train_state.json"


def micro_batches_per_epoch(rows_per_worker: int, cfg: TrainConfig) -> int:
    """Micro-batches each worker runs per epoch: whole optimizer steps only (a partial accumulation is dropped)."""
    return (math.ceil(rows_per_worker / cfg.batch_size) // cfg.optim.grad_accum) * cfg.optim.grad_accum


def total_optimizer_steps(rows_per_worker: int, cfg: TrainConfig) -> int:
    steps = micro_batches_per_epoch(rows_per_worker, cfg) // cfg.optim.grad_accum * cfg.epochs
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only (not biases, norms)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pin_accelerator(use_gpu: bool) -> None:
    """CPU workers must use DeepSpeed's CPU accelerator. Ray leaves a node's GPUs visible to workers that hold none,
    and DeepSpeed, left to detect, would pick CUDA and move the model to the GPU while batches stay on the CPU.
    (Before the first ``import deepspeed`` of the process: the choice is made once, at import.)"""
    if not use_gpu:
        os.environ["DS_ACCELERATOR"] = "cpu"


def _import_deepspeed() -> Any:
    """``import deepspeed`` without the cost of two modules a worker never uses, paid by every worker of every run
    (2-core CPU): its autotuner's ``import mlflow`` (1.6 of its 2 s; workers neither autotune nor call MLflow, the
    controller's callback logs), hidden while DeepSpeed imports (a later ``import mlflow`` works as usual); and its
    Muon optimizer, which ``deepspeed.initialize`` and every ZeRO-1/2 gradient reduction import and which
    ``torch.compile``-decorates its kernels at import (1.1-1.3 CPU-s of torch's compiler imports), imported here with
    TorchDynamo off: its kernels stay plain functions (our runs use AdamW, never Muon)."""
    import importlib
    import sys

    hide = "mlflow" not in sys.modules
    if hide:
        sys.modules["mlflow"] = None  # type: ignore[assignment]  # import mlflow -> ImportError
    try:
        import deepspeed
    finally:
        if hide:
            del sys.modules["mlflow"]
    # TORCHDYNAMO_DISABLE is read by each torch.compile call; ImportError: a DeepSpeed without Muon
    with environ_set("TORCHDYNAMO_DISABLE", "1"), contextlib.suppress(ImportError):
        importlib.import_module("deepspeed.runtime.zero.muon.muon_optimizer")
    return deepspeed


def _init_deepspeed(cfg: TrainConfig) -> Any:
    import importlib

    pin_accelerator(cfg.scaling.use_gpu)
    deepspeed = _import_deepspeed()

    if not cfg.scaling.use_gpu:
        # (``import deepspeed.comm.torch as m`` would bind the torch package: deepspeed.comm re-exports it)
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: (
            None
        )  # skip the ~30 s shm JIT build; gloo does the CPU collectives
    deepspeed.init_distributed(dist_backend="nccl" if cfg.scaling.use_gpu else "gloo")
    return deepspeed


class _Collate:
    """Ray Data collate: one prefetched chunk of rows → length-bucketed, padded micro-batches (numpy)."""

    def __init__(self, batch_size: int, pad_id: int) -> None:
        self.batch_size, self.pad_id = batch_size, pad_id

    def __call__(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        import torch

        seqs, plens = batch["input_ids"], batch["prompt_len"]
        lengths = [len(s) for s in seqs]
        out = []
        for idx in bucket(lengths, self.batch_size):
            arrays = collate([seqs[i] for i in idx], [plens[i] for i in idx], self.pad_id)
            out.append({k: torch.from_numpy(v) for k, v in arrays.items()})
        return out


def _full_state_dict(engine: Any, zero_stage: int) -> dict[str, Any]:
    """Full fp32 weights on CPU on every rank (ZeRO-3 gathers its partitions; a collective on all ranks)."""
    import deepspeed
    import torch

    def grab() -> dict[str, Any]:
        return {k: v.detach().to(torch.float32, copy=True).cpu() for k, v in engine.module.state_dict().items()}

    if zero_stage == 3:
        with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None):
            return grab()
    return grab()


def _eval_model(engine: Any, cfg: TrainConfig, state: dict[str, Any] | None) -> Any:
    """The model to decode with: the engine's module, or (ZeRO-3) an unpartitioned copy built from ``state``."""
    if state is None:
        return engine.module
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(engine.module.config)
    model.load_state_dict(state, strict=False)
    return model.to(next(engine.module.parameters()).device)


def _records(model: Any, codec: Any, items: list[dict], batch_size: int) -> tuple[list[int], list[dict]]:
    """Greedy records of this rank's stride of ``items`` (indices and records)."""
    import ray.train

    from onlyif.eval.exact_match import generate_records

    ctx = ray.train.get_context()
    mine = list(range(ctx.get_world_rank(), len(items), ctx.get_world_size()))
    return mine, generate_records(model, codec, [items[i] for i in mine], batch_size)


def _probe(engine: Any, cfg: TrainConfig, codec: Any, items: list[dict], state: dict | None) -> float:
    """Exact match on the probe sample of training rows (for early stopping), over all ranks."""
    import torch.distributed as dist

    _, records = _records(_eval_model(engine, cfg, state), codec, items, cfg.eval.batch_size)
    ok, n = _allreduce([sum(r["ok"] for r in records), len(records)], dist)
    return ok / max(n, 1)


def _evaluate(engine: Any, cfg: TrainConfig, codec: Any, eval_items: dict, state: dict | None) -> tuple[dict, dict]:
    """Exact match and response loss on every eval split, over rank-strided slices gathered on all ranks."""
    import ray.train
    import torch.distributed as dist

    from onlyif.eval.exact_match import flat_metrics, items_nll, summarize

    world = ray.train.get_context().get_world_size()
    model = _eval_model(engine, cfg, state)
    metrics, summaries = {}, {}
    for split, items in eval_items.items():
        mine, records = _records(model, codec, items, cfg.eval.batch_size)
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, list(zip(mine, records, strict=True)))
        merged = [rec for _, rec in sorted(pair for part in gathered for pair in part)]
        nll, tokens = _allreduce(
            [sum(x) for x in items_nll(model, codec, [items[i] for i in mine], cfg.eval.batch_size)], dist
        )
        summaries[split] = summarize(merged, cfg.eval.failures) | {"loss": nll / tokens if tokens else None}
        metrics.update(flat_metrics(split, summaries[split]))
    return metrics, summaries


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train ``train_loop_per_worker``."""
    import ray.train
    import torch
    import torch.distributed as dist

    from onlyif.train.model import build_model

    cfg = TrainConfig.model_validate(config["cfg"], strict=False)
    codec = config["codec"]
    torch.set_num_threads(cfg.scaling.torch_threads)
    deepspeed = _init_deepspeed(cfg)
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    total_steps = config["total_steps"]
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=param_groups(model, cfg.optim.weight_decay),
        config=build_ds_config(cfg, total_steps),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, functools.partial(lr_factor, cfg=cfg, total_steps=total_steps)
        ),
    )

    start_epoch, history_tokens = 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            _, client = engine.load_checkpoint(ckpt_dir, tag=ENGINE_TAG)
        start_epoch, history_tokens = client["epoch"], client["tokens"]

    shard = ray.train.get_dataset_shard("train")
    micro_per_epoch = micro_batches_per_epoch(config["rows_per_worker"], cfg)
    chunk = cfg.batch_size * cfg.data.bucket_batches
    collate_fn = _Collate(cfg.batch_size, codec.pad_id)
    last_epoch = cfg.epochs - 1
    learned = 0  # epochs in a row with the probe of training rows at the early-stop mark
    for epoch in range(start_epoch, cfg.epochs):
        if engine.global_steps >= total_steps:
            break
        engine.train()
        rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 101 + rank)
        # Losses add up on the training device: no host sync per step (on a GPU the host runs ahead of the kernels).
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        tokens, micro, t0, cpu0 = 0, 0, time.perf_counter(), time.process_time()
        log_loss, log_micro, log_tokens, log_t0 = torch.zeros((), dtype=torch.float64, device=device), 0, 0, t0
        for chunk_batches in shard.iter_torch_batches(
            batch_size=chunk,
            collate_fn=collate_fn,
            local_shuffle_buffer_size=min(cfg.data.shuffle_buffer, config["rows_per_worker"]),
            local_shuffle_seed=cfg.seed * 7919 + epoch * 31 + rank,
            # One chunk ahead (a chunk is bucket_batches steps). With 2, Ray Data 2.60 formats in two threads and
            # the seeded local shuffle's order changes from run to run (the same seed trained differently: 0.930
            # vs 0.945 loss after one epoch); determinism costs ~5 % of an epoch here.
            prefetch_batches=1,
        ):
            order = torch.randperm(len(chunk_batches), generator=rng).tolist()
            for j in order:
                if micro >= micro_per_epoch or engine.global_steps >= total_steps:
                    break
                n_tok = int(chunk_batches[j]["attention_mask"].sum())  # counted on the host copy
                batch = {k: v.to(device, non_blocking=True) for k, v in chunk_batches[j].items()}
                loss = engine(**batch).loss
                engine.backward(loss)
                engine.step()
                micro += 1
                tokens += n_tok
                loss_sum += loss.detach().double()
                log_loss += loss.detach().double()
                log_micro += 1
                log_tokens += n_tok
                if (
                    cfg.log_every_steps
                    and micro % cfg.optim.grad_accum == 0
                    and engine.global_steps % cfg.log_every_steps == 0
                ):
                    window_loss = log_loss.item()  # waits for the window's last kernels
                    now = time.perf_counter()
                    stats = _allreduce([window_loss, log_micro, log_tokens], dist)
                    ray.train.report(
                        {
                            "kind": "step",
                            "epoch": epoch + 1,
                            "step": engine.global_steps,
                            "train_loss": stats[0] / max(stats[1], 1),
                            "tokens_per_s": stats[2] / max(now - log_t0, 1e-9),
                            "lr": engine.get_lr()[0],
                        }
                    )
                    log_loss.zero_()
                    log_micro, log_tokens, log_t0 = 0, 0, time.perf_counter()
        epoch_loss = loss_sum.item()  # waits for the epoch's last kernels
        train_seconds = time.perf_counter() - t0
        cpu_total = time.process_time() - cpu0
        loss_total, micro_total, tokens_total, cpu_total = _allreduce([epoch_loss, micro, tokens, cpu_total], dist)
        (peak_rss,) = _allreduce([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024], dist, op="max")
        history_tokens += int(tokens_total)
        final = epoch == last_epoch or engine.global_steps >= total_steps
        probing = bool(config.get("probe_items"))
        # ZeRO-3 decodes from gathered full weights (a collective, so decided alike on every rank)
        state = _full_state_dict(engine, 3) if cfg.deepspeed.zero_stage == 3 and (probing or final) else None
        probe: dict[str, Any] = {}
        if probing:
            key = config["probe_metric"]
            probe[key] = _probe(engine, cfg, codec, config["probe_items"], state)
            learned = learned + 1 if probe[key] >= cfg.early_stop.train_exact_match else 0
            if learned >= cfg.early_stop.patience and not final:
                final, probe["early_stopped"] = True, 1
        metrics: dict[str, Any] = {
            "kind": "epoch",
            "epoch": epoch + 1,
            "step": engine.global_steps,
            "train_loss": loss_total / max(micro_total, 1),
            "tokens_per_s": tokens_total / max(train_seconds, 1e-9),
            "tokens_per_cpu_s": tokens_total / max(cpu_total, 1e-9),
            "tokens": history_tokens,
            "lr": engine.get_lr()[0],
            "epoch_seconds": train_seconds,
            "peak_rss_mb": peak_rss,
            **probe,
        }
        evaluate = config["eval_items"] and (
            final or (cfg.eval.every_epochs and (epoch + 1) % cfg.eval.every_epochs == 0)
        )
        if state is None and cfg.deepspeed.zero_stage == 3 and evaluate:
            state = _full_state_dict(engine, 3)
        summaries: dict[str, Any] = {}
        if evaluate:
            t_eval = time.perf_counter()
            eval_metrics, summaries = _evaluate(engine, cfg, codec, config["eval_items"], state)
            metrics.update(eval_metrics)
            metrics["eval_seconds"] = time.perf_counter() - t_eval
        with staging_dir("onlyif-ckpt") as tmp:
            engine.save_checkpoint(
                str(tmp),
                tag=ENGINE_TAG,
                client_state={"epoch": epoch + 1, "tokens": history_tokens},
                save_latest=False,
            )
            if rank == 0:
                (tmp / STATE_FILE).write_text(json.dumps(metrics))
                if summaries:
                    _write_eval_files(tmp, summaries)
                if final:
                    _export_hf(tmp, engine, codec, state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        if final:
            break


def _allreduce(values: list[float], dist: Any, op: str = "sum") -> list[float]:
    """Sum (or max) of a few host numbers over all workers (on the GPU under NCCL, which has no CPU tensors: Ray
    Train starts GPU workers with an NCCL-only process group)."""
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t.tolist()


def _write_eval_files(root: Path, summaries: dict[str, Any]) -> None:
    """``eval/<split>.json`` (summary) and ``eval/<split>_failures.jsonl`` (prompt, expected, got) per split."""
    (root / "eval").mkdir()
    for split, summary in summaries.items():
        lines = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in summary["failures"])
        (root / "eval" / f"{split}_failures.jsonl").write_text(lines)
        rest = {k: v for k, v in summary.items() if k != "failures"}
        (root / "eval" / f"{split}.json").write_text(json.dumps(rest, indent=2))


def _export_hf(root: Path, engine: Any, codec: Any, state: dict[str, Any] | None) -> None:
    """``hf_model/``: fp32 ``save_pretrained`` weights plus the tokenizer (rank 0; ZeRO-3 passes gathered ``state``)."""
    import torch

    from onlyif.lm.codec import save_codec

    weights = state if state is not None else _full_state_dict(engine, zero_stage=0)
    engine.module.config.dtype = torch.float32
    engine.module.save_pretrained(root / HF_EXPORT, state_dict=weights)
    save_codec(codec, root / HF_EXPORT)
