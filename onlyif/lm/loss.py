"""Held-out loss: mean negative log-likelihood of the reference response tokens given the prompt (teacher forcing).

Exact match is the paper's metric for the rewrite task; on real instruction data a small model rarely reproduces a
reference answer word for word, so mixture sweeps also compare this loss (lower is better).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

LOGIT_BUDGET = 1 << 26
"""Most logits (rows × positions × vocabulary) materialized at once; bounds memory for large vocabularies."""


def response_nll(
    model: Any,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    desc: str = "score",
) -> tuple[list[float], list[int]]:
    """Per example: the summed NLL (nats) of its response tokens and how many tokens were scored. On a terminal a
    progress bar (``desc``) counts the scored examples."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from onlyif.lm.batches import IGNORE_INDEX, collate

    seqs = [np.asarray([*p, *r], dtype=np.int64) for p, r in zip(prompts, responses, strict=True)]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    device = next(model.parameters()).device
    vocab = int(model.get_output_embeddings().weight.shape[0])
    nll, count = [0.0] * len(seqs), [0] * len(seqs)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(seqs), desc=desc, unit="ex", disable=not seqs or not sys.stderr.isatty(), leave=False)
    try:
        with torch.inference_mode():
            start = 0
            while start < len(order):
                width = len(seqs[order[min(start + batch_size, len(order)) - 1]])
                rows = max(1, min(batch_size, LOGIT_BUDGET // max(1, width * vocab)))
                idx = order[start : start + rows]
                batch = collate([seqs[i] for i in idx], [len(prompts[i]) for i in idx], pad_id)
                ids = torch.from_numpy(batch["input_ids"]).to(device)
                mask = torch.from_numpy(batch["attention_mask"]).to(device)
                labels = torch.from_numpy(batch["labels"]).to(device)
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                target = labels[:, 1:]
                token_nll = F.cross_entropy(
                    logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="none"
                )
                sums, scored = token_nll.sum(1).tolist(), (target != IGNORE_INDEX).sum(1).tolist()
                for j, i in enumerate(idx):
                    nll[i], count[i] = sums[j], int(scored[j])
                start += len(idx)
                bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return nll, count
