"""A plain single-process pure-Python generator of the rewrite task: the baseline of ``bench/generate.py``
and an independent cross-check of the vectorized engine's semantics (not its random streams)."""

from __future__ import annotations

import random
import string


def reference_examples(
    n_rules: int,
    n_examples: int,
    alphabet_size: int,
    input_length: int,
    pattern_length: int,
    noop_share: float,
    seed: int = 0,
) -> list[dict]:
    """Random rules, then ``n_examples`` examples spread evenly over them, one dict per example."""
    rnd = random.Random(seed)
    letters = string.ascii_lowercase[:alphabet_size]
    rules: dict[tuple[str, str], int] = {}
    while len(rules) < n_rules:
        x = "".join(rnd.choices(letters, k=pattern_length))
        y = "".join(rnd.choices(letters, k=pattern_length))
        if x != y:
            rules.setdefault((x, y), len(rules))
    rule_list = list(rules)
    out = []
    for i in range(n_examples):
        x, y = rule_list[i % n_rules]
        noop = rnd.random() < noop_share
        while True:
            xi = "".join(rnd.choices(letters, k=input_length))
            if noop:
                if x not in xi:
                    break
            else:
                p = rnd.randrange(input_length - pattern_length + 1)
                xi = xi[:p] + x + xi[p + pattern_length :]
                break
        out.append(
            {
                "rule_id": i % n_rules,
                "rule_x": x,
                "rule_y": y,
                "input": xi,
                "output": xi.replace(x, y, 1),
                "noop": x not in xi,
                "domain": "random",
                "k": 0,
            }
        )
    return out
