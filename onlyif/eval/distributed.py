"""Exact match spread over a Ray cluster: Ray Data ``map_batches`` on a pool of decoding actors.

Each actor loads the model once and decodes whole batches greedily (KV cache); the driver only gathers the small
per-example records and summarizes them exactly as the in-process :func:`evaluate_exact_match` does.
"""

from __future__ import annotations

import os
from typing import Any

from onlyif.errors import OnlyIfError
from onlyif.eval.exact_match import (
    eval_items,
    generate_records,
    items_nll,
    summarize,
)
from onlyif.lm.datasets import META_COLUMNS, SYNTHETIC_COLUMNS, TEXT_COLUMNS, dataset_kind, split_files
from onlyif.lm.models import load_eval_model, resolve_model_dir


class ExactMatchActor:
    """A Ray Data callable class: rows in, one record per row out (``ok``, ``got``, ``expected``, breakdown keys,
    the response NLL and its token count)."""

    def __init__(self, model_dir: str, batch_size: int, threads: int, device: str = "cpu") -> None:
        import torch

        torch.set_num_threads(threads)
        self.model, self.codec = load_eval_model(model_dir, device)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = {k: v.tolist() for k, v in batch.items()}
        items = eval_items(self.codec, rows)
        records = generate_records(self.model, self.codec, items, self.batch_size)
        out = {key: [r[key] for r in records] for key in ("ok", "got", "expected", "prompt", "noop", "domain", "k")}
        out["nll"], out["tokens"] = items_nll(self.model, self.codec, items, self.batch_size)
        return out


def evaluate_distributed(
    model: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str,
    *,
    max_examples: int | None = None,
    batch_size: int = 256,
    actors: int = 2,
    cpus_per_actor: float = 1.0,
    failures: int = 20,
    device: str = "auto",
) -> dict[str, Any]:
    """Exact match of a model directory on ``DATA/<split>`` with ``actors`` decoding actors (local or cluster Ray).

    ``device``: ``cuda`` decodes on the cluster's GPUs (the actors share them: each holds ``min(1, GPUs / actors)``),
    ``auto`` does so when the cluster has any, ``cpu`` never."""
    import ray.data

    from onlyif.ray_utils import init_ray

    model_dir = resolve_model_dir(model)
    kind = dataset_kind(data_dir, split)
    wanted = SYNTHETIC_COLUMNS if kind == "synthetic" else TEXT_COLUMNS
    files = split_files(data_dir, split)
    import pyarrow.parquet as pq

    present = set(pq.read_schema(files[0]).names)
    init_ray()
    from onlyif.ray_utils import cluster_cpus

    # Leave one CPU for reading the parquet files, or the actors would hold every slot and the read never runs.
    cpus_per_actor = min(cpus_per_actor, max(0.1, (cluster_cpus() - 1) / actors))
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if device == "cuda" and gpus == 0:
        raise OnlyIfError("--device cuda: the Ray cluster has no GPU (use auto or cpu)")
    gpus_per_actor = min(1.0, gpus / actors) if device != "cpu" and gpus > 0 else 0.0
    ds = ray.data.read_parquet(
        [str(f) for f in files],
        columns=[c for c in wanted + META_COLUMNS if c in present],
        override_num_blocks=max(actors * 2, len(files)),
    )
    ds.context.execution_options.preserve_order = True
    if max_examples is not None:  # the limit ends in one block: split it again, so every actor of the pool gets rows
        ds = ds.limit(max_examples).repartition(actors)
    ds = ds.map_batches(
        ExactMatchActor,
        fn_constructor_args=(
            str(model_dir),
            batch_size,
            max(1, int(cpus_per_actor)),
            "cuda" if gpus_per_actor else "cpu",
        ),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
    )
    records = ds.take_all()
    tokens = sum(int(r.pop("tokens")) for r in records)
    nll = sum(float(r.pop("nll")) for r in records)
    for r in records:  # Arrow hands back numpy scalars; the summary compares with Python values
        for key in ("ok", "noop"):
            if r.get(key) is not None:
                r[key] = bool(r[key])
    return {"split": split, **summarize(records, failures), "loss": nll / tokens if tokens else None}
