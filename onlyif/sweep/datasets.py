"""Per-trial datasets (synthetic or real-data mixtures), cached by config hash so repeated points and resumed
sweeps reuse them: in a local (shared) folder, or under an ``s3://…`` ``data_cache`` that every node reads."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from onlyif.data.mixture_config import MixtureConfig
from onlyif.storage import build_at, cache_root, fetch, is_uri, join, read_manifest
from onlyif.tasks.config import TaskConfig


def ensure_dataset(cfg: TaskConfig, cache: str | Path, progress: bool = False) -> tuple[Path, dict[str, Any]]:
    """The dataset of ``cfg`` under ``cache/<hash>``: generated once, then reused (:func:`cached`).

    Returns the dataset folder and its manifest. A half-written dataset never appears (``generate_dataset``
    writes into a temp folder and renames it).
    """
    from onlyif.data.generate import generate_dataset

    digest = cfg.config_hash()
    return cached(
        cache,
        digest,
        lambda m: m.get("config_sha256") == digest,
        lambda d: generate_dataset(cfg, d, overwrite=True, progress=progress, this_node_only=is_uri(cache)),
    )


def ensure_mixture(cfg: MixtureConfig, cache: str | Path, progress: bool = False) -> tuple[Path, dict[str, Any]]:
    """The mixture of ``cfg`` under ``cache/<hash>``, built once and rebuilt when its local source files changed
    since (their sha256 in the manifest)."""
    from onlyif.data.mixture import build_mixture, sources_unchanged

    digest = cfg.config_hash()
    return cached(
        cache,
        digest,
        lambda m: m.get("config_hash") == digest and sources_unchanged(cfg, m),
        lambda d: build_mixture(cfg, d, overwrite=True, progress=progress),
    )


def cached(
    cache: str | Path, digest: str, current: Callable[[dict[str, Any]], bool], build: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    """The one cache of built folders (datasets, mixtures): ``cache/<digest[:16]>`` when its manifest is
    ``current``, else built (again) there by ``build(folder)``; returns this node's folder and the manifest.

    Concurrent trials on a node asking for the same folder wait for the first one (a file lock) instead of building
    twice. In an ``s3://…`` cache, every node reads the published folder (:func:`_remote_cached`).
    """
    if is_uri(cache):
        return _remote_cached(join(cache, digest[:16]), current, build)
    root = Path(cache)
    root.mkdir(parents=True, exist_ok=True)
    out = root / digest[:16]
    with FileLock(str(root / f".{digest[:16]}.lock")):
        found = out / "manifest.json"
        if found.is_file():
            manifest = json.loads(found.read_text())
            if current(manifest):
                return out, manifest
            logging.getLogger(__name__).warning("%s no longer matches its config or source files; rebuilding", out)
        return out, build(out)


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
