"""Exact-match evaluation speed: our batched greedy KV-cache decoding vs HF ``generate`` one example at a time.

    .venv/bin/python bench/decode.py                 # 3-layer d128 GPT-2, 1024 rewrite-task prompts, ~1 min
    .venv/bin/python bench/decode.py --examples 256 --reference 32

Both decode the same prompts with the same model and stopping rule (EOS or the answer length + 1); the outputs of
the reference subset must be identical. One torch thread for both.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--reference", type=int, default=64, help="examples decoded by HF generate one at a time")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from onlyif.lm.codec import CharCodec
    from onlyif.lm.decode import greedy_decode
    from onlyif.train.config import ModelConfig
    from onlyif.train.model import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=3, n_embd=128, n_head=4, n_positions=64)).eval()
    rng = random.Random(0)
    xs = ["".join(rng.choice("abcdefgh") for _ in range(3)) for _ in range(args.examples)]
    ys = ["".join(rng.choice("abcdefgh") for _ in range(3)) for _ in range(args.examples)]
    inputs = ["".join(rng.choice("abcdefgh") for _ in range(16)) for _ in range(args.examples)]
    rows = {
        "rule_x": xs,
        "rule_y": ys,
        "input": inputs,
        "output": [i.replace(x, y, 1) for x, y, i in zip(xs, ys, inputs, strict=True)],
    }
    codec = CharCodec()
    prompts, responses = codec.encode(rows)
    budgets = [len(r) for r in responses]

    t0 = time.perf_counter()
    ours = greedy_decode(model, prompts, budgets, eos_id=codec.eos_id, pad_id=codec.pad_id, batch_size=args.batch_size)
    ours_rate = len(prompts) / (time.perf_counter() - t0)

    n = min(args.reference, len(prompts))
    refs = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p, b in zip(prompts[:n], budgets[:n], strict=True):
            out = model.generate(
                torch.tensor([p]), max_new_tokens=b, do_sample=False, eos_token_id=codec.eos_id, pad_token_id=0
            )[0, len(p) :].tolist()
            refs.append(out[: out.index(codec.eos_id) + 1] if codec.eos_id in out else out)
    ref_rate = n / (time.perf_counter() - t0)
    same = sum(a == b for a, b in zip(ours[:n], refs, strict=True))
    print(f"model 3 layers d128, {len(prompts)} prompts of ~{len(prompts[0])} tokens, answers ~{budgets[0]} tokens")
    print(f"HF generate, one at a time : {ref_rate:8.1f} examples/s ({n} examples)")
    print(f"batched KV-cache greedy    : {ours_rate:8.1f} examples/s (batch {args.batch_size})")
    print(f"speed-up                   : {ours_rate / ref_rate:8.1f}x   identical outputs: {same}/{n}")


if __name__ == "__main__":
    main()
