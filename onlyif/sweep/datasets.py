"""Per-trial datasets (synthetic or real-data mixtures), cached by config hash so repeated points and resumed
sweeps reuse them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from filelock import FileLock

from onlyif.data.mixture_config import MixtureConfig
from onlyif.tasks.config import TaskConfig


def ensure_dataset(cfg: TaskConfig, cache: str | Path, progress: bool = False) -> tuple[Path, dict[str, Any]]:
    """The dataset of ``cfg`` under ``cache/<hash>``: generated once (under a file lock), then reused.

    Returns the dataset folder and its manifest. Concurrent trials asking for the same config wait for the
    first one instead of generating twice; a half-written dataset never appears (``generate_dataset`` writes
    into a temp folder and renames it).
    """
    from onlyif.data.generate import config_hash, generate_dataset

    root = Path(cache)
    root.mkdir(parents=True, exist_ok=True)
    key = config_hash(cfg)[:16]
    out = root / key
    with FileLock(str(root / f".{key}.lock")):
        manifest_file = out / "manifest.json"
        if manifest_file.is_file():
            return out, json.loads(manifest_file.read_text())
        manifest = generate_dataset(cfg, out, overwrite=True, progress=progress)
    return out, manifest


def ensure_mixture(cfg: MixtureConfig, cache: str | Path) -> tuple[Path, dict[str, Any]]:
    """The mixture of ``cfg`` under ``cache/<hash>``, built once (under a file lock, like :func:`ensure_dataset`)."""
    from onlyif.data.mixture import cached_mixture

    root = Path(cache)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{cfg.config_hash()[:16]}.lock")):
        return cached_mixture(cfg, root, progress=False)
