"""Atomic file and directory writes, content hashes and version stamps for manifests."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from onlyif.errors import OnlyIfError


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def ensure_writable_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing non-empty ``out`` unless ``overwrite``, and a place where no folder can be made (checked
    by making and removing one in the nearest existing parent, so a run fails before its work, not after)."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise OnlyIfError(f"--out {p}: exists and is not a directory")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise OnlyIfError(f"--out {p}: directory exists and is not empty (pass --overwrite to replace it)")
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    probe = parent / f".onlyif-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise OnlyIfError(f"--out {p}: cannot create a folder in {parent} ({exc.strerror or exc})") from None
    return p


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``out``; on success it replaces ``out``, on failure it is removed.

    A failed or interrupted run therefore never leaves a half-written ``out``.
    """
    final = ensure_writable_dir(out, overwrite)
    remove_stale_temps(final)
    tmp = final.with_name(f".{final.name}.tmp-{_owner()}-{uuid.uuid4().hex[:8]}")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise OnlyIfError(f"--out {final}: cannot create it ({exc.strerror or exc})") from None
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{_owner()}-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _owner() -> str:
    """``HOST-PID`` of this process, part of the temp folders' names so that a later run can tell stale ones."""
    return f"{socket.gethostname()}-{os.getpid()}"


def remove_stale_temps(final: Path) -> list[Path]:
    """Delete the ``.NAME.tmp-HOST-PID-*`` / ``.NAME.old-HOST-PID-*`` folders beside ``final`` that a killed run of
    this host left (its PID no longer runs); return them. Folders of live processes, of other hosts or without an
    owner in their name are left alone (and never read: nothing looks at them but this function), and so is an
    ``.old-`` folder while ``final`` is missing: a run killed between its two renames left the previous output
    there."""
    kinds = ("tmp", "old") if final.exists() else ("tmp",)
    return [p for kind in kinds for p in _remove_orphans(final.parent, f".{final.name}.{kind}-")]


@contextlib.contextmanager
def staging_dir(prefix: str) -> Iterator[Path]:
    """A folder ``PREFIX-HOST-PID-*`` in the system's temp dir, removed after use (what a checkpoint is written to
    before Ray Train copies it to the run's storage). Such folders that a killed process of this host left behind —
    a worker SIGKILLed while saving — are removed first."""
    root = Path(tempfile.gettempdir())
    _remove_orphans(root, f"{prefix}-")
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-{_owner()}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _remove_orphans(parent: Path, prefix: str) -> list[Path]:
    """Delete the folders ``PREFIX`` + ``HOST-PID-*`` in ``parent`` whose process (of this host) no longer runs."""
    host = socket.gethostname()
    removed = []
    for p in parent.glob(glob.escape(prefix) + "*"):
        owner, _, pid = p.name[len(prefix) :].rpartition("-")[0].rpartition("-")
        if owner != host or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line (UTF-8, keys sorted): the layout of every jsonl file onlyif writes."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


def absolute(path: Any, base: str | os.PathLike) -> Any:
    """``path`` joined to ``base`` when it is a relative path string; anything else (absolute, a ``scheme://`` URI,
    None) unchanged."""
    relative = isinstance(path, str) and not os.path.isabs(path) and "://" not in path
    return os.path.join(base, path) if relative else path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of onlyif and the main libraries, for manifests."""
    names = names or ("onlyif", "ray", "numpy", "pyarrow", "torch", "deepspeed", "transformers", "datasets", "mlflow")
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
