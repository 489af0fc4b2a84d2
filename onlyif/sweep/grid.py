"""Expanding a sweep config into concrete, validated grid points (pure: no Ray)."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onlyif.config import set_dotted, validate_config
from onlyif.data.mixture_config import mixture_point
from onlyif.errors import ConfigError
from onlyif.sweep.config import SweepConfig

if TYPE_CHECKING:
    from onlyif.data.mixture_config import MixtureConfig


@dataclass(frozen=True)
class Point:
    """One trial's configuration: full task and train dicts, plus the grid values that distinguish it."""

    id: str
    """Readable, unique within the sweep, e.g. ``I=100,B=20000,seed=0``."""
    labels: dict[str, Any]
    """The grid values of this point (``instructions``, ``budget``, ``examples_per_instruction``, ``seed`` and
    every ``axes`` key), for tables and plots."""
    task: dict[str, Any]
    train: dict[str, Any]
    skip_reason: str | None = field(default=None, compare=False)
    """Why this point cannot run (an invalid combination); ``None`` for a valid point."""
    mixture: dict[str, Any] | None = None
    """The point's real-data mixture config (mixture sweeps; ``task`` is then empty)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "labels": self.labels, "task": self.task, "train": self.train}
        return out | ({"mixture": self.mixture} if self.mixture is not None else {})


_SHORT = {"instructions": "I", "budget": "B", "examples_per_instruction": "S", "seed": "seed"}


def _label_text(key: str, value: Any) -> str:
    name = _SHORT.get(key, key.split(".", 1)[-1])
    if isinstance(value, dict) and all(isinstance(v, int | float) for v in value.values()):
        return f"{name}=" + "/".join(f"{k}:{v:g}" for k, v in value.items())
    if isinstance(value, list | dict):
        value = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:6]
    return f"{name}={value}"


def _combinations(axes: list[tuple[str, list[Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(point id, labels) for every combination of the axes' values, in order; duplicate ids are refused."""
    keys = [k for k, _ in axes]
    seen: set[str] = set()
    for combo in itertools.product(*(v for _, v in axes)):
        labels = dict(zip(keys, combo, strict=True))
        pid = ",".join(_label_text(k, v) for k, v in labels.items())
        if pid in seen:
            raise ConfigError(f"grid: two points share the id {pid!r} (duplicate values in a grid list?)")
        seen.add(pid)
        yield pid, labels


def _source_shares(cfg: MixtureConfig) -> dict[str, float]:
    """``share.<source>``: each source's share of the rows requested (a numeric label for plots and tables)."""
    requested = cfg.requested()
    total = sum(requested) or 1
    return {f"share.{s.name}": round(n / total, 6) for s, n in zip(cfg.sources, requested, strict=True)}


def expand_grid(cfg: SweepConfig) -> list[Point]:
    """All points of the sweep, in a stable order; invalid combinations carry ``skip_reason``.

    Each point's task and train dicts are validated with the task and train config classes, so a trial never
    starts from a config its own code would refuse.
    """
    from onlyif.tasks.config import TaskConfig
    from onlyif.train.config import TrainConfig

    if cfg.mixture is not None:
        return _expand_mixture_grid(cfg)
    g = cfg.grid
    first: list[tuple[str, list[Any]]] = []
    for name in ("instructions", "budget", "examples_per_instruction"):
        values = getattr(g, name)
        if values is not None:
            first.append((name, values))
    points: list[Point] = []
    for pid, labels in _combinations([*first, *g.axes.items(), ("seed", g.seeds)]):
        task = copy.deepcopy(cfg.task)
        train = copy.deepcopy(cfg.train)
        for key, value in labels.items():
            if key in ("instructions", "budget", "examples_per_instruction"):
                task[key] = value
            elif key == "seed":
                task["seed"] = value
                train["seed"] = value
            elif key.startswith("task."):
                set_dotted(task, key.removeprefix("task."), value)
            else:
                set_dotted(train, key.removeprefix("train."), value)
        if "budget" in labels:  # I × S = budget: S is derived, never taken from the base config
            task.pop("examples_per_instruction", None)
        if "examples_per_instruction" in labels:
            task.pop("budget", None)
        reason = None
        inst, budget = task.get("instructions"), task.get("budget")
        if isinstance(inst, int) and isinstance(budget, int) and budget < inst:
            reason = f"S = budget / I = {budget} / {inst} < 1"
        else:
            try:
                task_cfg = validate_config(TaskConfig, task, source="task")
                train_cfg = validate_config(TrainConfig, train, source="train")
            except ConfigError as exc:
                reason = str(exc)
            else:
                task, train = task_cfg.to_dict(), train_cfg.to_dict()
        full = dict(labels)
        if reason is None:
            full.setdefault("budget", task["budget"] if task.get("budget") is not None else None)
            if full["budget"] is None:
                full["budget"] = task["instructions"] * task["examples_per_instruction"]
            full.setdefault("instructions", task["instructions"])
            full.setdefault("examples_per_instruction", full["budget"] // task["instructions"])
        points.append(Point(id=pid, labels=full, task=task, train=train, skip_reason=reason))
    return points


def _expand_mixture_grid(cfg: SweepConfig) -> list[Point]:
    """Points of a mixture sweep: budget × ``axes`` × seeds, each with its validated mixture and train config."""
    from onlyif.data.mixture_config import MixtureConfig
    from onlyif.train.config import TrainConfig

    g = cfg.grid
    axes = [*([("budget", g.budget)] if g.budget is not None else []), *g.axes.items(), ("seed", g.seeds)]
    points: list[Point] = []
    for pid, labels in _combinations(axes):
        train = copy.deepcopy(cfg.train)
        for key, value in labels.items():
            if key == "seed":
                train["seed"] = value
            elif key.startswith("train."):
                set_dotted(train, key.removeprefix("train."), value)
        mixture = mixture_point(cfg.mixture or {}, labels)
        reason = None
        full = dict(labels)
        try:
            mixture_cfg = validate_config(MixtureConfig, mixture, source="mixture")
            train = validate_config(TrainConfig, train, source="train").to_dict()
        except ConfigError as exc:
            reason = str(exc)
        else:
            mixture = mixture_cfg.to_dict()
            full.setdefault("budget", mixture_cfg.budget)
            full |= _source_shares(mixture_cfg)
        points.append(Point(id=pid, labels=full, task={}, train=train, skip_reason=reason, mixture=mixture))
    return points
