"""The eval suite: answer extraction on hand-written outputs, multiple-choice picks against a plain forward pass,
a model trained to give known answers scored end to end, the summary and its ``suite/score``, record files,
MLflow logging, few-shot rows, the chat template, and one-line errors for bad configs and missing files."""

from __future__ import annotations

import gzip
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from onlyif.cli import main
from onlyif.config import load_config, validate_config
from onlyif.errors import ConfigError, OnlyIfError
from onlyif.eval.suite.base import read_rows
from onlyif.eval.suite.choice import gold_index, parse_choices
from onlyif.eval.suite.config import SuiteConfig
from onlyif.eval.suite.qa import answers_match, cut_at_stop, extract_boxed, extract_number, normalize_math
from onlyif.eval.suite.runner import run_suite
from onlyif.mlflow_names import to_mlflow
from tests._train_fixtures import tiny_hf_model

# ---------------------------------------------------------------- answer extraction (hand-written model outputs)

GSM8K_REFERENCE = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GSM8K_REFERENCE, "72"),
        ("She pays 3 * $400 = $1,200 in total.\n#### 1,200", "1200"),
        ("So she has 5 + 2 = 7 apples. The answer is 7.", "7"),
        ("The final answer is $42.00.", "42"),
        ("The answer is: -3.50 dollars, since 2 < 3", "-3.5"),
        ("First 12 eggs, then 4 more, so 16", "16"),
        ("#### 9\n\nQuestion: what about 11?", "9"),
        ("I do not know.", None),
        ("The answer is unclear but 8 is close", "8"),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    ("predicted", "expected", "ok"),
    [("42", "42.0", True), ("1200", "1,200", True), ("7", "8", False), (None, "1", False), ("0.5", "1/2", True)],
)
def test_numeric_answers_match(predicted, expected, ok):
    assert answers_match(predicted, expected) is ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{2} first, then \\boxed{\\sqrt{2}}", "\\sqrt{2}"),
        ("The answer is $(3, 4)$.\nDone", "(3, 4)"),
        ("nothing boxed, 10 or 11", "11"),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("predicted", "expected", "ok"),
    [
        ("\\dfrac{1}{2}", "\\frac12", True),
        ("0.5", "\\frac{1}{2}", True),
        ("x = 5", "5", True),
        ("10\\%", "10", True),
        ("\\left( 3, 4 \\right)", "(3,4)", True),
        ("90^\\circ", "90", True),
        ("\\sqrt2", "\\sqrt{2}", True),
        ("\\frac{1}{3}", "\\frac{1}{2}", False),
        ("(3,5)", "(3,4)", False),
    ],
)
def test_math_answers_match(predicted, expected, ok):
    assert answers_match(predicted, expected, "boxed") is ok, (normalize_math(predicted), normalize_math(expected))


def test_cut_at_stop():
    assert cut_at_stop(" 3 + 4 = 7\n#### 7\n\nQuestion: next one", ["Question:"]) == "3 + 4 = 7\n#### 7"
    assert cut_at_stop("no stop here ", ["Question:", ""]) == "no stop here"


# ---------------------------------------------------------------- choices and answers of MMLU / ARC rows


def test_choices_and_gold_from_mmlu_and_arc_rows():
    assert parse_choices(["x", "y", "z"], "r") == (["x", "y", "z"], ["A", "B", "C"])
    arc = {"text": ["red", "blue", "green", "gray"], "label": ["1", "2", "3", "4"]}
    texts, labels = parse_choices(arc, "r")
    assert labels == ["1", "2", "3", "4"]
    assert gold_index("3", labels, "r") == 2  # ARC label, not an index
    assert gold_index(3, ["A", "B", "C", "D"], "r") == 3  # MMLU index
    assert gold_index("c", ["A", "B", "C", "D"], "r") == 2  # a letter
    with pytest.raises(OnlyIfError, match="task t: row 4: answer 'E' is out of range"):
        gold_index("E", ["A", "B", "C", "D"], "task t: row 4")
    with pytest.raises(OnlyIfError, match="row 2: need at least two choices"):
        parse_choices(["only"], "row 2")


# ---------------------------------------------------------------- reading local files


def test_read_rows_formats(tmp_path):
    rows = [{"question": f"q{i}", "answer": i} for i in range(5)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "c.json").write_text(json.dumps(rows))
    (tmp_path / "dir").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:3]), tmp_path / "dir" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[3:]), tmp_path / "dir" / "part-1.parquet")
    for name in ("a.jsonl", "b.jsonl.gz", "c.json", "dir"):
        assert read_rows(tmp_path / name) == rows, name
        assert read_rows(tmp_path / name, 4) == rows[:4], name
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\n{"question": \n')
    with pytest.raises(OnlyIfError, match=r"bad.jsonl line 2: not valid JSON"):
        read_rows(tmp_path / "bad.jsonl")
    (tmp_path / "c.csv").write_text("question,answer\n")
    with pytest.raises(OnlyIfError, match="c.csv: unknown format"):
        read_rows(tmp_path / "c.csv")


# ---------------------------------------------------------------- tiny sets and models

QA_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
    {"question": "A pen costs 2 dollars. What do 6 pens cost?", "answer": "6 * 2 = <<6*2=12>>12\n#### 12"},
    {"question": "How many days are in 3 weeks?", "answer": "3 * 7 = <<3*7=21>>21\n#### 21"},
    {"question": "A farm sells 1,000 eggs a day. How many in 2 days?", "answer": "2 * 1000 = 2000\n#### 2,000"},
]
TRAINED_ANSWERS = [  # what the trained model says: three right (in three spellings), one wrong
    "3 + 4 = 7 apples.\n#### 7",
    "Six pens cost 12 dollars. The answer is $12.00.",
    "Each week has 7 days, so 3 weeks have 20 days",
    "Two days give 2,000 eggs.\n#### 2,000",
]
MMLU_ROWS = [
    {"question": "What is 2 + 2?", "choices": ["3", "4", "5", "22"], "answer": 1},
    {"question": "Which is a color?", "choices": ["red", "run", "rain", "rock"], "answer": "A"},
    {"question": "Which is a fruit?", "choices": ["pear", "pen", "pan", "pin"], "answer": 0},
    {"question": "How many legs has a cat?", "choices": ["two", "four", "six", "eight"], "answer": 1},
    {"question": "Which is the largest?", "choices": ["1", "10", "100", "1000"], "answer": "D"},
]
ARC_ROWS = [
    {
        "id": f"arc-{i}",
        "question": q,
        "choices": {"text": texts, "label": labels},
        "answerKey": key,
    }
    for i, (q, texts, labels, key) in enumerate(
        [
            ("What do plants need to grow?", ["sunlight", "plastic", "sand only", "noise"], list("ABCD"), "A"),
            ("What melts ice?", ["heat", "cold air", "darkness"], list("ABC"), "A"),
            ("Which is a planet?", ["the Moon", "Mars", "the Sun", "a comet"], ["1", "2", "3", "4"], "2"),
        ]
    )
]
CODE_PROBLEMS = [  # HumanEval format, short enough for the tiny model
    {
        "task_id": f"Tiny/{i}",
        "prompt": f"def {name}(a, b):\n",
        "entry_point": name,
        "canonical_solution": f"    return a {op} b\n",
        "test": f"def check(candidate):\n    assert candidate(5, 3) == 5 {op} 3\n",
    }
    for i, (name, op) in enumerate([("add", "+"), ("sub", "-")])
]
TRAINED_CODE = ["\n    return a + b\n", "\n    return a + b\n"]  # right for add, wrong for sub
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite-data")
    write_jsonl(root / "gsm8k.jsonl", QA_ROWS)
    write_jsonl(root / "tiny_code.jsonl", CODE_PROBLEMS)
    write_jsonl(root / "mmlu.jsonl", MMLU_ROWS)
    pq.write_table(pa.Table.from_pylist(ARC_ROWS), root / "arc.parquet")
    return root


def _bpe_tokenizer(corpus):
    """A byte-level BPE tokenizer trained on ``corpus`` (exact text round trips), with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A 2-layer Llama with a BPE tokenizer, trained (plain torch, full batch) to answer the four QA prompts with
    TRAINED_ANSWERS and to continue the two code prompts with TRAINED_CODE: its greedy outputs are known text,
    scored by the suite as a real model's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("trained-model")
    prompts = [f"Question: {r['question']}\nAnswer:" for r in QA_ROWS]
    answers = [" " + a for a in TRAINED_ANSWERS]
    prompts += [p["prompt"].rstrip() for p in CODE_PROBLEMS]  # the code evaluator's raw-prompt convention
    answers += TRAINED_CODE
    corpus = prompts + answers + [json.dumps(r) for r in MMLU_ROWS + ARC_ROWS]
    tok = _bpe_tokenizer(corpus)
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=256,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    seqs = [
        tok(p)["input_ids"] + tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        for p, a in zip(prompts, answers, strict=True)
    ]
    plens = [len(tok(p)["input_ids"]) for p in prompts]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    labels = ids.clone()
    labels[mask == 0] = -100
    for i, n in enumerate(plens):
        labels[i, :n] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest
    try:
        for _ in range(400):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            if loss.item() < 2e-3:
                break
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 2e-3
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return tiny_hf_model(tmp_path_factory.mktemp("tiny-hf"))


def suite_cfg(sets, **tasks) -> SuiteConfig:
    return validate_config(SuiteConfig, {"tasks": tasks, "batch_size": 3}, "test")


# ---------------------------------------------------------------- QA on real generated text


def test_qa_scores_a_trained_models_answers(trained_model, sets, tmp_path):
    cfg = suite_cfg(
        sets, gsm8k={"kind": "qa", "path": str(sets / "gsm8k.jsonl"), "max_new_tokens": 40, "chat_template": False}
    )
    metrics = run_suite(trained_model, cfg, tmp_path / "out", device="cpu")
    records = [json.loads(line) for line in (tmp_path / "out" / "gsm8k.jsonl").read_text().splitlines()]
    assert [r["output"] for r in records] == TRAINED_ANSWERS  # the model says what it was trained to say
    assert [r["predicted"] for r in records] == ["7", "12", "20", "2000"]
    assert [r["expected"] for r in records] == ["7", "12", "21", "2000"]
    assert [r["correct"] for r in records] == [True, True, False, True]
    assert metrics["gsm8k/exact_match"] == 0.75
    assert metrics["gsm8k/n"] == 4
    assert metrics["suite/score"] == 0.75


def test_qa_stops_at_a_stop_string(trained_model, sets, tmp_path):
    task = {"kind": "qa", "path": str(sets / "gsm8k.jsonl"), "max_new_tokens": 40, "chat_template": False}
    cfg = suite_cfg(sets, gsm8k={**task, "stop": [" ="], "max_examples": 2})
    metrics = run_suite(trained_model, cfg, tmp_path / "out", device="cpu")
    records = [json.loads(line) for line in (tmp_path / "out" / "gsm8k.jsonl").read_text().splitlines()]
    assert [r["output"] for r in records] == ["3 + 4", "Six pens cost 12 dollars. The answer is $12.00."]
    assert [r["predicted"] for r in records] == ["4", "12"] and metrics["gsm8k/exact_match"] == 0.5


# ---------------------------------------------------------------- multiple choice against a plain forward pass


def reference_logliks(model_dir, context: str, continuations: list[str]) -> list[tuple[float, int]]:
    """Per continuation: summed log-probability of its tokens after ``context`` and the token count, from one
    unpadded forward pass of the whole sequence each (the tokens after the context's own, as lm-eval splits)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ctx_ids = tok(context)["input_ids"]
    out = []
    for cont in continuations:
        whole = tok(context + cont)["input_ids"]
        assert whole[: len(ctx_ids)] == ctx_ids
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].double(), -1)
        total = sum(float(logp[j - 1, whole[j]]) for j in range(len(ctx_ids), len(whole)))
        out.append((total, len(whole) - len(ctx_ids)))
    return out


def test_choice_picks_the_highest_loglikelihood(random_model, tmp_path):
    words = ["four", "red", "two plus two", "a b c d", "three"]
    rows = [
        {"question": "what is two plus two", "choices": words[:4], "answer": 0},
        {"question": "name a color", "choices": [words[1], words[4], words[3]], "answer": 0},
        {"question": "add one to two", "choices": [words[4], words[2], "one", "e f"], "answer": "A"},
        {"question": "what is red", "choices": ["a", "b c", "color", "d e f g"], "answer": 2},
    ]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    cfg = suite_cfg(None, mc={"kind": "choice", "path": str(path), "continuation": "text"})
    metrics = run_suite(random_model, cfg, tmp_path / "out", device="cpu")
    records = [json.loads(line) for line in (tmp_path / "out" / "mc.jsonl").read_text().splitlines()]
    hits = hits_norm = 0
    for row, rec in zip(rows, records, strict=True):
        ref = reference_logliks(
            random_model, f"Question: {row['question']}\nAnswer:", [" " + c for c in row["choices"]]
        )
        sums = [s for s, _ in ref]
        means = [s / n for s, n in ref]
        assert rec["loglik"] == pytest.approx(sums, abs=1e-4)
        assert rec["loglik_norm"] == pytest.approx(means, abs=1e-4)
        assert rec["pred"] == sums.index(max(sums))
        assert rec["pred_norm"] == means.index(max(means))
        gold = rec["gold"]
        hits += sums.index(max(sums)) == gold
        hits_norm += means.index(max(means)) == gold
    assert metrics["mc/accuracy"] == hits / 4
    assert metrics["mc/accuracy_norm"] == hits_norm / 4
    assert metrics["suite/score"] == metrics["mc/accuracy_norm"]  # text continuations: the normalized one is primary


# ---------------------------------------------------------------- the whole suite, its files and MLflow


def test_suite_summary_records_and_mlflow(trained_model, sets, tmp_path):
    from mlflow import MlflowClient

    cfg = suite_cfg(
        sets,
        gsm8k={"kind": "qa", "path": str(sets / "gsm8k.jsonl"), "max_new_tokens": 40, "chat_template": False},
        mmlu={"kind": "choice", "path": str(sets / "mmlu.jsonl"), "shots": 2},
        arc={"kind": "choice", "path": str(sets / "arc.parquet"), "continuation": "text", "max_examples": 2},
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    metrics = run_suite(trained_model, cfg, out, device="cpu", mlflow_uri=uri, mlflow_experiment="suite-test")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == metrics
    primaries = {name: t["primary"] for name, t in summary["tasks"].items()}
    assert primaries == {"gsm8k": "gsm8k/exact_match", "mmlu": "mmlu/accuracy", "arc": "arc/accuracy_norm"}
    assert metrics["suite/score"] == pytest.approx(sum(metrics[p] for p in primaries.values()) / 3, abs=1e-12)
    assert summary["suite/score"] == metrics["suite/score"]
    for name in ("gsm8k", "mmlu", "arc"):
        for metric in ("exact_match",) if name == "gsm8k" else ("accuracy", "accuracy_norm"):
            assert 0 <= metrics[f"{name}/{metric}"] <= 1
    # few-shot: the first 2 MMLU rows are the shots, not scored; ARC is cut to its first 2 rows
    mmlu = [json.loads(line) for line in (out / "mmlu.jsonl").read_text().splitlines()]
    assert [r["index"] for r in mmlu] == [2, 3, 4] and metrics["mmlu/n"] == 3
    shown = summary["tasks"]["mmlu"]["example_prompt"]
    assert shown.startswith("<|user|>What is 2 + 2?\nA. 3\nB. 4")  # chat_template auto: the model has one
    assert "Answer:\n<|assistant|>B\n<|user|>Which is a color?" in shown  # shots are user/assistant turns
    assert shown.endswith("Which is a fruit?\nA. pear\nB. pen\nC. pan\nD. pin\nAnswer:\n<|assistant|>")
    assert summary["tasks"]["mmlu"]["chat_template"] is True and summary["tasks"]["gsm8k"]["chat_template"] is False
    arc = [json.loads(line) for line in (out / "arc.jsonl").read_text().splitlines()]
    assert len(arc) == 2 and arc[1]["choices"] == ["heat", "cold air", "darkness"]
    # MLflow: one finished run with every metric ('@'-free names) and the summary as an artifact
    client = MlflowClient(uri)
    run = client.get_run(summary["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics == pytest.approx({to_mlflow(k): v for k, v in metrics.items()})
    assert run.data.params["tasks.gsm8k.kind"] == "qa"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["summary.json"]


@pytest.mark.gpu
def test_suite_on_cuda_agrees_with_cpu(trained_model, sets, tmp_path):
    cfg = suite_cfg(
        sets,
        gsm8k={"kind": "qa", "path": str(sets / "gsm8k.jsonl"), "max_new_tokens": 40, "chat_template": False},
        mmlu={"kind": "choice", "path": str(sets / "mmlu.jsonl"), "shots": 2},
    )
    runs = {dev: run_suite(trained_model, cfg, tmp_path / dev, device=dev) for dev in ("cpu", "cuda")}
    assert json.loads((tmp_path / "cuda" / "summary.json").read_text())["device"] == "cuda"
    assert runs["cuda"] == pytest.approx(runs["cpu"])
    for name, keys in (("gsm8k", ("output",)), ("mmlu", ("pred", "pred_norm"))):
        cpu, gpu = ([json.loads(x) for x in (tmp_path / d / f"{name}.jsonl").read_text().splitlines()] for d in runs)
        assert [[r[k] for k in keys] for r in gpu] == [[r[k] for k in keys] for r in cpu]


def test_chat_template_required_but_missing(random_model, sets, tmp_path):
    cfg = suite_cfg(sets, mmlu={"kind": "choice", "path": str(sets / "mmlu.jsonl"), "chat_template": True})
    with pytest.raises(OnlyIfError, match="task mmlu: chat_template is true but the model's tokenizer has no chat"):
        run_suite(random_model, cfg, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()  # nothing half-written


# ---------------------------------------------------------------- code, through the code evaluator


def test_code_task_scores_the_suites_model_and_canonical_solutions(trained_model, sets, tmp_path):
    pytest.importorskip("onlyif.eval.code.evaluate", reason="the code evaluator (helper SCORING) has not landed")
    bench = str(sets / "tiny_code.jsonl")
    cfg = suite_cfg(
        sets,
        tiny={"kind": "code", "benchmark": bench, "chat_template": False, "workers": 2, "gen": {"max_new_tokens": 20}},
        canon={"kind": "code", "benchmark": bench, "canonical": True, "workers": 2},
    )
    metrics = run_suite(trained_model, cfg, tmp_path / "out", device="cpu")
    assert metrics["tiny/pass@1"] == 0.5  # the model writes a + b for both: right for add, wrong for sub
    assert metrics["canon/pass@1"] == 1.0
    assert metrics["suite/score"] == 0.75
    samples = [json.loads(line) for line in (tmp_path / "out" / "tiny" / "samples.jsonl").read_text().splitlines()]
    assert [s["completion"] for s in samples] == TRAINED_CODE
    records = [json.loads(line) for line in (tmp_path / "out" / "tiny.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["passed"]) for r in records] == [("Tiny/0", True), ("Tiny/1", False)]
    assert records[1]["error"] == "assertion"


# ---------------------------------------------------------------- the command line and bad input


def write_config(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_runs_the_suite(trained_model, sets, tmp_path, capsys):
    config = write_config(
        tmp_path / "suite.yaml",
        {"tasks": {"arc": {"kind": "choice", "path": str(sets / "arc.parquet"), "continuation": "text"}}},
    )
    argv = ["eval", "suite", "--model", str(trained_model), "--config", str(config), "--out", str(tmp_path / "o")]
    assert main([*argv, "--device", "cpu", "--set", "tasks.arc.max_examples=1", "--set", "chat_template=false"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert last == f"suite/score = {summary['suite/score']:.4f}"
    assert summary["metrics"]["arc/n"] == 1 and summary["tasks"]["arc"]["chat_template"] is False
    assert main([*argv]) == 1  # --out is not empty
    assert "directory exists and is not empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ({"gsm8k": {"kind": "qa", "path": "x", "shots": -1}}, "tasks.gsm8k.qa.shots: Input should be greater"),
        ({"gsm8k": {"kind": "qa", "path": "x", "sots": 2}}, "tasks.gsm8k.qa.sots: unknown key"),
        ({"gsm8k": {"kind": "quiz", "path": "x"}}, "tasks.gsm8k: Input tag 'quiz' found using 'kind' does not"),
        ({"gsm8k": {"kind": "qa"}}, "tasks.gsm8k.qa.path: required key is missing"),
        ({"gsm8k": {"kind": "qa", "path": "x", "shots_path": "y"}}, "tasks.gsm8k.qa.shots_path: set shots"),
        ({"g": {"kind": "qa", "path": "x", "prompt_template": "Q: {q}"}}, "tasks.g.qa.prompt_template: may use"),
        ({"mmlu": {"kind": "choice", "path": "x", "primary": "acc"}}, "tasks.mmlu.choice.primary: Input should be"),
        ({"he": {"kind": "code", "ks": [10]}}, "tasks.he.code.ks: positive integers including 1"),
        ({"a/b": {"kind": "qa", "path": "x"}}, "tasks.a/b: a task name holds letters"),
        ({}, "tasks: name at least one task"),
    ],
)
def test_bad_config_is_one_line(tmp_path, tasks, message, capsys):
    path = write_config(tmp_path / "suite.yaml", {"tasks": tasks})
    with pytest.raises(ConfigError) as err:
        load_config(SuiteConfig, path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: ")
    argv = ["eval", "suite", "--model", str(tmp_path), "--config", str(path), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_missing_files_and_fields_are_one_line(random_model, sets, tmp_path):
    cfg = suite_cfg(sets, mmlu={"kind": "choice", "path": str(tmp_path / "nope.jsonl")})
    with pytest.raises(OnlyIfError, match=r"^task mmlu: path .*nope.jsonl: not found$"):
        run_suite(tmp_path / "no-model", cfg, tmp_path / "out")  # the data is checked before the model
    cfg = suite_cfg(sets, gsm8k={"kind": "qa", "path": str(sets / "gsm8k.jsonl")})
    with pytest.raises(OnlyIfError, match="no-model: not found"):
        run_suite(tmp_path / "no-model", cfg, tmp_path / "out")
    cfg = suite_cfg(sets, gsm8k={"kind": "qa", "path": str(sets / "gsm8k.jsonl"), "question_field": "problem"})
    with pytest.raises(OnlyIfError, match=r"task gsm8k: row 0: no field 'problem' \(fields: answer, question\)"):
        run_suite(random_model, cfg, tmp_path / "out", device="cpu")
    cfg = suite_cfg(sets, gsm8k={"kind": "qa", "path": str(sets / "mmlu.jsonl"), "answer_field": "question"})
    with pytest.raises(OnlyIfError, match="task gsm8k: row 1: no final answer in 'question'"):
        run_suite(random_model, cfg, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_suite_score_is_the_mean_of_primaries_with_shots_from_a_file(random_model, sets, tmp_path):
    cfg = suite_cfg(
        sets,
        a={"kind": "choice", "path": str(sets / "mmlu.jsonl"), "shots": 1, "shots_path": str(sets / "mmlu.jsonl")},
        b={"kind": "choice", "path": str(sets / "mmlu.jsonl"), "continuation": "text", "primary": "accuracy"},
    )
    metrics = run_suite(random_model, cfg, tmp_path / "out", device="cpu")
    assert metrics["a/n"] == metrics["b/n"] == 5  # shots from another file: every row of path is scored
    assert math.isclose(metrics["suite/score"], (metrics["a/accuracy"] + metrics["b/accuracy"]) / 2)
