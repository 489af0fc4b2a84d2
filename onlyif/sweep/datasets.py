"""Per-trial datasets (synthetic or real-data mixtures), cached by config hash so repeated points and resumed
sweeps reuse them: in a local (shared) folder, or under an ``s3://…`` ``data_cache`` that every node reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from onlyif.data.mixture_config import MixtureConfig
from onlyif.storage import build_at, cache_root, fetch, is_uri, join, read_manifest
from onlyif.tasks.config import TaskConfig


def ensure_dataset(cfg: TaskConfig, cache: str | Path, progress: bool = False) -> tuple[Path, dict[str, Any]]:
    """The dataset of ``cfg`` under ``cache/<hash>``: generated once (under a file lock), then reused.

    Returns the dataset folder and its manifest. Concurrent trials asking for the same config wait for the
    first one instead of generating twice; a half-written dataset never appears (``generate_dataset`` writes
    into a temp folder and renames it).
    """
    from onlyif.data.generate import generate_dataset

    if is_uri(cache):
        digest = cfg.config_hash()
        return _remote_cached(
            join(cache, digest[:16]),
            lambda m: m.get("config_sha256") == digest,
            lambda d: generate_dataset(cfg, d, progress=progress, this_node_only=True),
        )
    root = Path(cache)
    root.mkdir(parents=True, exist_ok=True)
    key = cfg.config_hash()[:16]
    out = root / key
    with FileLock(str(root / f".{key}.lock")):
        manifest_file = out / "manifest.json"
        if manifest_file.is_file():
            return out, json.loads(manifest_file.read_text())
        manifest = generate_dataset(cfg, out, overwrite=True, progress=progress)
    return out, manifest


def ensure_mixture(cfg: MixtureConfig, cache: str | Path) -> tuple[Path, dict[str, Any]]:
    """The mixture of ``cfg`` under ``cache/<hash>``, built once (under a file lock, like :func:`ensure_dataset`)."""
    from onlyif.data.mixture import build_mixture, cached_mixture, sources_unchanged

    if is_uri(cache):
        digest = cfg.config_hash()

        def current(manifest: dict[str, Any]) -> bool:  # as cached_mixture: same config, same source files
            return manifest.get("config_hash") == digest and sources_unchanged(cfg, manifest)

        return _remote_cached(join(cache, digest[:16]), current, lambda d: build_mixture(cfg, d, progress=False))
    root = Path(cache)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{cfg.config_hash()[:16]}.lock")):
        return cached_mixture(cfg, root, progress=False)


def _remote_cached(
    uri: str, current: Callable[[dict[str, Any]], bool], build: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    """The finished folder at ``uri`` when its manifest is ``current``, else built here and published there (manifest
    last); returns this node's copy and the manifest. Trials of one node build a key once (a file lock); trials on
    two nodes may both build it — the same bytes, published twice."""
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    (cache_root() / "remote").mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_root() / "remote" / f".build-{key}.lock")):
        found = read_manifest(uri, "data_cache")
        if found is not None:
            manifest = json.loads(found)
            if current(manifest):
                return fetch(uri, "data_cache"), manifest
        return build_at(uri, build, overwrite=True, flag="data_cache")
