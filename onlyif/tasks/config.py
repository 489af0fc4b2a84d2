"""Config of the synthetic rewrite task (design.md §1): rules ``x → y``, inputs, budget, families, splits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from onlyif.config import Config, IntRange

Family = Literal["random", "repeated", "periodic", "mirrored"]


class FamilyConfig(Config):
    """One semantic-domain rule family in the training mixture."""

    name: Family = "random"
    """random: uniform letters; repeated: runs of length k (aaabbb); periodic: period k (abcabc);
    mirrored: a k-block then its reverse, repeated (abccba)."""
    share: float = Field(1.0, gt=0.0, le=1.0)
    """Share of the instructions drawn from this family (shares must sum to 1)."""
    k: IntRange | None = None
    """k (or [min, max]) for structured families; must be unset for ``random``."""

    @model_validator(mode="after")
    def _check_k(self) -> FamilyConfig:
        if self.name == "random" and self.k is not None:
            raise ValueError("k: must be unset for family 'random'")
        if self.name != "random":
            if self.k is None:
                raise ValueError(f"k: required for family {self.name!r} (an integer or [min, max], >= 1)")
            if self.k[0] < 1:
                raise ValueError(f"k: must be >= 1 (got {list(self.k)})")
        return self


class DomainTestConfig(Config):
    """A held-out domain: families (or k ranges) never used in training, tested as ``test_domain``."""

    families: list[FamilyConfig] = Field(min_length=1)
    examples: int = Field(1000, ge=1)
    """Number of ``test_domain`` examples (one new rule per example, up to ``instructions``)."""
    instructions: int | None = Field(None, ge=1)
    """Distinct held-out-domain rules (default: min(examples, 10 000))."""


class TaskConfig(Config):
    """The rewrite-task dataset: what ``onlyif generate`` builds."""

    seed: int = Field(0, ge=0)
    alphabet_size: int = Field(8, ge=2, le=26)
    """Letters a, b, c, ... used in rules and inputs."""
    input_length: IntRange = (50, 50)
    """Length of the input string ξ (an integer or [min, max])."""
    pattern_length: IntRange = (20, 20)
    """Length of x and of y (an integer or [min, max]; x and y lengths are drawn independently)."""
    noop_share: float = Field(0.2, ge=0.0, le=1.0)
    """Share of examples whose input does not contain x (output = input)."""
    instructions: int = Field(1000, ge=1)
    """I: distinct training rules."""
    budget: int | None = Field(None, ge=1)
    """Total training examples. Default: instructions × examples_per_instruction."""
    examples_per_instruction: int | None = Field(None, ge=1)
    """S: examples per rule (uniform). Give either budget or examples_per_instruction (or both, consistent)."""
    frequency_alpha: float | None = Field(None, gt=0.0, le=100.0)
    """Power-law skew of rule frequencies, density α·x^(α−1) on (0, 1] mapped to rule ranks; null = uniform."""
    families: list[FamilyConfig] = Field(default_factory=lambda: [FamilyConfig()], min_length=1)
    test_seen: int = Field(1000, ge=0)
    """Examples of new inputs for training rules."""
    test_unseen: int = Field(1000, ge=0)
    """Examples built from rules never in train (same families and lengths)."""
    test_unseen_instructions: int | None = Field(None, ge=1)
    """Distinct unseen rules (default: min(test_unseen, 10 000))."""
    test_domain: DomainTestConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        if self.budget is None and self.examples_per_instruction is None:
            raise ValueError("budget: give budget or examples_per_instruction")
        if self.budget is not None and self.examples_per_instruction is not None:
            if self.budget != self.instructions * self.examples_per_instruction:
                raise ValueError(
                    f"budget: must equal instructions × examples_per_instruction "
                    f"= {self.instructions * self.examples_per_instruction} when both are given (got {self.budget})"
                )
        if self.train_size < self.instructions:
            raise ValueError(
                f"budget: must be >= instructions ({self.instructions}) so every rule appears at least once "
                f"(got {self.train_size})"
            )
        if self.pattern_length[0] < 1:
            raise ValueError(f"pattern_length: must be >= 1 (got {list(self.pattern_length)})")
        if self.pattern_length[1] > self.input_length[0]:
            raise ValueError(
                f"pattern_length: max must be <= the shortest input_length {self.input_length[0]} "
                f"(got {list(self.pattern_length)})"
            )
        for where, fams in (("families", self.families), ("test_domain.families", self._domain_families())):
            for f in fams:
                if f.k is not None and f.k[1] > self.pattern_length[1]:
                    raise ValueError(
                        f"{where}: {f.name} k={_fmt(f.k)} exceeds the longest pattern_length {self.pattern_length[1]}"
                    )
        total = sum(f.share for f in self.families)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"families: shares must sum to 1 (got {total:g})")
        names = [(f.name, f.k) for f in self.families]
        if len(set(names)) != len(names):
            raise ValueError("families: the same family and k range is listed twice")
        if self.test_domain is not None:
            for held in self.test_domain.families:
                for f in self.families:
                    if f.name == held.name and _overlaps(f.k, held.k):
                        raise ValueError(
                            f"test_domain.families: {held.name} k={_fmt(held.k)} overlaps training family "
                            f"{f.name} k={_fmt(f.k)}; a held-out domain must be disjoint from training"
                        )
        return self

    def _domain_families(self) -> list[FamilyConfig]:
        return [] if self.test_domain is None else self.test_domain.families

    @property
    def train_size(self) -> int:
        """Number of training examples (the budget)."""
        if self.budget is not None:
            return self.budget
        return self.instructions * self.examples_per_instruction  # type: ignore[operator]


def _overlaps(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a[0] <= b[1] and b[0] <= a[1]


def _fmt(k: tuple[int, int] | None) -> str:
    return "-" if k is None else (str(k[0]) if k[0] == k[1] else f"[{k[0]}, {k[1]}]")
