"""Made-up multi-source instruction data in every supported format, with planted problems and known counts."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

SYLLABLES = ["ka", "lo", "mi", "ne", "po", "ru", "si", "ta", "vu", "xe", "yo", "za", "be", "di", "fu", "go"]


def sentence(rng: random.Random, words: int = 18) -> str:
    return " ".join("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(words))


def humaneval_first() -> dict[str, str]:
    import gzip

    from onlyif.mixing.decontam import humaneval_path

    with gzip.open(humaneval_path(), "rt") as f:
        return json.loads(f.readline())


def write_sources(root: Path, seed: int = 0) -> dict[str, Any]:
    """Write five sources under ``root``; return their config entries and the exact expected counts."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    he = humaneval_first()

    # 1. alpaca jsonl (code): 30 good, 2 invalid JSON, 1 missing output, 2 exact dups (case/space variants),
    #    2 near dups, 1 contaminated (HumanEval/0 solution), 1 empty output (filtered)
    code = [
        {"instruction": sentence(rng), "input": sentence(rng, 6) if i % 3 == 0 else "", "output": sentence(rng, 30)}
        for i in range(30)
    ]
    lines = [json.dumps(r) for r in code]
    lines.insert(5, '{"instruction": "broken", "output": ')
    lines.insert(9, "not json at all")
    lines.append(json.dumps({"instruction": sentence(rng)}))
    lines.append(json.dumps({**code[1], "output": code[1]["output"].upper()}))
    lines.append(json.dumps({**code[2], "instruction": "  " + code[2]["instruction"].replace(" ", "   ")}))
    words = code[3]["output"].split()
    lines.append(json.dumps({**code[3], "output": " ".join(words[:-1] + ["zazaza"])}))
    words = code[4]["output"].split()
    lines.append(json.dumps({**code[4], "output": " ".join(words[:10] + ["kaka"] + words[11:])}))
    lines.append(
        json.dumps(
            {"instruction": "Complete this function.", "input": "", "output": he["prompt"] + he["canonical_solution"]}
        )
    )
    lines.append(json.dumps({"instruction": sentence(rng), "input": "", "output": "   "}))
    (root / "code.jsonl").write_text("\n".join(lines) + "\n")

    # 2. messages json array (general): 20 good, 1 unknown role, 1 without assistant turn
    general = [
        {
            "messages": [{"role": "system", "content": "Be brief."}] * (i % 2)
            + [{"role": "user", "content": sentence(rng)}, {"role": "assistant", "content": sentence(rng, 25)}]
        }
        for i in range(20)
    ]
    general.append({"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]})
    general.append({"messages": [{"role": "user", "content": sentence(rng)}]})
    (root / "general.json").write_text(json.dumps(general))

    # 3. sharegpt parquet (reasoning): 20 good, one of them multi-turn, 1 without a user turn
    import pyarrow as pa
    import pyarrow.parquet as pq

    convs = [
        [{"from": "human", "value": sentence(rng)}, {"from": "gpt", "value": sentence(rng, 25)}] for _ in range(20)
    ]
    convs[0] = convs[0] + [{"from": "human", "value": sentence(rng)}, {"from": "gpt", "value": sentence(rng)}]
    convs.insert(13, [{"from": "gpt", "value": "an answer without a question"}])  # row 14: quarantined
    pq.write_table(pa.table({"conversations": convs}), root / "reasoning.parquet")

    # 4. csv with a column mapping (qa): 15 good, 1 row with a wrong number of fields
    with open(root / "qa.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer"])
        for i in range(15):
            w.writerow([sentence(rng), sentence(rng, 20)])
            if i == 7:
                w.writerow(["only one field"])

    # 5. datasets.save_to_disk directory (chat): 10 good
    import datasets

    datasets.Dataset.from_list(
        [{"prompt": sentence(rng), "response": sentence(rng, 20)} for _ in range(10)]
    ).save_to_disk(str(root / "chat_disk"))

    sources = [
        {
            "name": "code",
            "domain": "code",
            "path": str(root / "code.jsonl"),
            "format": "alpaca",
            "max_error_rate": 0.2,
        },
        {
            "name": "general",
            "domain": "general",
            "path": str(root / "general.json"),
            "format": "messages",
            "max_error_rate": 0.2,
        },
        {"name": "reasoning", "domain": "reasoning", "path": str(root / "reasoning.parquet"), "format": "sharegpt"},
        {
            "name": "qa",
            "domain": "general",
            "path": str(root / "qa.csv"),
            "format": "prompt_response",
            "columns": {"prompt": "question", "response": "answer"},
            "max_error_rate": 0.2,
        },
        {"name": "chat", "domain": "chat", "path": str(root / "chat_disk"), "format": "prompt_response"},
    ]
    expected = {
        "code": {
            "read": 39,
            "quarantined": 3,
            "filtered": 1,
            "contaminated": 1,
            "exact_duplicates": 2,
            "near_duplicates": 2,
            "available": 30,
        },
        "general": {
            "read": 22,
            "quarantined": 2,
            "filtered": 0,
            "contaminated": 0,
            "exact_duplicates": 0,
            "near_duplicates": 0,
            "available": 20,
        },
        "reasoning": {
            "read": 21,
            "quarantined": 1,
            "filtered": 0,
            "contaminated": 0,
            "exact_duplicates": 0,
            "near_duplicates": 0,
            "available": 20,
        },
        "qa": {
            "read": 16,
            "quarantined": 1,
            "filtered": 0,
            "contaminated": 0,
            "exact_duplicates": 0,
            "near_duplicates": 0,
            "available": 15,
        },
        "chat": {
            "read": 10,
            "quarantined": 0,
            "filtered": 0,
            "contaminated": 0,
            "exact_duplicates": 0,
            "near_duplicates": 0,
            "available": 10,
        },
    }
    return {"sources": sources, "expected": expected, "humaneval_id": he["task_id"]}


def base_config(sources: list[dict[str, Any]], budget: int, **extra: Any) -> dict[str, Any]:
    """A small, fast mixture config: hashing embedder, few blocks, HumanEval decontamination."""
    cfg = {
        "seed": 0,
        "budget": budget,
        "sources": sources,
        "num_blocks": 1,
        "embed": {"model": "hashing", "dim": 256, "actors": 1},
        "diversity": {"enabled": False, "sample": 64, "clusters": 4},
        "decontam": {"eval_sets": [{"name": "humaneval"}], "ngram": 10},
    }
    cfg.update(extra)
    return cfg
