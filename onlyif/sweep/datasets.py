"""Per-trial datasets, cached by task-config hash so repeated points and resumed sweeps reuse them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from filelock import FileLock

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
