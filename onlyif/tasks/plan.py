"""The dataset plan: which rules each split has and which rule and no-op flag each example gets (pure).

The plan is built once (in the driver) from the config and seed; examples are then generated in fixed-size
chunks, each from its own seeded stream (:mod:`onlyif.tasks.examples`), so the data does not depend on how
chunks are spread over workers or blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from onlyif.tasks.config import FamilyConfig, TaskConfig
from onlyif.tasks.frequency import examples_per_rule
from onlyif.tasks.rules import RuleTable, sample_rules

CHUNK_ROWS = 1 << 16
"""Rows per generation chunk and per parquet part file. Part of the data format: changing it changes the data."""

SPLITS = ("train", "test_seen", "test_unseen", "test_domain")
_STREAM = {name: i for i, name in enumerate(("rules", "counts", *SPLITS))}


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream for ``(seed, *stream)``."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


@dataclass
class SplitPlan:
    """One split: its rules, the global id of each rule, and per example the rule index and no-op flag."""

    name: str
    rules: RuleTable
    rule_ids: np.ndarray  # int64 [R]
    assign: np.ndarray  # int32 [N], index into rules
    noop: np.ndarray  # bool [N]
    input_length: tuple[int, int]
    alphabet_size: int

    def __len__(self) -> int:
        return len(self.assign)

    def chunks(self) -> list[tuple[int, int, int]]:
        """``(chunk_index, start, stop)`` of each generation chunk."""
        n = len(self)
        return [(i, s, min(s + CHUNK_ROWS, n)) for i, s in enumerate(range(0, n, CHUNK_ROWS))]


@dataclass
class DatasetPlan:
    seed: int
    splits: dict[str, SplitPlan] = field(default_factory=dict)


def _allocate(total: int, shares: list[float]) -> list[int]:
    """Split ``total`` by ``shares`` (largest remainder), summing exactly to ``total``."""
    raw = np.asarray(shares, dtype=np.float64) / sum(shares) * total
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: total - out.sum()]] += 1
    return out.tolist()


def _rules_for(
    split: str, rng: np.random.Generator, families: list[FamilyConfig], n: int, cfg: TaskConfig, taken: set[str]
) -> RuleTable:
    counts = _allocate(n, [f.share for f in families])
    tables = [
        sample_rules(rng, fam, c, cfg.alphabet_size, cfg.pattern_length, taken, split=split)
        for fam, c in zip(families, counts, strict=True)
        if c > 0
    ]
    return RuleTable.concat(tables, cfg.pattern_length[1])


def _noop_flags(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    flags = np.zeros(n, dtype=bool)
    flags[rng.permutation(n)[: round(share * n)]] = True
    return flags


def _spread(rng: np.random.Generator, n_rules: int, n_examples: int) -> np.ndarray:
    """Rule index per example, as even as possible over rules, in random order."""
    if n_examples == 0:
        return np.zeros(0, dtype=np.int32)
    counts = examples_per_rule(n_rules, max(n_examples, n_rules))[:n_rules]
    assign = np.repeat(np.arange(n_rules, dtype=np.int32), counts)[:n_examples]
    return rng.permutation(assign)


def build_plan(cfg: TaskConfig) -> DatasetPlan:
    """Draw all rules (distinct across splits) and the per-example assignment of every split."""
    seed = cfg.seed
    rule_rng = rng_for(seed, _STREAM["rules"])
    taken: set[str] = set()
    train_rules = _rules_for("train", rule_rng, cfg.families, cfg.instructions, cfg, taken)
    split_rules = {"train": train_rules, "test_seen": train_rules}
    if cfg.test_unseen > 0:
        n_unseen = cfg.test_unseen_instructions or min(cfg.test_unseen, 10_000)
        split_rules["test_unseen"] = _rules_for("test_unseen", rule_rng, cfg.families, n_unseen, cfg, taken)
    if cfg.test_domain is not None:
        dom = cfg.test_domain
        n_dom = dom.instructions or min(dom.examples, 10_000)
        split_rules["test_domain"] = _rules_for("test_domain", rule_rng, dom.families, n_dom, cfg, taken)

    plan = DatasetPlan(seed=seed)
    next_id = 0
    ids: dict[str, np.ndarray] = {}
    for name in ("train", "test_unseen", "test_domain"):
        if name in split_rules:
            ids[name] = np.arange(next_id, next_id + len(split_rules[name]), dtype=np.int64)
            next_id += len(split_rules[name])
    ids["test_seen"] = ids["train"]

    counts = examples_per_rule(cfg.instructions, cfg.train_size, cfg.frequency_alpha, rng_for(seed, _STREAM["counts"]))
    sizes = {
        "train": cfg.train_size,
        "test_seen": cfg.test_seen,
        "test_unseen": cfg.test_unseen,
        "test_domain": cfg.test_domain.examples if cfg.test_domain else 0,
    }
    for name, rules in split_rules.items():
        rng = rng_for(seed, _STREAM[name])
        if name == "train":
            assign = rng.permutation(np.repeat(np.arange(len(rules), dtype=np.int32), counts))
        elif name == "test_seen":
            assign = rng.integers(0, len(rules), sizes[name]).astype(np.int32)
        else:
            assign = _spread(rng, len(rules), sizes[name])
        if len(assign) == 0:
            continue
        plan.splits[name] = SplitPlan(
            name=name,
            rules=rules,
            rule_ids=ids[name],
            assign=assign,
            noop=_noop_flags(rng, len(assign), cfg.noop_share),
            input_length=cfg.input_length,
            alphabet_size=cfg.alphabet_size,
        )
    _assert_disjoint(plan)
    return plan


def _assert_disjoint(plan: DatasetPlan) -> None:
    """Rules of train, test_unseen and test_domain never overlap (by construction; checked anyway)."""
    keys = {n: set(plan.splits[n].rules.keys()) for n in ("train", "test_unseen", "test_domain") if n in plan.splits}
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = keys[a] & keys[b]
            if common:
                raise AssertionError(f"splits {a} and {b} share {len(common)} rules, e.g. {next(iter(common))}")
