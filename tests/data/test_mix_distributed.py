"""The distributed mixture steps give exactly the single-process results (real local Ray, several layouts)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from onlyif.data.blocks import LOC_SHIFT
from onlyif.data.mix_dedup import exact_dedup, near_dedup
from onlyif.mixing.dedup import exact_duplicates, minhash_signatures, near_duplicates
from onlyif.mixing.text import exact_key


def _rows(n: int, seed: int = 0) -> list[dict]:
    """Rows of two sources with exact duplicates, near duplicates and chains of near duplicates (a~b, b~c)."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(400)]
    rows: list[dict] = []
    for i in range(n):
        r = rng.random()
        if rows and r < 0.1:
            prompt = rng.choice(rows)["prompt"]
        elif rows and r < 0.35:
            words = rng.choice(rows)["prompt"].split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            prompt = " ".join(words)
        else:
            prompt = " ".join(rng.choice(vocab) for _ in range(40))
        rows.append({"src": i % 2, "id": f"s{i % 2}-{rng.getrandbits(64):016x}", "prompt": prompt})
    return rows


def _blocks(ray, rows: list[dict], sizes: list[int]) -> list:
    sigs = minhash_signatures([r["prompt"] for r in rows], 128, 5)
    blocks, start = [], 0
    for b, size in enumerate(sizes):
        part = rows[start : start + size]
        table = pa.table(
            {
                "src": pa.array([r["src"] for r in part], pa.int64()),
                "id": pa.array([r["id"] for r in part], pa.string()),
                "key": pa.array([exact_key(r["prompt"], "") for r in part], pa.string()),
                "minhash": pa.array([s.tobytes() for s in sigs[start : start + size]], pa.binary()),
                "loc": pa.array([(b << LOC_SHIFT) + j for j in range(size)], pa.int64()),
            }
        )
        blocks.append(ray.put(table))
        start += size
    return blocks


def _dropped(ray, refs) -> dict[str, str]:
    tables = [t for t in ray.get(refs) if t.num_rows]
    rows = pa.concat_tables(tables).to_pylist() if tables else []
    return {r["id"]: r["duplicate_of"] for r in rows}


@pytest.mark.parametrize(("sizes", "parts"), [([600], 1), ([250, 0, 1, 349], 3), ([100] * 6, 4)])
def test_distributed_dedup_drops_what_one_pass_drops(ray_cluster, sizes, parts):
    rows = _rows(600)
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["src"], rows[i]["id"]))
    exact = exact_duplicates([exact_key(rows[i]["prompt"], "") for i in order])
    alive = [i for p, i in enumerate(order) if p not in exact]
    sigs = minhash_signatures([rows[i]["prompt"] for i in alive], 128, 5)
    near = near_duplicates(list(sigs), 0.8)
    assert len(exact) > 20 and len(near) > 50  # the data exercises both rules

    blocks = _blocks(ray_cluster, rows, sizes)
    blocks, gone_exact = exact_dedup(blocks, parts)
    assert _dropped(ray_cluster, gone_exact) == {rows[order[p]]["id"]: rows[order[k]]["id"] for p, k in exact.items()}
    blocks, gone_near = near_dedup(blocks, 0.8, 128, parts)
    assert _dropped(ray_cluster, gone_near) == {rows[alive[p]]["id"]: rows[alive[k]]["id"] for p, k in near.items()}
    kept = {i for t in ray_cluster.get(blocks) for i in t.column("id").to_pylist()}
    assert kept == {rows[i]["id"] for p, i in enumerate(alive) if p not in near}


def test_chains_keep_the_rule_not_the_component(ray_cluster):
    """a~b and b~c but not a~c: one pass keeps a, drops b, keeps c — the per-component run must do the same
    (dropping a whole connected component would lose c)."""
    base = [f"t{i}" for i in range(60)]
    a = " ".join(base)
    b = " ".join(base[:52] + [f"x{i}" for i in range(8)])
    c = " ".join(base[:44] + [f"x{i}" for i in range(16)])
    sigs = minhash_signatures([a, b, c], 128, 5)
    assert near_duplicates(list(sigs), 0.7) == {1: 0}
    rows = [{"src": 0, "id": f"s0-{i:016x}", "prompt": t} for i, t in enumerate([a, b, c])]
    blocks, gone = near_dedup(_blocks(ray_cluster, rows, [1, 2]), 0.7, 128, 2)
    assert _dropped(ray_cluster, gone) == {rows[1]["id"]: rows[0]["id"]}
    assert sorted(i for t in ray_cluster.get(blocks) for i in t.column("id").to_pylist()) == [
        rows[0]["id"],
        rows[2]["id"],
    ]
