"""What the Ray Train workers are given, prepared on the driver: the tokenized train split in equal per-worker
shards (:func:`train_shards`, :func:`shard_config`) and the decoded eval and early-stop probe items
(:func:`eval_items`, :func:`eval_split_dirs`).

A bad row met while tokenizing (too long for the model) is one :class:`~onlyif.errors.OnlyIfError` line naming the
split, also when Ray Data tokenized it (handed back as data, :mod:`onlyif.ray_errors`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onlyif.errors import OnlyIfError
from onlyif.lm.batches import join_examples
from onlyif.lm.codec import Codec
from onlyif.lm.datasets import read_rows, split_files
from onlyif.ray_errors import ERROR_COLUMN, error_record, raise_first_in
from onlyif.train.config import TrainConfig


class _Tokenize:
    """Rows → ``input_ids`` (prompt+response) and ``prompt_len`` (a Ray Data ``map_batches`` callable), plus the
    :data:`~onlyif.ray_errors.ERROR_COLUMN` that carries a bad row's error back as data (one row, no tokens)."""

    def __init__(self, codec: Codec, max_length: int, truncate: bool) -> None:
        self.codec, self.max_length, self.truncate = codec, max_length, truncate

    def __call__(self, batch: dict[str, Any]) -> Any:
        import pyarrow as pa

        rows = {k: list(v) for k, v in batch.items()}
        try:
            prompts, responses = self.codec.encode(rows)
            seqs, plens = join_examples(
                prompts,
                responses,
                self.max_length,
                self.truncate,
                lambda i: f"prompt {self.codec.prompt_texts(rows)[i]!r}",
            )
            ids, errors = [s.tolist() for s in seqs], pa.nulls(len(plens), pa.string())
        except OnlyIfError as exc:
            ids, plens, errors = [[]], [0], pa.array([json.dumps(error_record(exc))])
        return pa.table(
            {
                "input_ids": pa.array(ids, type=pa.list_(pa.int32())),
                "prompt_len": pa.array(plens, type=pa.int32()),
                ERROR_COLUMN: errors,
            }
        )


def model_max_length(cfg: TrainConfig) -> int:
    """Positions a training sequence may take: ``data.max_length``, else the model's."""
    if cfg.data.max_length is not None:
        return cfg.data.max_length
    if cfg.model.pretrained is None:
        return cfg.model.n_positions
    from transformers import AutoConfig

    from onlyif.lm.models import max_positions, resolve_pretrained

    return max_positions(AutoConfig.from_pretrained(resolve_pretrained(cfg.model.pretrained))) or 2048


IN_PROCESS_BYTES = 64 << 20
"""Train splits whose parquet files are smaller than this are tokenized in the driver process: starting a Ray Data
pipeline costs seconds, more than tokenizing ~10^5 rows takes (a sweep trial pays it every time)."""


def train_shards(
    cfg: TrainConfig, data_dir: Path, codec: Codec, kind: str, uri: str | None = None
) -> tuple[list[Any], int]:
    """Tokenized train split in file order, split into equal per-worker shards (deterministic): tokenized with Ray
    Data ``map_batches`` over the parquet files, or in this process when they are small (the same rows either way;
    then each shard's one block is put in the object store from here: on this process's node, no task elsewhere).
    ``uri``: where ``data_dir`` was downloaded from; Ray Data's read tasks, which may run on any node, read there."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray.data

    files = split_files(data_dir, "train")
    cols = ["rule_x", "rule_y", "input", "output"] if kind == "synthetic" else ["prompt", "response"]
    tokenize = _Tokenize(codec, model_max_length(cfg), truncate=kind == "text")
    bad_row = f"{data_dir / 'train'}: "  # a bad row's error, handed back as data (onlyif.ray_errors)
    if sum(f.stat().st_size for f in files) < IN_PROCESS_BYTES:
        table = pa.concat_tables([pq.read_table(f, columns=cols) for f in files])
        tokens = tokenize({c: table.column(c).to_numpy(zero_copy_only=False) for c in cols})
        raise_first_in(tokens[ERROR_COLUMN], bad_row)
        tokens = tokens.drop_columns([ERROR_COLUMN])
        per_worker = _per_worker(len(tokens), cfg, data_dir)
        # the rows `Dataset.split(equal=True)` gives each worker, cut here: no split task runs on another node, whose
        # loss mid-run loses a block that Ray must rebuild (a job hung so, most likely, 1 Dec 2026)
        shards = [tokens.slice(i * per_worker, per_worker) for i in range(cfg.scaling.num_workers)]
        # one block each, its metadata read here (from_arrow asks a Ray task for it: 1.4 s on a process's first
        # dataset, mostly waiting for a worker)
        return [ray.data.from_blocks([shard]) for shard in shards], per_worker
    paths = [f"{uri.rstrip('/')}/train/{f.name}" if uri else str(f) for f in files]
    ds = ray.data.read_parquet(paths, columns=cols, override_num_blocks=max(len(files), 2))
    ds.context.execution_options.preserve_order = True
    ds = ds.map_batches(tokenize, batch_format="numpy", batch_size=4096).materialize()
    for errors in ds.select_columns([ERROR_COLUMN]).iter_batches(batch_format="pyarrow", batch_size=None):
        raise_first_in(errors[ERROR_COLUMN], bad_row)
    ds = ds.drop_columns([ERROR_COLUMN]).materialize()
    per_worker = _per_worker(ds.count(), cfg, data_dir)
    return ds.split(cfg.scaling.num_workers, equal=True), per_worker


def _per_worker(rows: int, cfg: TrainConfig, data_dir: Path) -> int:
    if rows < cfg.scaling.num_workers:
        raise OnlyIfError(f"{data_dir / 'train'}: {rows} usable rows for {cfg.scaling.num_workers} workers")
    return rows // cfg.scaling.num_workers


def eval_split_dirs(splits: list[str], data_dir: Path | None, eval_data: list[Path]) -> dict[str, Path]:
    """The dataset folder holding each eval split that exists: an ``eval_data`` folder, else ``data_dir``.

    Splits missing everywhere are skipped (none present at all is an error); a split found in two ``eval_data``
    folders is refused rather than picked silently. ``data_dir=None`` looks in ``eval_data`` only.
    """
    for root in eval_data:
        if not root.is_dir():
            raise OnlyIfError(f"--eval-data {root}: dataset directory not found")
    out = {}
    for split in splits:
        holders = [root for root in eval_data if (root / split).is_dir()]
        if len(holders) > 1:
            raise OnlyIfError(f"--eval-data: split {split!r} is in both {holders[0]} and {holders[1]}")
        if holders:
            out[split] = holders[0]
        elif data_dir is not None and (data_dir / split).is_dir():
            out[split] = data_dir
    if splits and not out:
        roots = [*([data_dir] if data_dir is not None else []), *eval_data]
        where = ", ".join(str(p) for p in roots) or "nowhere: no eval_data given"
        head = f"--data {data_dir}" if data_dir is not None else "eval_data"
        raise OnlyIfError(f"{head}: none of the eval splits {splits} is present (looked in {where})")
    return out


def _items(codec: Codec, rows: dict[str, list]) -> list[dict]:
    from onlyif.eval.exact_match import eval_items

    return eval_items(codec, rows)


def probe_items(cfg: TrainConfig, codec: Codec, root: Path) -> tuple[str, list[dict]]:
    """The early-stop probe (:class:`~onlyif.train.config.EarlyStopConfig`): the metric it reports and the first
    ``sample`` training rows, the applied ones where the data marks no-op rows and ``rows`` is ``applied``."""
    es = cfg.early_stop
    if es is None:
        return "", []
    rows = read_rows(root, "train", es.sample, applied_only=es.rows == "applied")
    marked = es.rows == "applied" and "noop" in rows
    if marked and not rows["noop"]:  # every training row is a no-op: probe them all
        rows, marked = read_rows(root, "train", es.sample), False
    return ("train/exact_match_applied" if marked else "train/exact_match"), _items(codec, rows)


def eval_items(cfg: TrainConfig, roots: dict[str, Path], codec: Codec, max_length: int) -> dict[str, list[dict]]:
    out = {}
    for split, root in roots.items():
        items = _items(codec, read_rows(root, split, cfg.eval.max_examples))
        longest = max((len(it["prompt_ids"]) + it["budget"] for it in items), default=0)
        if longest > max_length:
            raise OnlyIfError(f"{root / split}: examples need {longest} positions, the model has {max_length}")
        out[split] = items
    return out


def shard_config(shards: list[Any]) -> Any:
    from ray.train import DataConfig

    class FixedShards(DataConfig):
        """Hands worker i the i-th precomputed equal split (the same rows on every restart and resume)."""

        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            if world_size != len(shards):
                raise ValueError(f"{len(shards)} data shards for {world_size} workers")
            return [{name: shards[i].iterator() for name in datasets} for i in range(world_size)]

    return FixedShards()
