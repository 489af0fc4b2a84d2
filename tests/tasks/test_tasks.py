"""The pure rewrite-task engine: semantics against ``str.replace``, families, frequencies, splits, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from onlyif.config import validate_config
from onlyif.errors import ConfigError
from onlyif.tasks.config import TaskConfig
from onlyif.tasks.examples import generate_chunk, leftmost, random_letters, table_digest
from onlyif.tasks.frequency import examples_per_rule, power_law_probs
from onlyif.tasks.plan import build_plan
from onlyif.tasks.rules import family_patterns
from onlyif.tasks.tokenizer import EOS_ID, CharTokenizer


def make(**kw) -> TaskConfig:
    return validate_config(TaskConfig, kw)


def split_rows(cfg: TaskConfig, split: str) -> dict[str, list]:
    sp = build_plan(cfg).splits[split]
    return generate_chunk(sp, cfg.seed, 0, 0, len(sp)).to_pydict()


family_configs = st.sampled_from(
    [
        [{"name": "random"}],
        [{"name": "repeated", "k": [1, 2]}],
        [{"name": "periodic", "k": [1, 2]}],
        [{"name": "mirrored", "k": [1, 2]}],
        [{"name": "random", "share": 0.5}, {"name": "periodic", "share": 0.5, "k": 2}],
    ]
)


@settings(max_examples=40, deadline=None)
@given(
    alphabet=st.integers(4, 8),
    input_len=st.tuples(st.integers(6, 14), st.integers(0, 6)),
    pattern=st.tuples(st.integers(3, 4), st.integers(0, 2)),
    noop=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
    families=family_configs,
    seed=st.integers(0, 10_000),
)
def test_every_row_matches_the_reference_rewrite(alphabet, input_len, pattern, noop, families, seed):
    lo, extra = input_len
    cfg = make(
        seed=seed,
        alphabet_size=alphabet,
        input_length=[lo, lo + extra],
        pattern_length=[pattern[0], pattern[0] + pattern[1]],
        noop_share=noop,
        instructions=20,
        budget=300,
        families=families,
        test_seen=50,
        test_unseen=50,
    )
    for split in ("train", "test_seen", "test_unseen"):
        d = split_rows(cfg, split)
        for x, y, xi, out, is_noop in zip(d["rule_x"], d["rule_y"], d["input"], d["output"], d["noop"], strict=True):
            assert out == xi.replace(x, y, 1)
            assert is_noop == (x not in xi)
            assert x != y
            assert lo <= len(xi) <= lo + extra
            assert pattern[0] <= len(x) <= pattern[0] + pattern[1]
        assert np.mean(d["noop"]) == pytest.approx(noop, abs=1 / len(d["noop"]))


@pytest.mark.parametrize(
    "alphabet,width,pat_max,fixed",
    [(2, 12, 3, False), (2, 40, 20, False), (3, 30, 12, False), (2, 40, 13, True), (2, 24, 8, True)],
    ids=["short", "long", "mixed", "fixed-13", "fixed-8"],
)
def test_leftmost_matches_str_find_on_overlapping_patterns(alphabet, width, pat_max, fixed):
    """Tiny alphabets: many overlapping occurrences, and for patterns over 8 letters many windows whose first
    8 letters match but the rest does not (the candidates leftmost() must reject and step past). ``fixed``: one
    pattern length for every row (the unpadded path)."""
    rng = np.random.default_rng(0)
    n = 2000
    inp = rng.integers(0, alphabet, (n, width), dtype=np.uint8)
    pat = rng.integers(0, alphabet, (n, pat_max), dtype=np.uint8)
    lengths = rng.integers(width // 2, width + 1, n)
    pat_len = np.full(n, pat_max) if fixed else rng.integers(1, pat_max + 1, n)
    for r in range(0, n, 3):  # plant every third pattern (where it fits) so long ones occur too
        if pat_len[r] <= lengths[r]:
            s = rng.integers(0, lengths[r] - pat_len[r] + 1)
            inp[r, s : s + pat_len[r]] = pat[r, : pat_len[r]]
    got = leftmost(inp, lengths, pat, pat_len)
    for r in range(n):
        text = "".join(chr(97 + c) for c in inp[r, : lengths[r]])
        needle = "".join(chr(97 + c) for c in pat[r, : pat_len[r]])
        assert got[r] == text.find(needle)


@pytest.mark.parametrize("alphabet", [2, 3, 4, 8, 16, 26, 128, 256])
@pytest.mark.parametrize("shape,lengths_first", [((4096, 50), False), ((4096, 50), True), ((7, 13), False)])
def test_random_letters_are_generator_integers(alphabet, shape, lengths_first):
    """The fast path (power-of-two alphabets, whole 64-bit words) gives rng.integers' values and leaves the
    generator where rng.integers would (the next draws agree), also after a draw that buffers a 32-bit half."""
    a, b = (np.random.default_rng(np.random.SeedSequence([7, 1000, 3])) for _ in range(2))
    if lengths_first:
        assert (a.integers(10, 51, 5) == b.integers(10, 51, 5)).all()  # odd count: a 32-bit half stays buffered
    want = a.integers(0, alphabet, shape, dtype=np.uint8)
    got = random_letters(b, alphabet, shape)
    assert got.dtype == np.uint8 and got.shape == shape and (got == want).all()
    assert (a.integers(0, alphabet, (3, 5), dtype=np.uint8) == random_letters(b, alphabet, (3, 5))).all()
    assert a.random() == b.random()


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_family_patterns_have_their_structure(k):
    rng = np.random.default_rng(k)
    ks = np.full(200, k)
    width = 12
    rep = family_patterns(rng, "repeated", ks, 6, width)
    per = family_patterns(rng, "periodic", ks, 6, width)
    mir = family_patterns(rng, "mirrored", ks, 6, width)
    for j in range(width):
        run, prev_run = j // k, (j - 1) // k
        if j > 0 and run == prev_run:
            assert (rep[:, j] == rep[:, j - 1]).all()  # inside a run: same letter
        if j > 0 and run != prev_run:
            assert (rep[:, j] != rep[:, j - 1]).all()  # neighbouring runs differ
        if j >= k:
            assert (per[:, j] == per[:, j - k]).all()
        m = j % (2 * k)
        if m >= k:
            assert (mir[:, j] == mir[:, j - (2 * m - 2 * k + 1)]).all()  # the mirror image of the block
    assert len({bytes(r) for r in rep}) > 100  # and they are still random


def test_domain_rules_are_structured_in_the_data():
    cfg = make(
        alphabet_size=6,
        input_length=16,
        pattern_length=6,
        instructions=30,
        budget=300,
        families=[{"name": "repeated", "share": 0.5, "k": 3}, {"name": "mirrored", "share": 0.5, "k": 2}],
        test_domain={"families": [{"name": "periodic", "k": 2}], "examples": 60},
    )
    for split in ("train", "test_domain"):
        d = split_rows(cfg, split)
        for x, y, dom, k in zip(d["rule_x"], d["rule_y"], d["domain"], d["k"], strict=True):
            for s in (x, y):
                if dom == "repeated":
                    assert s == "".join(c * 3 for c in s[::3])
                elif dom == "mirrored":
                    assert s == (s[:2] + s[:2][::-1]) * 1 + s[:2]
                elif dom == "periodic":
                    assert k == 2 and s == s[:2] * 3
                else:
                    pytest.fail(f"unexpected domain {dom}")
    assert set(split_rows(cfg, "test_domain")["domain"]) == {"periodic"}


def test_power_law_frequencies_match_the_configured_alpha():
    n, total, alpha = 50, 40_000, 0.3
    counts = examples_per_rule(n, total, alpha, np.random.default_rng(1))
    assert counts.sum() == total and counts.min() >= 1
    expected = 1 + (total - n) * power_law_probs(n, alpha)
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    assert stats.chisquare(counts, np.full(n, total / n)).pvalue < 1e-6  # clearly not uniform
    assert stats.chisquare(counts, 1 + (total - n) * power_law_probs(n, 0.6)).pvalue < 1e-6  # nor another alpha


def test_uniform_counts_are_exact():
    counts = examples_per_rule(7, 100)
    assert counts.sum() == 100 and counts.max() - counts.min() == 1


def test_splits_are_disjoint_and_sized_as_configured():
    cfg = make(
        alphabet_size=5,
        input_length=10,
        pattern_length=3,
        instructions=40,
        budget=800,
        test_seen=100,
        test_unseen=120,
        test_unseen_instructions=60,
        families=[{"name": "random", "share": 0.5}, {"name": "repeated", "share": 0.5, "k": [1, 2]}],
        test_domain={"families": [{"name": "periodic", "k": [1, 2]}], "examples": 50},
    )
    plan = build_plan(cfg)
    assert {n: len(s) for n, s in plan.splits.items()} == {
        "train": 800,
        "test_seen": 100,
        "test_unseen": 120,
        "test_domain": 50,
    }
    keys = {n: set(s.rules.keys()) for n, s in plan.splits.items()}
    assert len(keys["train"]) == 40 and len(keys["test_unseen"]) == 60
    assert not keys["train"] & keys["test_unseen"]
    assert not keys["train"] & keys["test_domain"] and not keys["test_unseen"] & keys["test_domain"]
    assert set(plan.splits["test_seen"].rules.keys()) == keys["train"]
    assert len(np.unique(plan.splits["train"].assign)) == 40  # every rule appears at least once
    ids = {n: set(s.rule_ids[np.unique(s.assign)]) for n, s in plan.splits.items()}
    assert ids["test_seen"] <= ids["train"] and not ids["train"] & ids["test_unseen"]


def test_generation_is_deterministic_and_seed_dependent():
    cfg = make(alphabet_size=6, input_length=[8, 12], pattern_length=[2, 4], instructions=20, budget=500)
    a = table_digest(generate_chunk(build_plan(cfg).splits["train"], 0, 0, 0, 500))
    b = table_digest(generate_chunk(build_plan(cfg).splits["train"], 0, 0, 0, 500))
    c = table_digest(generate_chunk(build_plan(make(**{**cfg.to_dict(), "seed": 1})).splits["train"], 1, 0, 0, 500))
    assert a == b != c


def test_impossible_rule_counts_are_a_config_error():
    with pytest.raises(ConfigError, match="train: cannot draw 10 distinct new rules"):
        build_plan(make(alphabet_size=2, input_length=4, pattern_length=1, instructions=10, budget=10))


def test_tokenizer_round_trip_and_prompt_format():
    tok = CharTokenizer()
    prompt = tok.encode_prompt("ab", "ca", "bbabb")
    response = tok.encode_response("bbcab")
    assert tok.decode(prompt) == "ab→ca|bbabb=" and prompt[0] == tok.bos_id
    assert response[-1] == EOS_ID and tok.decode(response + [7, 7]) == "bbcab"
    assert [a.tolist() for a in tok.encode_letters(["abc"])] == [tok.encode("abc")]
    with pytest.raises(ValueError, match="not in the task vocabulary"):
        tok.encode("A")
