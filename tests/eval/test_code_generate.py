"""Code generation: the decoder's sampling (seeded, per-row streams, top-p) and stop checks, code extraction from chat
answers and base continuations, the chat-template path, Ray Data actors equal to in-process generation, and the
errors a user can hit. Real tiny random-weight Llamas with a byte-level BPE trained on HumanEval."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from onlyif.config import validate_config
from onlyif.errors import ConfigError, OnlyIfError
from onlyif.eval.code.extract import (
    FUNCTION_STOPS,
    answer_complete,
    extract_code,
    fenced_blocks,
    prompt_preamble,
    truncate_at_stops,
)
from onlyif.eval.code.generate import GenerationConfig, generate_samples, prompt_ids, to_sample
from onlyif.eval.code.problems import Problem
from onlyif.lm.decode import decode, greedy_decode, stop_on_strings
from tests._code_fixtures import humaneval_problems, tiny_code_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one torch thread is fastest, and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return tiny_code_model(tmp_path_factory.mktemp("code-base"))


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    return tiny_code_model(tmp_path_factory.mktemp("code-chat"), chat=True)


@pytest.fixture(scope="module")
def lm(base_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(base_model).eval(), AutoTokenizer.from_pretrained(base_model)


def _prompts(tokenizer, n=4):
    return [tokenizer(p.prompt.rstrip())["input_ids"][-24:] for p in humaneval_problems(n)]


# --- the decoder ---------------------------------------------------------------------------------------------------


def test_greedy_decode_equals_hf_generate_with_ragged_prompts_and_budgets(lm):
    model, tok = lm
    prompts = [p[-n:] for p, n in zip(_prompts(tok, 5), (5, 17, 9, 24, 12), strict=True)]
    budgets = [3, 12, 5, 12, 2]  # rows end at different steps: the finished ones leave the batch
    ours = greedy_decode(model, prompts, budgets, eos_id=2, pad_id=0, batch_size=5)
    assert ours == decode(model, prompts, budgets, 2, 0, batch_size=5, temperature=0.0, seed=123)
    assert [len(r) for r in ours] == budgets  # a random model never says EOS here
    for prompt, budget, got in zip(prompts, budgets, ours, strict=True):
        ref = model.generate(
            torch.tensor([prompt]), max_new_tokens=budget, do_sample=False, eos_token_id=2, pad_token_id=0
        )[0, len(prompt) :].tolist()
        assert got == ref


def test_sampling_is_seeded_per_row_and_top_p_narrows_to_greedy(lm):
    model, tok = lm
    prompts = _prompts(tok)  # all 24 tokens: no padding, so a row's logits do not depend on its batch
    a = decode(model, prompts, 16, 2, 0, batch_size=4, temperature=1.0, seed=0)
    assert a == decode(model, prompts, 16, 2, 0, batch_size=4, temperature=1.0, seed=0)
    assert a != decode(model, prompts, 16, 2, 0, batch_size=4, temperature=1.0, seed=1)
    greedy = greedy_decode(model, prompts, 16, 2, 0)
    assert a != greedy
    # Row i samples from its own stream: alone, or in other batches, it draws the same tokens.
    alone = decode(model, prompts[2:3], 16, 2, 0, temperature=1.0, seed=[a_seed := 77])
    in_batch = decode(model, prompts, 16, 2, 0, batch_size=2, temperature=1.0, seed=[5, 6, a_seed, 8])
    shrinking = decode(model, prompts, [2, 2, 16, 2], 2, 0, temperature=1.0, seed=[5, 6, a_seed, 8])
    assert in_batch[2] == alone[0] == shrinking[2]
    # A nucleus holding only the most likely token is greedy decoding.
    assert decode(model, prompts, 16, 2, 0, temperature=1.0, top_p=1e-6, seed=3) == greedy
    with pytest.raises(ValueError, match="top_p"):
        decode(model, prompts, 4, 2, 0, top_p=0.0)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_decoding_and_scoring_show_progress_on_a_terminal_only(lm, monkeypatch, tty):
    from onlyif.lm.loss import response_nll

    model, tok = lm
    prompts = _prompts(tok)
    stderr = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    decode(model, prompts, 4, 2, 0, batch_size=2, desc="generate")
    response_nll(model, prompts, [p[:3] for p in prompts], 0, batch_size=2, desc="humaneval")
    shown = stderr.getvalue()
    if tty:
        assert "generate:" in shown and "/4 [" in shown and "humaneval:" in shown, shown
    else:
        assert shown == ""


def test_rows_that_ended_feed_no_padding_into_the_model():
    """An unpadded batch whose rows end at different steps: the finished rows' inputs are never the pad token (HF's
    GPT-2 warns of unmasked padding when it sees one), and the other rows decode as alone."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=32, n_positions=32, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=1)
    model = GPT2LMHeadModel(config).eval()
    # row 0 ends after its first token; the batch keeps it (fewer than half have ended) for 5 more steps
    prompts, budgets = [[3 + i, 4 + i, 5 + i] for i in range(0, 15, 3)], [1, 6, 6, 6, 6]
    first = decode(model, prompts, budgets, eos_id=1, pad_id=0, batch_size=5)
    pad = min(set(range(2, 32)) - {t for row in first + prompts for t in row})  # a token the model never picks here
    fed = []
    model.register_forward_pre_hook(lambda _, args, kw: fed.append(kw["input_ids"]), with_kwargs=True)
    got = decode(model, prompts, budgets, eos_id=1, pad_id=pad, batch_size=5)
    assert got == first and [len(r) for r in got] == budgets  # random weights: no EOS within these budgets
    assert len(fed) == 6 and not any((ids == pad).any() for ids in fed)
    assert [decode(model, [p], b, 1, pad)[0] for p, b in zip(prompts, budgets, strict=True)] == got


def test_stop_check_ends_one_row_and_the_others_continue(lm):
    model, tok = lm
    prompts = _prompts(tok)
    full = greedy_decode(model, prompts, 20, 2, 0)
    calls = []

    def stop_row_one_at_five(i, ids):
        calls.append(i)
        return i == 1 and len(ids) == 5

    got = decode(model, prompts, 20, 2, 0, batch_size=4, stop_check=stop_row_one_at_five)
    assert got[1] == full[1][:5]
    assert [got[i] for i in (0, 2, 3)] == [full[i] for i in (0, 2, 3)]
    assert set(calls) == {0, 1, 2, 3} and calls.count(1) == 5  # never asked again once stopped


def test_stop_strings_cut_rows_at_the_text(lm):
    model, tok = lm
    prompts = _prompts(tok, 3)
    full = greedy_decode(model, prompts, 20, 2, 0)
    # Text that row 0 first completes with its k-th token (ASCII, so any tail window decodes it the same).
    k, stop = next(
        (k, s)
        for k in range(3, 21)
        if (s := tok.decode(full[0][k - 2 : k])).strip() and s.isascii() and s not in tok.decode(full[0][: k - 1])
    )
    check = stop_on_strings(tok.decode, [(stop,), (), ()])
    got = decode(model, prompts, 20, 2, 0, stop_check=check)
    assert got[0] == full[0][:k] and stop in tok.decode(got[0])
    assert got[1:] == full[1:]  # rows without stops run to their budget


# --- extraction ----------------------------------------------------------------------------------------------------

CHAT_ANSWER = """Here is a helper first:

```python
def helper(x):
    return x + 1
```

And the function:

```py
def add_one(xs):
    return [helper(x) for x in xs]
```
Hope it helps. ```bash
echo not code
```
"""


def test_extract_code_picks_the_block_defining_the_entry_point():
    assert extract_code(CHAT_ANSWER, "add_one").startswith("def add_one(xs):\n")
    assert extract_code(CHAT_ANSWER, "missing").startswith("def helper(x):")  # first Python block
    assert extract_code(CHAT_ANSWER, None).startswith("def helper(x):")
    untagged = "```\nshort = 1\n```\n```text\nthe longest block of all here\n```"
    assert extract_code(untagged, "f") == "the longest block of all here\n"  # no Python tag: the longest
    assert [b.tag for b in fenced_blocks(CHAT_ANSWER)] == ["python", "py"]  # the inline ``` opens no block


def test_extract_code_without_fences_and_unterminated():
    plain = "def f(x):\n    return x\n"
    assert extract_code(plain, "f") == plain  # no fence: as it is
    cut = "Sure:\n  ```Python\n  def f(x):\n      return [x,\n"  # ran out of tokens, indented fence
    assert extract_code(cut, "f") == "def f(x):\n    return [x,\n"
    inline_close = "```python\ndef f(x):\n    return x```\nmore text"
    assert extract_code(inline_close, "f") == "def f(x):\n    return x\n"


def test_answer_complete_once_a_closed_block_defines_the_entry_point():
    assert not answer_complete("```python\ndef f(x):\n    return x\n", "f")  # still open
    assert not answer_complete("```python\ndef g(x):\n    return x\n```\n", "f")
    done = "```python\ndef f(x):\n    return x\n```"
    assert answer_complete(done, "f") and extract_code(done + "\nMore: ```python\ndef f(): pass\n```", "f") == (
        extract_code(done, "f")
    )


def test_truncate_at_stops_and_preamble():
    body = "    return x\n\n\ndef extra():\n    pass\n"
    assert truncate_at_stops(body, FUNCTION_STOPS) == "    return x\n\n"
    assert truncate_at_stops("    if x:\n        print(1)\n", FUNCTION_STOPS) == "    if x:\n        print(1)\n"
    prompt = humaneval_problems(1)[0].prompt
    assert prompt_preamble(prompt, "has_close_elements") == "from typing import List\n\n\n"
    assert prompt_preamble(prompt, "other") == ""


def test_to_sample_chat_and_base():
    problem = humaneval_problems(1)[0]
    answer = "```python\ndef has_close_elements(numbers, threshold):\n    return True\n```"
    sample = to_sample(problem, answer, chat=True)
    assert sample.completion is None and sample.raw == answer
    assert (
        sample.solution
        == "from typing import List\n\n\ndef has_close_elements(numbers, threshold):\n    return True\n"
    )
    body = to_sample(problem, "```python\nreturn True\n```", chat=True)
    assert body.solution is None and body.completion == "    return True\n"
    base = to_sample(problem, "\n    return False\nprint(1)", chat=False)
    assert base.completion == "\n    return False" and base.raw == "\n    return False\nprint(1)"


# --- generate_samples ----------------------------------------------------------------------------------------------


def test_generate_base_mode_samples_in_problem_order(base_model):
    problems = humaneval_problems(3)
    gen = GenerationConfig(max_new_tokens=12, batch_size=2)
    samples = generate_samples(base_model, problems, gen, device="cpu")
    assert [s.task_id for s in samples] == [p.task_id for p in problems]
    for s in samples:
        assert s.raw and s.solution is None and s.completion == truncate_at_stops(s.raw, FUNCTION_STOPS)
    sampled = generate_samples(
        base_model, problems, gen.model_copy(update={"temperature": 1.0, "samples_per_task": 2}), device="cpu"
    )
    assert [s.task_id for s in sampled] == [p.task_id for p in problems for _ in range(2)]
    assert sampled[0].raw != sampled[1].raw  # two samples of one problem differ


def test_greedy_copies_warn_once(base_model, caplog):
    problems = humaneval_problems(2)
    with caplog.at_level(logging.WARNING, logger="onlyif.eval.code.generate"):
        samples = generate_samples(
            base_model, problems, GenerationConfig(max_new_tokens=4, samples_per_task=3), device="cpu"
        )
    assert len(samples) == 6 and samples[0] == samples[1] == samples[2]
    assert sum("identical" in r.message for r in caplog.records) == 1


def test_chat_template_path(chat_model, base_model):
    from transformers import AutoTokenizer

    problems = humaneval_problems(2)
    tok = AutoTokenizer.from_pretrained(chat_model)
    text = tok.decode(prompt_ids(tok, problems[0], chat=True))
    assert text.startswith("<|user|>\nComplete the following Python function.")
    assert "```python\nfrom typing import List" in text and text.endswith("<|end|>\n<|assistant|>\n")
    gen = GenerationConfig(max_new_tokens=10)
    chat = generate_samples(chat_model, problems, gen, device="cpu")
    assert [to_sample(p, s.raw, chat=True) for p, s in zip(problems, chat, strict=True)] == chat
    off = generate_samples(chat_model, problems, gen.model_copy(update={"chat": "off"}), device="cpu")
    assert off == generate_samples(base_model, problems, gen, device="cpu")  # same weights and vocabulary
    with pytest.raises(OnlyIfError, match="no chat template"):
        generate_samples(base_model, problems, gen.model_copy(update={"chat": "on"}), device="cpu")


def test_the_cli_writes_no_progress_bars_into_a_log(base_model, tmp_path):
    """Not on a terminal (a log file, `ray job logs`): no bar of ours or of Hugging Face's ("Loading weights")."""
    argv = ["eval", "code", "--benchmark", "humaneval", "--model", str(base_model), "--max-problems", "2"]
    argv += ["--max-new-tokens", "8", "--out", str(tmp_path / "o")]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}  # the command sets it itself
    cmd = [sys.executable, "-m", "onlyif.cli", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    assert done.stdout.splitlines()[-1].startswith("pass@1 = ")
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["n_samples"] == 2


def test_ray_data_actors_equal_in_process(ray_cluster, chat_model):
    problems = humaneval_problems(5)
    gen = GenerationConfig(max_new_tokens=10, batch_size=2)
    local = generate_samples(chat_model, problems, gen, device="cpu")
    assert generate_samples(chat_model, problems, gen, device="cpu", actors=2) == local


def test_too_long_prompt_names_the_task(tmp_path):
    model = tiny_code_model(tmp_path / "short", positions=64)
    problems = [*humaneval_problems(2), Problem("Tiny/0", "def f():\n", "f", "    pass\n", "")]
    with pytest.raises(OnlyIfError, match=r"task HumanEval/0: its prompt is \d+ tokens.* at most 64 .*\(and 1 more\)"):
        generate_samples(model, problems, GenerationConfig(), device="cpu")
    # A prompt that fits gets the positions left as its budget.
    (sample,) = generate_samples(model, problems[2:], GenerationConfig(max_new_tokens=500), device="cpu")
    assert sample.completion is not None


def test_generation_config_is_validated():
    with pytest.raises(ConfigError, match="temperature"):
        validate_config(GenerationConfig, {"temperature": -1.0})
    with pytest.raises(ConfigError, match="chat"):
        validate_config(GenerationConfig, {"chat": "maybe"})
    assert validate_config(GenerationConfig, {"temperature": 0}).temperature == 0.0
