"""Code samples from a causal LM: each problem's prompt (raw, or through the model's chat template), batched
KV-cache decoding (greedy or sampled, stop sequences), then the sample (continuation cut at the stops, or the code
extracted from the chat answer). In process, or on a pool of Ray Data model actors with identical batches.

One module: prompt building, stop sequences and sample extraction decide together what a sample is, in process
and on the Ray Data actors alike.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import textwrap
import zlib
from typing import Any, Literal

from pydantic import Field

from onlyif.config import Config
from onlyif.errors import OnlyIfError
from onlyif.eval.code.extract import (
    FUNCTION_STOPS,
    PROGRAM_STOPS,
    answer_complete,
    defines,
    extract_code,
    prompt_preamble,
    truncate_at_stops,
)
from onlyif.eval.code.problems import Problem, Sample
from onlyif.lm.codec import HFCodec, load_codec
from onlyif.lm.decode import decode, decode_batches, row_seed, stop_on_strings
from onlyif.lm.models import load_eval_model, max_positions, resolve_device, resolve_model_dir

log = logging.getLogger(__name__)

FUNCTION_INSTRUCTION = "Complete the following Python function. Reply with the whole function in one ```python block."
PROGRAM_INSTRUCTION = "Solve the following problem in Python. Reply with the whole solution in one ```python block."


class GenerationConfig(Config):
    """How samples are generated. ``temperature`` 0 is greedy: the ``samples_per_task`` copies of a problem are
    then one decoding repeated (a warning says so: pass@k of identical samples is pass@1)."""

    samples_per_task: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(512, ge=1)
    batch_size: int = Field(16, ge=1)
    seed: int = 0
    chat: Literal["auto", "on", "off"] = "auto"
    """``auto``: through the chat template when the tokenizer has one."""


@dataclasses.dataclass(frozen=True)
class GenRow:
    """One decoding: the problem it samples, its prompt ids, token budget, seed and stop strings."""

    problem: int
    prompt_ids: list[int]
    budget: int
    seed: int
    stops: tuple[str, ...]
    answer_of: str | None = None
    """A chat answer's entry point: decoding stops once the answer holds a closed block defining it."""


def generate_samples(
    model: str | os.PathLike,
    problems: list[Problem],
    gen: GenerationConfig,
    *,
    device: str = "auto",
    actors: int = 0,
) -> list[Sample]:
    """``gen.samples_per_task`` samples of each problem, in problem order, from a model or run directory.

    ``actors > 0`` decodes on that many Ray Data model actors (GPUs when the cluster has them and ``device`` is
    not ``cpu``); they decode the same batches as the in-process path, so greedy results are identical."""
    model_dir = resolve_model_dir(model)
    if not problems:
        return []
    if actors > 0:
        tokenizer = _tokenizer(load_codec(model_dir), model_dir)
        chat = use_chat(tokenizer, gen.chat, model_dir)
        rows = plan_rows(tokenizer, _config_max_positions(model_dir), problems, gen, chat)
        return samples_of(problems, rows, _decode_on_actors(model_dir, rows, gen, device, actors), gen, chat)
    lm, codec = load_eval_model(model_dir, resolve_device(device))
    tokenizer = _tokenizer(codec, model_dir)
    return generate_with(lm, tokenizer, problems, gen, use_chat(tokenizer, gen.chat, model_dir))


def generate_with(lm: Any, tokenizer: Any, problems: list[Problem], gen: GenerationConfig, chat: bool) -> list[Sample]:
    """:func:`generate_samples` with a model and tokenizer already loaded in this process."""
    rows = plan_rows(tokenizer, max_positions(lm.config), problems, gen, chat)
    return samples_of(problems, rows, decode_rows(lm, tokenizer, rows, gen), gen, chat)


def samples_of(
    problems: list[Problem], rows: list[GenRow], texts: list[str], gen: GenerationConfig, chat: bool
) -> list[Sample]:
    """The samples of decoded ``rows`` in problem order (a greedy decoding stands for all of its problem's)."""
    copies = gen.samples_per_task if gen.temperature == 0 else 1
    return [
        to_sample(problems[r.problem], text, chat) for r, text in zip(rows, texts, strict=True) for _ in range(copies)
    ]


def use_chat(tokenizer: Any, mode: str, model_dir: Any) -> bool:
    """Whether prompts go through the chat template (``on`` without one is an error)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "on" and not has:
        raise OnlyIfError(f"chat: on, but the tokenizer of {model_dir} has no chat template")
    return has if mode == "auto" else mode == "on"


def chat_message(problem: Problem) -> str:
    """The user message of a problem: an instruction and the prompt in a Python fence."""
    instruction = PROGRAM_INSTRUCTION if problem.canonical_is_full else FUNCTION_INSTRUCTION
    return f"{instruction}\n\n```python\n{problem.prompt.strip()}\n```\n"


def prompt_ids(tokenizer: Any, problem: Problem, chat: bool) -> list[int]:
    """The token ids a model continues: the chat template with the generation prompt, or the raw prompt without
    its trailing whitespace (bigcode's convention: the model writes the newline and indentation itself)."""
    if chat:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": chat_message(problem)}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        return list(ids)
    return list(tokenizer(problem.prompt.rstrip(), add_special_tokens=True)["input_ids"])


def stops_for(problem: Problem, chat: bool) -> tuple[str, ...]:
    """The stop strings of a base-model continuation (a chat answer ends at its end-of-turn token)."""
    if chat:
        return ()
    return PROGRAM_STOPS if problem.canonical_is_full else FUNCTION_STOPS


def plan_rows(
    tokenizer: Any, limit: int | None, problems: list[Problem], gen: GenerationConfig, chat: bool
) -> list[GenRow]:
    """The decodings to run, in sample order (one per problem when greedy). A prompt leaving no room to generate
    within the model's ``limit`` positions is an error; otherwise budgets shrink to fit."""
    if gen.temperature == 0 and gen.samples_per_task > 1:
        log.warning(
            "temperature 0 is greedy: the %d samples of each problem are identical (pass@k = pass@1)",
            gen.samples_per_task,
        )
    rows = []
    n = 1 if gen.temperature == 0 else gen.samples_per_task
    too_long = []
    for p_index, problem in enumerate(problems):
        ids = prompt_ids(tokenizer, problem, chat)
        budget = gen.max_new_tokens if limit is None else min(gen.max_new_tokens, limit - len(ids))
        if budget <= 0:
            too_long.append((problem.task_id, len(ids)))
            continue
        key = zlib.crc32(problem.task_id.encode())
        for j in range(n):
            seed = row_seed(gen.seed, key, j)
            answer_of = problem.entry_point if chat else None
            rows.append(GenRow(p_index, ids, budget, seed, stops_for(problem, chat), answer_of))
    if too_long:
        task, length = too_long[0]
        more = f" (and {len(too_long) - 1} more)" if len(too_long) > 1 else ""
        raise OnlyIfError(
            f"task {task}: its prompt is {length} tokens, the model takes at most {limit} positions{more}"
        )
    return rows


def to_sample(problem: Problem, text: str, chat: bool) -> Sample:
    """A sample from a model's output. Base model: the continuation cut at the stops. Chat: the extracted code,
    as a whole ``solution`` after the prompt's preamble (imports, helpers) when it defines the entry point, else
    as the function's body (indented when it is not)."""
    task = problem.task_id
    if not chat:
        return Sample(task, completion=truncate_at_stops(text, stops_for(problem, chat)), raw=text)
    code = extract_code(text, problem.entry_point)
    if problem.entry_point and defines(code, problem.entry_point):
        return Sample(task, solution=prompt_preamble(problem.prompt, problem.entry_point) + code, raw=text)
    if problem.canonical_is_full:
        return Sample(task, solution=code, raw=text)
    body = code if code[:1].isspace() else textwrap.indent(code, "    ")
    return Sample(task, completion=body, raw=text)


def decode_rows(lm: Any, tokenizer: Any, rows: list[GenRow], gen: GenerationConfig) -> list[str]:
    """Decode ``rows`` (batched as :func:`decode_batches` groups them) and return each output as text."""
    if not rows:
        return []
    eos_id = int(tokenizer.eos_token_id)
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id)
    ends = end_ids(lm) - {eos_id}

    def text(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    on_strings = stop_on_strings(text, [r.stops for r in rows])

    def stop(i: int, ids: list[int]) -> bool:
        if ids[-1] in ends or on_strings(i, ids):
            return True
        entry = rows[i].answer_of  # a full decode only while a fence is in the last few tokens
        return entry is not None and "```" in text(ids[-6:]) and answer_complete(text(ids), entry)

    outputs = decode(
        lm,
        [r.prompt_ids for r in rows],
        [r.budget for r in rows],
        eos_id,
        pad_id,
        batch_size=gen.batch_size,
        temperature=gen.temperature,
        top_p=gen.top_p,
        seed=[r.seed for r in rows],
        stop_check=stop,
        desc="generate",
    )
    return [text(ids) for ids in outputs]


def end_ids(lm: Any) -> set[int]:
    """Every end-of-sequence id of the model's generation config (chat models often list their end-of-turn)."""
    value = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
    if value is None:
        return set()
    return {int(v) for v in (value if isinstance(value, list | tuple) else [value])}


def _tokenizer(codec: Any, model_dir: Any) -> Any:
    if not isinstance(codec, HFCodec):
        raise OnlyIfError(
            f"--model {model_dir}: code generation needs a Hugging Face tokenizer (this model uses the rewrite "
            "task's character tokenizer)"
        )
    return codec.tokenizer


def _config_max_positions(model_dir: Any) -> int | None:
    from transformers import AutoConfig

    return max_positions(AutoConfig.from_pretrained(model_dir))


class CodeGenActor:
    """A Ray Data callable class: each input row is one decoding batch (JSON rows), each output its texts."""

    def __init__(self, model_dir: str, gen: dict[str, Any], threads: int, device: str) -> None:
        import torch

        torch.set_num_threads(threads)
        self.lm, codec = load_eval_model(model_dir, device)
        self.tokenizer = _tokenizer(codec, model_dir)
        self.gen = GenerationConfig.model_validate(gen)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        texts = []
        for group in batch["group"]:
            rows = [GenRow(**{**r, "stops": tuple(r["stops"])}) for r in json.loads(group)]
            texts.append(json.dumps(decode_rows(self.lm, self.tokenizer, rows, self.gen)))
        return {"texts": texts}


def _decode_on_actors(
    model_dir: Any, rows: list[GenRow], gen: GenerationConfig, device: str, actors: int
) -> list[str]:
    """Each :func:`decode_batches` group of ``rows`` as one Ray Data row, decoded by a pool of model actors."""
    import ray
    import ray.data

    from onlyif.ray_utils import cluster_cpus, init_ray

    init_ray()
    groups = decode_batches([r.prompt_ids for r in rows], [r.budget for r in rows], gen.batch_size)
    items = [{"group": json.dumps([dataclasses.asdict(rows[i]) for i in group])} for group in groups]
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if device == "cuda" and gpus == 0:
        raise OnlyIfError("--device cuda: the Ray cluster has no GPU (use auto or cpu)")
    gpus_per_actor = min(1.0, gpus / actors) if device != "cpu" and gpus > 0 else 0.0
    cpus_per_actor = min(1.0, max(0.1, cluster_cpus() / actors))
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds.context.execution_options.preserve_order = True
    ds = ds.map_batches(
        CodeGenActor,
        fn_constructor_args=(
            str(model_dir),
            gen.to_dict(),
            max(1, int(cpus_per_actor)),
            "cuda" if gpus_per_actor else "cpu",
        ),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
    )
    texts: list[str] = [""] * len(rows)
    for group, out in zip(groups, ds.take_all(), strict=True):
        for i, text in zip(group, json.loads(out["texts"]), strict=True):
            texts[i] = text
    return texts
