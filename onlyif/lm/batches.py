"""Causal-LM batches: prompt+response joining, loss labels (prompt masked), right-padded collation, bucketing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from onlyif.errors import OnlyIfError

IGNORE_INDEX = -100


def join_examples(
    prompts: list[list[int]],
    responses: list[list[int]],
    max_length: int,
    truncate: bool,
    describe: Callable[[int], str] = lambda i: f"row {i}",
) -> tuple[list[np.ndarray], np.ndarray]:
    """Concatenate prompt+response ids; return sequences and prompt lengths.

    Sequences longer than ``max_length`` are cut at ``max_length`` when ``truncate`` (rows left with no response
    token are dropped), else refused with an error naming the row (``describe(i)``).
    """
    seqs, plens = [], []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids = p + r
        if len(ids) > max_length:
            if not truncate:
                raise OnlyIfError(
                    f"{describe(i)}: prompt+response is {len(ids)} tokens, longer than the model's {max_length} "
                    f"(raise model.n_positions)"
                )
            if len(p) >= max_length:
                continue
            ids = ids[:max_length]
        seqs.append(np.asarray(ids, dtype=np.int32))
        plens.append(len(p))
    return seqs, np.asarray(plens, dtype=np.int32)


def loss_labels(seq: np.ndarray, prompt_len: int) -> np.ndarray:
    """Labels for causal-LM loss: the sequence with every prompt position masked (``-100``)."""
    labels = seq.astype(np.int64, copy=True)
    labels[:prompt_len] = IGNORE_INDEX
    return labels


def collate(seqs: Sequence[np.ndarray], prompt_lens: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad to the longest sequence: ``input_ids``, ``attention_mask``, ``labels`` (prompt and pad masked)."""
    n, width = len(seqs), max(len(s) for s in seqs)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    labels = np.full((n, width), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, (s, p) in enumerate(zip(seqs, prompt_lens, strict=True)):
        input_ids[i, : len(s)] = s
        labels[i, : len(s)] = loss_labels(s, int(p))
        mask[i, : len(s)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def bucket(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices of micro-batches of ``batch_size`` rows after a stable sort by length (less padding per batch)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
