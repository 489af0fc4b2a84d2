"""Greedy k-center: a known answer on a 2-D toy, agreement with the reference, and the Ray-sharded form."""

from __future__ import annotations

import numpy as np
import pytest

from onlyif.data.kcenter_ray import k_center_sharded
from onlyif.mixing.kcenter import k_center, k_center_naive


def test_two_d_toy_picks_one_point_per_far_cluster():
    rng = np.random.default_rng(0)
    corners = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5]], dtype=np.float32)
    x = np.concatenate([c + 0.1 * rng.standard_normal((40, 2)) for c in corners]).astype(np.float32)
    picks = k_center(x, 5, seed=3)
    assert sorted(int(p) // 40 for p in picks) == [0, 1, 2, 3, 4]
    # the next pick after the 5 clusters is the point farthest from them, as the brute-force answer says
    picks6 = k_center(x, 6, seed=3)
    d = np.min(((x[:, None, :] - x[picks6[:5]][None]) ** 2).sum(-1), axis=1)
    assert picks6[5] == int(np.argmax(d))


@pytest.mark.parametrize(("n", "d", "k"), [(500, 2, 60), (2000, 48, 200), (300, 384, 300)])
def test_pruned_matches_reference(n, d, k):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, 8)) @ rng.standard_normal((8, d)) + 0.2 * rng.standard_normal((n, d))).astype(
        np.float32
    )
    assert np.array_equal(k_center(x, k, seed=1), k_center_naive(x, k, seed=1))


def test_duplicates_are_never_picked_twice():
    x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)
    picks = k_center(x, 12, seed=0)
    assert len(set(picks.tolist())) == 12
    assert sorted(int(p) // 4 for p in picks[:3]) == [0, 1, 2]
    assert len(k_center(x, 50)) == 12 and len(k_center(x[:0], 5)) == 0


def _put_blocks(ray, x, sizes):
    return [ray.put(b) for b in np.split(x, np.cumsum(sizes)[:-1])]


@pytest.mark.parametrize("shards", [1, 2, 3, None])
def test_sharded_matches_single_process(ray_cluster, shards):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3000, 4)) @ rng.standard_normal((4, 16)) + 0.3 * rng.standard_normal((3000, 16))).astype(
        np.float32
    )
    blocks = _put_blocks(ray_cluster, x, [700, 1, 0, 1299, 1000])  # uneven, with a 1-row and an empty block
    seen = []
    picks = k_center_sharded(blocks, 300, seed=2, dims=8, shards=shards, progress=seen.append)
    assert picks.dtype == np.int64 and np.array_equal(picks, k_center(x, 300, seed=2, dims=8))
    # actors report every 256 picks; one shard (the default for 190 KB) runs in one task and reports at the end
    assert seen == ([256] if shards in (2, 3) else [300])


def test_sharded_duplicates_and_k_beyond_n(ray_cluster):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 16)).astype(np.float32)[rng.permutation(np.repeat(np.arange(100), 3))]
    picks = k_center_sharded(_put_blocks(ray_cluster, x, [37, 150, 113]), 1000, seed=5, shards=3)
    assert np.array_equal(picks, k_center(x, 1000, seed=5)) and np.array_equal(picks, k_center_naive(x, 1000, seed=5))
    assert len(picks) == 300 and len({x[i].tobytes() for i in picks[:100]}) == 100  # every distinct row first
    assert len(k_center_sharded(_put_blocks(ray_cluster, x, [300]), 0)) == 0
    assert len(k_center_sharded(_put_blocks(ray_cluster, x[:0], [0, 0]), 5)) == 0
