"""Batched decoding with a KV cache for any HF causal LM: greedy or sampled (temperature, top-p, a seed per row),
left-padded prompts sorted by length, each row stopping at EOS, its budget or a caller's stop check."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

StopCheck = Callable[[int, list[int]], bool]
"""``stop_check(row_index, generated_ids) -> bool``: True ends that row (its ids so far are kept)."""

_MASK64 = (1 << 64) - 1


def greedy_decode(
    model: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: Sequence[int] | int,
    eos_id: int,
    pad_id: int,
    batch_size: int = 256,
    desc: str = "exact match",
) -> list[list[int]]:
    """Greedy continuations of ``prompts`` (token ids), each cut after EOS or its ``max_new_tokens``: exact
    match's entry point into :func:`decode`."""
    return decode(model, prompts, max_new_tokens, eos_id, pad_id, batch_size=batch_size, desc=desc)


def decode(
    model: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: Sequence[int] | int,
    eos_id: int,
    pad_id: int,
    batch_size: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | Sequence[int] = 0,
    stop_check: StopCheck | None = None,
    desc: str = "decode",
) -> list[list[int]]:
    """Continuations of ``prompts`` (token ids): greedy at ``temperature`` 0, else sampled from the softmax at that
    temperature restricted to the ``top_p`` nucleus.

    Prompts are grouped by :func:`decode_batches` (sorted by length, ``batch_size`` at a time): one forward over
    the left-padded prompts, then one token per step reusing the KV cache. A row ends at EOS, at its budget or when
    ``stop_check`` (called with the row's index in ``prompts`` after each of its tokens) says so; once half the
    rows still decoded have ended they leave the batch and its KV cache, and the batch stops when every row has
    ended. Returned ids exclude the prompt and include the EOS when one was produced.

    Sampling draws row ``i``'s uniforms from its own generator seeded with ``seed[i]`` (an int ``seed`` gives
    ``row_seed(seed, i)``), so a row's tokens depend on its seed and logits only, not on the rest of its batch.

    On a terminal a progress bar (``desc``) counts the decoded rows, batch by batch.
    """
    import torch
    from tqdm import tqdm

    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"decode: temperature must be >= 0 and top_p in (0, 1] (got {temperature}, {top_p})")
    n = len(prompts)
    budgets = [int(max_new_tokens)] * n if isinstance(max_new_tokens, int) else [int(m) for m in max_new_tokens]
    seeds = [row_seed(seed, i) for i in range(n)] if isinstance(seed, int) else [int(s) for s in seed]
    if len(budgets) != n or len(seeds) != n:
        raise ValueError(f"decode: {n} prompts but {len(budgets)} budgets and {len(seeds)} seeds")
    out: list[list[int]] = [[] for _ in range(n)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    bar = tqdm(total=n, desc=desc, unit="row", disable=n == 0 or not sys.stderr.isatty(), leave=False)
    try:
        with torch.inference_mode():
            for idx in decode_batches(prompts, budgets, batch_size):
                pick = None
                if temperature > 0:
                    pick = _Sampler(temperature, top_p, [seeds[i] for i in idx], [budgets[i] for i in idx], device)
                check = None
                if stop_check is not None:
                    check = _batch_check(stop_check, idx)
                rows = _decode_batch(
                    model, [prompts[i] for i in idx], [budgets[i] for i in idx], eos_id, pad_id, device, pick, check
                )
                for i, row in zip(idx, rows, strict=True):
                    out[i] = row
                bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return out


def decode_batches(prompts: Sequence[Sequence[int]], budgets: Sequence[int], batch_size: int) -> list[list[int]]:
    """The rows :func:`decode` decodes together: indices sorted by (prompt length, budget), ``batch_size`` a batch.
    Decoding each group on its own gives the same tokens as decoding all at once."""
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), budgets[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def row_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed mixed from ``seed`` and integer keys (splitmix64 steps): well-separated streams per row."""
    x = _splitmix64(seed & _MASK64)
    for key in keys:
        x = _splitmix64(x ^ (key & _MASK64))
    return x >> 1


def stop_on_strings(decode_text: Callable[[list[int]], str], stops: Sequence[Sequence[str]]) -> StopCheck:
    """A stop check ending row ``i`` once its generated text contains one of ``stops[i]``.

    Each call decodes only a tail window of the row's ids, long enough to hold the longest stop string (one byte
    a token at least) — the string can only have appeared with the newest token, and every token is checked."""
    windows = [max((len(s.encode("utf-8")) for s in row), default=0) + 2 for row in stops]

    def check(i: int, ids: list[int]) -> bool:
        if not stops[i]:
            return False
        tail = decode_text(ids[-windows[i] :])
        return any(s in tail for s in stops[i])

    return check


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _batch_check(stop_check: StopCheck, idx: list[int]) -> StopCheck:
    return lambda j, ids: stop_check(idx[j], ids)


class _Sampler:
    """Picks the next token of each row by inverse-CDF sampling with uniforms fixed per (row seed, step)."""

    def __init__(self, temperature: float, top_p: float, seeds: list[int], budgets: list[int], device: Any) -> None:
        import torch

        self.temperature, self.top_p = temperature, top_p
        u = torch.zeros((len(seeds), max(max(budgets), 0)), dtype=torch.float32)
        for i, (s, b) in enumerate(zip(seeds, budgets, strict=True)):
            if b > 0:
                u[i, :b] = torch.rand(b, generator=torch.Generator().manual_seed(s), dtype=torch.float32)
        self.uniforms = u.to(device)

    def __call__(self, logits: Any, t: int, rows: Any) -> Any:
        import torch

        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        order = None
        if self.top_p < 1:
            probs, order = probs.sort(dim=-1, descending=True)
            probs = probs * ((probs.cumsum(-1) - probs) < self.top_p)  # the nucleus: always its first token
        cum = probs.cumsum(-1)
        target = self.uniforms[rows, t : t + 1] * cum[:, -1:]
        choice = torch.searchsorted(cum, target, right=True).clamp_(max=cum.shape[-1] - 1)
        return (choice if order is None else order.gather(-1, choice))[:, 0]


def _decode_batch(
    model: Any,
    prompts: list[Sequence[int]],
    budgets: list[int],
    eos_id: int,
    pad_id: int,
    device: Any,
    pick: Callable[[Any, int, Any], Any] | None = None,
    stop_check: StopCheck | None = None,
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
    alive = torch.arange(b, device=device)  # the batch's rows still decoded (the others left the KV cache)
    stopped: dict[int, int] = {}  # row -> generated length when stop_check ended it
    history: list[list[int]] = [[] for _ in range(b)]
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
        logits = outputs.logits[:, -1, :]
        picked = logits.argmax(-1) if pick is None else pick(logits, t, alive)
        nxt = torch.where(done, torch.full_like(picked, pad_id), picked)
        generated[alive, t] = nxt
        done = done | (nxt == eos_id) | (budget <= t + 1)
        if stop_check is not None:
            ends = _check_rows(stop_check, history, alive.tolist(), nxt.tolist(), done.tolist())
            for i in ends:
                stopped[i] = t + 1
            if ends:
                done = done | torch.as_tensor([i in stopped for i in alive.tolist()], device=device)
        n_done = int(done.sum())
        if n_done == len(done):
            steps = t + 1
            break
        # An ended row is fed its own pick, never read: fed padding, HF models warn of an unmasked pad token.
        step_ids = picked[:, None]
        if 2 * n_done >= len(done):  # half the rows finished: drop them rather than decode padding for them
            keep = (~done).nonzero().squeeze(1)
            cache.reorder_cache(keep)
            alive, done, budget, step_ids = alive[keep], done[keep], budget[keep], step_ids[keep]
            if padded:
                mask, step_pos = mask[keep], step_pos[keep]
        if padded:
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=device)], dim=1)
    rows = []
    for i, row in enumerate(generated[:, :steps].tolist()):
        row = row[: stopped.get(i, budgets[i])]
        if eos_id in row:
            row = row[: row.index(eos_id) + 1]
        rows.append(row)
    return rows


def _check_rows(
    stop_check: StopCheck, history: list[list[int]], rows: list[int], ids: list[int], done: list[bool]
) -> list[int]:
    """Append each still-running row's new token to its history; the rows ``stop_check`` ends now."""
    ends = []
    for i, tok, finished in zip(rows, ids, done, strict=True):
        if not finished:
            history[i].append(tok)
            if stop_check(i, history[i]):
                ends.append(i)
    return ends
