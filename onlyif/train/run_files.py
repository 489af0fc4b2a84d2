"""Where a training run's files live: the run folder, or for an ``s3://…`` run this node's staging folder
(:func:`stage_dir`) uploaded to the run's URI (:func:`upload_files`, :func:`upload_results`); and the final
checkpoint's HF export and eval files published into ``RUN_DIR/model`` and ``RUN_DIR/eval`` (:func:`publish`,
:func:`publish_remote`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from onlyif.errors import OnlyIfError
from onlyif.train.loop import HF_EXPORT

RAY_RUN_NAME = "ray_train"
"""Ray Train's run folder inside ``RUN_DIR`` (checkpoints)."""


def stage_dir(uri: str) -> Path:
    """This node's staging folder of the run at ``uri`` (under :func:`onlyif.storage.cache_root`)."""
    import hashlib

    from onlyif.storage import cache_root

    return cache_root() / "runs" / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]


def upload_files(out: Path, uri: str) -> None:
    """The staging folder's files (config.yaml, run.json, metrics.jsonl, MLflow ids and store) to ``uri``."""
    from onlyif.storage import upload

    upload(out, uri, "--out", sorted(p.name for p in out.iterdir() if p.is_file()))


def upload_results(out: Path, uri: str) -> None:
    """``model/`` and ``eval/`` (replacing what an earlier attempt left there), then the files (run.json last
    holds the final metrics)."""
    from onlyif.storage import clear, join, upload

    folders = [name for name in ("model", "eval") if (out / name).is_dir()]
    for name in folders:
        clear(join(uri, name), "--out")
    upload(out, uri, "--out", folders)
    upload_files(out, uri)


def publish_remote(checkpoint: Any, out: Path, uri: str) -> tuple[Path, str]:
    """Download the final checkpoint's HF export and eval files (not its engine states) from storage into
    ``out/model`` and ``out/eval``; returns the model folder and the checkpoint's URI."""
    import pyarrow.fs as pafs

    from onlyif.io import atomic_dir
    from onlyif.storage import join

    fs = checkpoint.filesystem if checkpoint is not None else None
    base = checkpoint.path.rstrip("/") if checkpoint is not None else ""
    if fs is None or fs.get_file_info(f"{base}/{HF_EXPORT}/config.json").type != pafs.FileType.File:
        raise OnlyIfError(f"{uri}: training finished without a final checkpoint holding the exported model")
    local = pafs.LocalFileSystem()
    with atomic_dir(out / "model", overwrite=True) as tmp:
        pafs.copy_files(f"{base}/{HF_EXPORT}", str(tmp), fs, local)
    if fs.get_file_info(f"{base}/eval").type == pafs.FileType.Directory:
        with atomic_dir(out / "eval", overwrite=True) as tmp:
            pafs.copy_files(f"{base}/eval", str(tmp), fs, local)
    return out / "model", join(uri, RAY_RUN_NAME, base.rsplit("/", 1)[-1])


def publish(ckpt: Path, out: Path) -> Path:
    """Copy the final checkpoint's HF export to ``RUN_DIR/model`` and its eval files to ``RUN_DIR/eval``."""
    from onlyif.io import atomic_dir

    with atomic_dir(out / "model", overwrite=True) as tmp:
        shutil.copytree(ckpt / HF_EXPORT, tmp, dirs_exist_ok=True)
    if (ckpt / "eval").is_dir():
        with atomic_dir(out / "eval", overwrite=True) as tmp:
            shutil.copytree(ckpt / "eval", tmp, dirs_exist_ok=True)
    return out / "model"
