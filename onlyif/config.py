"""Config machinery: pydantic dataclass-style models loaded from YAML with ``--set key=value`` overrides.

Every config class derives from :class:`Config` (unknown keys are refused). Loading goes through
:func:`load_config`, which turns every validation problem into one :class:`ConfigError` line naming the key and
what is allowed. Subsystems keep their own config classes next to their code (``onlyif/tasks/config.py`` ...).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from onlyif.errors import ConfigError

C = TypeVar("C", bound="Config")


class _Loader(yaml.SafeLoader):
    """YAML 1.2-style floats: ``3e-3`` and ``1E5`` are numbers, not strings (PyYAML's YAML 1.1 needs a dot)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str):
    """Parse YAML text with :class:`_Loader` (safe, with YAML 1.2 floats)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass


class Config(BaseModel):
    """Base of every onlyif config: unknown keys and loose types (``"1"`` or ``true`` for an int) are errors.

    Cross-field checks raise ``ValueError("key: problem")`` so the error names the key.
    """

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def config_hash(self) -> str:
        """sha256 of the config's canonical JSON (sorted keys, ``json.dumps``'s default separators): the cache key
        of the dataset or mixture it builds, written into its manifest."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    """``d["a"]["b"] = value`` for ``dotted`` = ``a.b`` (missing levels created, the value copied)."""
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = copy.deepcopy(value)


def _int_range(value: Any) -> Any:
    """Accept ``n`` or ``[min, max]`` and normalize to a ``(min, max)`` tuple."""
    if isinstance(value, bool):
        raise ValueError("must be an integer or [min, max]")
    if isinstance(value, int):
        return (value, value)
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        lo, hi = value
        if lo > hi:
            raise ValueError("min must be <= max")
        return (lo, hi)
    raise ValueError("must be an integer or [min, max] of integers")


IntRange = Annotated[tuple[int, int], BeforeValidator(_int_range)]
"""An integer or an inclusive ``[min, max]`` range, stored as ``(min, max)``."""


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and YAML-parsed value."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value (dotted keys for nesting)")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({exc.__class__.__name__})") from None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key=value`` override set (creating nested dicts as needed); a numeric
    part indexes a list (``sources.0.count=100``)."""
    out = copy.deepcopy(data)
    for item in overrides or []:
        path, value = parse_override(item)
        node: Any = out
        for i, part in enumerate(path):
            where = ".".join(path[: i + 1])
            last = i == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {'.'.join(path)}: {where} is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:i])} is not a mapping")
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
    return out


def _error_key(error: dict[str, Any]) -> list[str]:
    """The config keys of a pydantic error's location (validator frames left out)."""
    return [str(p) for p in error["loc"] if not str(p).startswith("function-")]


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: the first problem with its dotted key (and the value given), plus a count of the others."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = _error_key(first)
    msg = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    show_got = first["type"] != "missing" and not isinstance(got, dict)
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif first["type"] == "value_error" and ": " in msg and isinstance(got, dict):
        key, msg = msg.split(": ", 1)  # a cross-field check names its own key
        loc.append(key)
    got_text = f" (got {got!r})" if show_got else ""
    more = f" [+{len(errors) - 1} more problem(s)]" if len(errors) > 1 else ""
    return f"{source}: {'.'.join(loc) or '<root>'}: {msg}{got_text}{more}"


def validate_config(
    cls: type[C], data: dict[str, Any], source: str = "config", overrides: list[str] | None = None
) -> C:
    """Validate a plain dict into ``cls``, raising one-line :class:`ConfigError` on any problem. ``overrides``: the
    ``--set`` items applied to ``data``; a problem at (or under) the key of one is reported as that item's."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        key = ".".join(_error_key(exc.errors(include_url=False)[0]))
        for item in reversed(overrides or []):  # the last --set of a key is the one that holds
            path = item.partition("=")[0].strip()
            if key == path or key.startswith(f"{path}."):
                source = f"--set {item}"
                break
        raise ConfigError(format_validation_error(exc, source)) from None


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is an empty mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = load_yaml(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(cls: type[C], path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> C:
    """Load ``cls`` from a YAML file (or its defaults when ``path`` is None) and apply ``--set`` overrides."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return validate_config(cls, data, str(path) if path is not None else "config", overrides)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically) so the output it produced can be rebuilt."""
    from onlyif.io import write_text_atomic

    write_text_atomic(path, cfg.to_yaml())
