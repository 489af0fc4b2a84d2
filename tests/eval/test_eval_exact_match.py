"""Exact-match evaluation: batched KV-cache decoding equals HF ``generate``; a memorizing model scores 1.0, a random
one ~0; breakdowns; the Ray Data actor path agrees with the in-process one; bad model paths fail clearly."""

from __future__ import annotations

import json

import pytest
import torch

from onlyif.cli import main
from onlyif.errors import OnlyIfError
from onlyif.eval.exact_match import evaluate_exact_match, flat_metrics, summarize
from onlyif.lm.batches import collate, join_examples
from onlyif.lm.codec import CharCodec, save_codec
from onlyif.lm.datasets import read_rows
from onlyif.lm.decode import greedy_decode
from onlyif.train.config import ModelConfig
from onlyif.train.model import build_model
from tests._train_fixtures import synthetic_rows, write_split

RULES = [("ab", "cd"), ("ba", "dc")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("em-data")
    write_split(root, "test_seen", synthetic_rows(12, RULES, seed=3, noop_every=4))
    return root


def _save(model, path):
    model.save_pretrained(path)
    save_codec(CharCodec(), path)
    return path


@pytest.fixture(scope="module")
def memorizer(data, tmp_path_factory):
    """A 2-layer GPT-2 trained (plain torch, full batch) until it reproduces the 12 test rows."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_embd=64, n_head=4, n_positions=32))
    codec = CharCodec()
    rows = read_rows(data, "test_seen")
    seqs, plens = join_examples(*codec.encode(rows), max_length=32, truncate=False)
    batch = {k: torch.from_numpy(v) for k, v in collate(seqs, plens, codec.pad_id).items()}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and immune to a busy machine
    try:
        for _ in range(1500):
            loss = model(**batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            if loss.item() < 1e-3:
                break
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 1e-3
    return _save(model.eval(), tmp_path_factory.mktemp("memorizer"))


def test_memorizing_model_scores_one(memorizer, data):
    res = evaluate_exact_match(memorizer, data, "test_seen", batch_size=5)
    assert res["n"] == 12 and res["exact_match"] == 1.0
    assert res["loss"] < 0.01  # it also assigns the reference responses near-certain probability
    assert res["applied"]["exact_match"] == 1.0 and res["noop"]["n"] == 3
    assert res["failures"] == []


def test_random_model_scores_zero(data, tmp_path):
    torch.manual_seed(1)
    model = _save(build_model(ModelConfig(n_layer=2, n_embd=32, n_head=2, n_positions=32)), tmp_path / "random")
    res = evaluate_exact_match(model, data, "test_seen", failures=2)
    assert res["exact_match"] == 0.0
    assert res["loss"] > 2.0  # near ln(vocab) = 3.47 for an untrained model
    assert len(res["failures"]) == 2
    assert res["failures"][0]["expected"] == read_rows(data, "test_seen")["output"][0]


def test_batched_kv_decoding_equals_hf_generate(memorizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(memorizer).eval()
    torch.manual_seed(2)
    prompts = [[1, *torch.randint(6, 10, (n,)).tolist(), 5] for n in (3, 9, 6, 9, 12, 4)]  # ragged: left padding
    ours = greedy_decode(model, prompts, max_new_tokens=10, eos_id=2, pad_id=0, batch_size=4)
    for prompt, got in zip(prompts, ours, strict=True):
        ref = model.generate(
            torch.tensor([prompt]), max_new_tokens=10, do_sample=False, eos_token_id=2, pad_token_id=0
        )[0, len(prompt) :].tolist()
        assert got == (ref[: ref.index(2) + 1] if 2 in ref else ref)


def test_response_nll_matches_hf_loss_at_any_batch_size(memorizer, data):
    """Summed per-token NLL equals HF's mean causal-LM loss × scored tokens, however the rows are batched."""
    from transformers import AutoModelForCausalLM

    from onlyif.lm.loss import response_nll

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_config(AutoModelForCausalLM.from_pretrained(memorizer).config).eval()
    codec = CharCodec()
    prompts, responses = codec.encode(read_rows(data, "test_seen"))
    seqs, plens = join_examples(prompts, responses, max_length=32, truncate=False)
    batch = {k: torch.from_numpy(v) for k, v in collate(seqs, plens, codec.pad_id).items()}
    with torch.no_grad():
        hf_mean = float(model(**batch).loss)
    n_scored = sum(len(r) for r in responses)
    for batch_size in (1, 5, 64):
        nll, count = response_nll(model, prompts, responses, codec.pad_id, batch_size)
        assert count == [len(r) for r in responses]
        assert sum(nll) / sum(count) == pytest.approx(hf_mean, rel=1e-5)
        assert sum(count) == n_scored


def test_summary_breakdowns():
    recs = [
        {"ok": True, "noop": False, "domain": "random", "k": 1, "prompt": "p", "expected": "e", "got": "e"},
        {"ok": False, "noop": False, "domain": "repeated", "k": 2, "prompt": "p", "expected": "e", "got": "x"},
        {"ok": True, "noop": True, "domain": "repeated", "k": 2, "prompt": "p", "expected": "e", "got": "e"},
        {"ok": True, "noop": True, "domain": "repeated", "k": 2, "prompt": "p", "expected": "e", "got": "e"},
    ]
    s = summarize(recs, failures=5)
    assert s["exact_match"] == 0.75
    assert s["applied"] == {"n": 2, "exact_match": 0.5} and s["noop"] == {"n": 2, "exact_match": 1.0}
    assert s["by_family"]["repeated"]["exact_match"] == pytest.approx(2 / 3)
    assert s["failures"] == [{"prompt": "p", "expected": "e", "got": "x", "noop": False, "domain": "repeated", "k": 2}]
    m = flat_metrics("test_unseen", s)
    assert m["test_unseen/exact_match_applied"] == 0.5
    assert m["test_unseen/family/random/exact_match"] == 1.0 and m["test_unseen/k/2/exact_match"] == pytest.approx(
        2 / 3
    )


def test_ray_data_actors_agree_with_in_process(ray_cluster, memorizer, data):
    from onlyif.eval.distributed import evaluate_distributed

    local = evaluate_exact_match(memorizer, data, "test_seen", max_examples=10)
    dist = evaluate_distributed(memorizer, data, "test_seen", max_examples=10, batch_size=4, actors=2)
    assert dist == {**local, "failures": dist["failures"], "loss": dist["loss"]}
    assert dist["n"] == 10 and dist["exact_match"] == 1.0
    assert dist["loss"] == pytest.approx(local["loss"], rel=1e-6)


def test_cli_exact_match_writes_summary(memorizer, data, tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "exact-match",
                "--model",
                str(memorizer),
                "--data",
                str(data),
                "--split",
                "test_seen",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    assert "test_seen: exact_match 1.0000 (n=12)" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev" / "test_seen.json").read_text())["exact_match"] == 1.0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "absent", "not found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "neither an HF model directory"),
    ],
)
def test_bad_model_path_is_one_line_error(make, message, data, tmp_path):
    with pytest.raises(OnlyIfError, match=message):
        evaluate_exact_match(make(tmp_path), data, "test_seen")
