"""The DeepSpeed config dict and the LR schedule, built from :class:`TrainConfig` (pure; no DeepSpeed import).

The schedule is a ``LambdaLR`` factor handed to ``deepspeed.initialize`` (DeepSpeed saves and restores its state
with the engine checkpoint): DeepSpeed's own ``WarmupLR`` family starts every run at ``warmup_min_lr`` even without
warmup, which wastes the first step of short runs.
"""

from __future__ import annotations

import math
from typing import Any

from onlyif.train.config import TrainConfig


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    w = cfg.optim.warmup
    return int(round(w * total_steps)) if w < 1 else int(w)


def build_ds_config(cfg: TrainConfig, total_steps: int) -> dict[str, Any]:
    """ZeRO stage, precision, AdamW, accumulation and clipping (the schedule is :func:`lr_factor`)."""
    o, ds = cfg.optim, cfg.deepspeed
    use_torch_adam = o.torch_adam and not ds.offload_optimizer  # ZeRO-Offload needs DeepSpeed's CPU Adam
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": o.grad_accum,
        "gradient_clipping": o.grad_clip,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": o.lr,
                "betas": [o.beta1, o.beta2],
                "eps": o.eps,
                "weight_decay": o.weight_decay,
                "torch_adam": use_torch_adam,
                "adam_w_mode": True,
            },
        },
        "zero_optimization": {"stage": ds.zero_stage},
        "bf16": {"enabled": ds.bf16},
        "fp16": {"enabled": ds.fp16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if ds.offload_optimizer:
        config["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.scaling.use_gpu}
    return config


def lr_factor(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Multiplier of ``optim.lr`` before optimizer step ``step`` (0-based): linear warmup, then linear/cosine decay
    to 0 at ``total_steps`` (or constant)."""
    warm = min(warmup_steps(cfg, total_steps), total_steps)
    if step < warm:
        return (step + 1) / warm
    if cfg.optim.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    if cfg.optim.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
