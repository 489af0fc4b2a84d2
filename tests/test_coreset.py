"""Greedy k-center: a known answer on a 2-D toy, agreement with the reference, and in-mixture selection."""

from __future__ import annotations

import numpy as np
import pytest

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
