"""Batched greedy decoding with a KV cache for any HF causal LM (left-padded prompts, stop at EOS)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def greedy_decode(
    model: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: Sequence[int] | int,
    eos_id: int,
    pad_id: int,
    batch_size: int = 256,
) -> list[list[int]]:
    """Greedy continuations of ``prompts`` (token ids), each cut after EOS or its ``max_new_tokens``.

    Prompts are sorted by length and decoded ``batch_size`` at a time: one forward over the left-padded prompts,
    then one token per step reusing the KV cache; a batch stops when every row has emitted EOS or its budget.
    Returned ids exclude the prompt and include the EOS when one was produced.
    """
    import torch

    n = len(prompts)
    budgets = [int(max_new_tokens)] * n if isinstance(max_new_tokens, int) else [int(m) for m in max_new_tokens]
    order = sorted(range(n), key=lambda i: (len(prompts[i]), budgets[i]))
    out: list[list[int]] = [[] for _ in range(n)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                rows = _decode_batch(
                    model, [prompts[i] for i in idx], [budgets[i] for i in idx], eos_id, pad_id, device
                )
                for i, row in zip(idx, rows, strict=True):
                    out[i] = row
    finally:
        model.train(was_training)
    return out


def _decode_batch(
    model: Any, prompts: list[Sequence[int]], budgets: list[int], eos_id: int, pad_id: int, device: Any
) -> list[list[int]]:
    import torch

    b, width = len(prompts), max(len(p) for p in prompts)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    # Equal-length prompts (the usual case after sorting) need no mask: attention takes its causal fast path.
    padded = any(len(p) != width for p in prompts)
    positions = (mask.cumsum(-1) - 1).clamp_(min=0) if padded else None
    budget = torch.as_tensor(budgets, device=device)
    steps = int(budget.max())
    generated = torch.full((b, max(steps, 0)), pad_id, dtype=torch.long, device=device)
    done = budget <= 0
    cache = None
    step_ids, step_pos = input_ids, positions
    for t in range(steps):
        outputs = model(
            input_ids=step_ids,
            attention_mask=mask if padded else None,
            position_ids=step_pos,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = outputs.cache
        nxt = outputs.logits[:, -1, :].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        generated[:, t] = nxt
        done = done | (nxt == eos_id) | (budget <= t + 1)
        if bool(done.all()):
            steps = t + 1
            break
        step_ids = nxt[:, None]
        if padded:
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=device)], dim=1)
    rows = []
    for i, row in enumerate(generated[:, :steps].tolist()):
        row = row[: budgets[i]]
        if eos_id in row:
            row = row[: row.index(eos_id) + 1]
        rows.append(row)
    return rows
