"""Output and dataset folders at ``s3://…``-style URIs (anything ``pyarrow.fs`` opens), so that a multi-node run needs
no shared POSIX mount.

Writing: a folder is built as usual into a node-local staging folder, then published to the URI with ``manifest.json``
copied last — a remote folder without ``manifest.json`` is never taken as a result. Reading: the folder is downloaded
once into a node-local cache (``$ONLYIF_CACHE_DIR``, default ``~/.cache/onlyif``), under a key of the URI and the
bytes of its manifest, so a rebuilt folder is downloaded again and an unchanged one never twice. Credentials and the
endpoint come from the usual variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_S3``…).
Ray-free.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onlyif.errors import ConfigError, OnlyIfError

MANIFEST = "manifest.json"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(path: Any) -> bool:
    """``True`` for ``scheme://…`` strings (``s3://bucket/prefix``, ``gs://…``, ``file:///…``)."""
    return isinstance(path, str) and bool(_URI.match(path))


def join(uri: str, *names: str) -> str:
    return "/".join([uri.rstrip("/"), *names])


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__


def resolve(uri: str, flag: str) -> tuple[Any, str]:
    """The ``pyarrow.fs`` filesystem and path of ``uri``; one clear error for a bad URI, an unknown scheme, a missing
    bucket or unusable credentials."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except pa.ArrowInvalid as exc:
        raise ConfigError(f"{flag} {uri}: not a storage URI pyarrow can open ({_line(exc)})") from None
    except (OSError, pa.ArrowException) as exc:
        raise OnlyIfError(f"{flag} {uri}: cannot open its filesystem ({_line(exc)})") from None
    path = path.rstrip("/")
    if fs.type_name in ("s3", "gcs"):
        bucket = path.split("/", 1)[0]
        if not bucket or bucket == path:
            raise ConfigError(f"{flag} {uri}: give a folder inside a bucket ({fs.type_name}://BUCKET/PREFIX)")
        info = _call(flag, uri, fs.get_file_info, bucket)
        if info.type == pafs.FileType.NotFound:
            raise OnlyIfError(f"{flag} {uri}: bucket {bucket!r} not found (or not visible with these credentials)")
    return fs, path


def _call(flag: str, uri: str, fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` with storage errors (unreachable endpoint, denied access) turned into one line."""
    import pyarrow as pa

    try:
        return fn(*args)
    except (OSError, pa.ArrowException) as exc:
        raise OnlyIfError(f"{flag} {uri}: {_line(exc)}") from None


def _entries(fs: Any, path: str, flag: str, uri: str) -> list:
    import pyarrow.fs as pafs

    info = _call(flag, uri, fs.get_file_info, path)
    if info.type == pafs.FileType.File:
        raise OnlyIfError(f"{flag} {uri}: exists and is a file, not a folder")
    return _call(flag, uri, fs.get_file_info, pafs.FileSelector(path, allow_not_found=True))


def check_target(uri: str, overwrite: bool, flag: str = "--out") -> None:
    """Refuse a non-empty ``uri`` unless ``overwrite``, and one where nothing can be written (checked by writing and
    deleting an empty object), as :func:`onlyif.io.ensure_writable_dir` does locally: before the work, not after."""
    fs, path = resolve(uri, flag)
    if _entries(fs, path, flag, uri) and not overwrite:
        raise OnlyIfError(f"{flag} {uri}: folder exists and is not empty (pass --overwrite to replace it)")
    probe = f"{path}/.onlyif-probe-{uuid.uuid4().hex[:8]}"

    def write_and_delete() -> None:
        fs.create_dir(path)  # what publishing does first
        with fs.open_output_stream(probe) as f:
            f.write(b"")
        fs.delete_file(probe)

    _call(flag, uri, write_and_delete)


def publish(local: Path, uri: str, overwrite: bool, flag: str = "--out") -> None:
    """Copy the folder ``local`` to ``uri``, ``manifest.json`` last. With ``overwrite`` the old manifest goes first,
    then the old contents, so no reader ever sees an old manifest beside new parts."""
    import pyarrow.fs as pafs

    fs, path = resolve(uri, flag)
    if _entries(fs, path, flag, uri):
        if not overwrite:
            raise OnlyIfError(f"{flag} {uri}: folder exists and is not empty (pass --overwrite to replace it)")
        if _call(flag, uri, fs.get_file_info, f"{path}/{MANIFEST}").type == pafs.FileType.File:
            _call(flag, uri, fs.delete_file, f"{path}/{MANIFEST}")
        _call(flag, uri, lambda: fs.delete_dir_contents(path, missing_dir_ok=True))
    manifest = local / MANIFEST
    aside = local.with_name(f".{local.name}.{MANIFEST}")
    os.replace(manifest, aside)  # everything but the manifest first
    try:
        local_fs = pafs.LocalFileSystem()
        _call(flag, uri, pafs.copy_files, str(local), path, local_fs, fs)
        _call(flag, uri, pafs.copy_files, str(aside), f"{path}/{MANIFEST}", local_fs, fs)
    finally:
        os.replace(aside, manifest)


def read_manifest(uri: str, flag: str) -> bytes | None:
    """The bytes of ``uri/manifest.json``, or ``None`` when there is none (nothing finished there)."""
    import pyarrow.fs as pafs

    fs, path = resolve(uri, flag)
    if _call(flag, uri, fs.get_file_info, f"{path}/{MANIFEST}").type != pafs.FileType.File:
        return None
    with _call(flag, uri, fs.open_input_stream, f"{path}/{MANIFEST}") as f:
        return f.read()


def cache_root() -> Path:
    """This node's cache of downloaded folders: ``$ONLYIF_CACHE_DIR`` or ``~/.cache/onlyif``."""
    return Path(os.environ.get("ONLYIF_CACHE_DIR") or Path.home() / ".cache" / "onlyif")


def _cache_slot(uri: str, manifest: bytes) -> Path:
    key = hashlib.sha256(uri.rstrip("/").encode() + b"\n" + manifest).hexdigest()[:16]
    return cache_root() / "remote" / key


def fetch(uri: str, flag: str = "--data") -> Path:
    """A node-local copy of the finished folder at ``uri`` (downloaded once per manifest, under a file lock)."""
    import pyarrow.fs as pafs
    from filelock import FileLock

    from onlyif.io import atomic_dir

    manifest = read_manifest(uri, flag)
    if manifest is None:
        raise OnlyIfError(f"{flag} {uri}: no {MANIFEST} there (not a finished onlyif dataset, or still being written)")
    slot = _cache_slot(uri, manifest)
    slot.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(slot.with_name(f".{slot.name}.lock"))):
        if (slot / MANIFEST).is_file() and (slot / MANIFEST).read_bytes() == manifest:
            return slot
        fs, path = resolve(uri, flag)
        with atomic_dir(slot, overwrite=True) as tmp:
            _call(flag, uri, pafs.copy_files, path, str(tmp), fs, pafs.LocalFileSystem())
            if (tmp / MANIFEST).read_bytes() != manifest or read_manifest(uri, flag) != manifest:
                raise OnlyIfError(f"{flag} {uri}: the folder changed while it was downloaded; try again")
    return slot


def local_path(path: str | os.PathLike, flag: str = "--data") -> Path:
    """``path`` itself (absolute) for a local folder, the node-local copy of a URI (see :func:`fetch`)."""
    return fetch(path, flag) if is_uri(path) else Path(path).resolve()


def build_at(
    uri: str, build: Callable[[Path], dict[str, Any]], overwrite: bool = False, flag: str = "--out"
) -> tuple[Path, dict[str, Any]]:
    """Check ``uri`` (refusals before any work), run ``build(folder)`` into a node-local staging folder, publish it
    to ``uri``; returns the node-local copy (kept in the cache, so reading ``uri`` here downloads nothing) and
    ``build``'s manifest."""
    check_target(uri, overwrite, flag)
    stage = Path(tempfile.mkdtemp(prefix="onlyif-stage-"))
    try:
        out = stage / "out"
        manifest = build(out)
        publish(out, uri, overwrite, flag)
        slot = _cache_slot(uri, (out / MANIFEST).read_bytes())
        slot.parent.mkdir(parents=True, exist_ok=True)
        if not (slot / MANIFEST).is_file():
            tmp = slot.with_name(f".{slot.name}.tmp-{uuid.uuid4().hex[:8]}")
            shutil.move(str(out), tmp)
            try:
                os.replace(tmp, slot)
            except OSError:  # another process placed the same copy meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
        return slot, manifest
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def is_folder(uri: str, flag: str) -> bool:
    """Whether anything is stored under ``uri/`` (object stores have no empty folders)."""
    import pyarrow.fs as pafs

    fs, path = resolve(uri, flag)
    return _call(flag, uri, fs.get_file_info, path).type == pafs.FileType.Directory


def is_empty(uri: str, flag: str) -> bool:
    """Nothing under ``uri/`` (a missing prefix is empty)."""
    fs, path = resolve(uri, flag)
    return not _entries(fs, path, flag, uri)


def clear(uri: str, flag: str) -> None:
    """Delete everything under ``uri/``."""
    fs, path = resolve(uri, flag)
    _call(flag, uri, lambda: fs.delete_dir_contents(path, missing_dir_ok=True))


def read_file(uri: str, name: str, flag: str) -> bytes | None:
    """The bytes of ``uri/name``, or ``None`` when it is not there."""
    import pyarrow.fs as pafs

    fs, path = resolve(uri, flag)
    if _call(flag, uri, fs.get_file_info, f"{path}/{name}").type != pafs.FileType.File:
        return None
    with _call(flag, uri, fs.open_input_stream, f"{path}/{name}") as f:
        return f.read()


def upload(local: Path, uri: str, flag: str, names: list[str] | None = None) -> None:
    """Copy the folder ``local`` under ``uri/`` (objects replaced in place), or only its entries ``names``."""
    import pyarrow.fs as pafs

    fs, path = resolve(uri, flag)
    local_fs = pafs.LocalFileSystem()
    for name in names if names is not None else [None]:
        src, dst = (str(local), path) if name is None else (str(local / name), f"{path}/{name}")
        _call(flag, uri, pafs.copy_files, src, dst, local_fs, fs)


def download(uri: str, local: Path, flag: str, files_only: bool = False) -> None:
    """Copy what is under ``uri/`` into the folder ``local``; ``files_only``: its files, not its sub-folders."""
    import pyarrow.fs as pafs

    fs, path = resolve(uri, flag)
    local.mkdir(parents=True, exist_ok=True)
    if not files_only:
        _call(flag, uri, pafs.copy_files, path, str(local), fs, pafs.LocalFileSystem())
        return
    for info in _entries(fs, path, flag, uri):
        if info.type == pafs.FileType.File:
            with _call(flag, uri, fs.open_input_stream, info.path) as f:
                (local / info.base_name).write_bytes(f.read())
