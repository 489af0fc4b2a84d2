"""MLflow clients on tracking stores that may be new.

MLflow builds a new sqlite store by running its whole chain of schema migrations: 1.2–1.3 s of CPU each time (a
sweep, every ``onlyif train`` run, every evaluation logged to a new file). The empty store that chain produces is
the same for one MLflow version, so it is built once per version into this node's cache
(:func:`onlyif.storage.cache_root`, folder ``mlflow/``) and a new store starts as a copy of it; MLflow then only
checks its schema revision and adds its ``Default`` experiment, as on any new store. When the copy cannot be made
(a read-only cache, a filesystem without hard links, an MLflow whose internals moved), MLflow builds the store
itself as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

SQLITE = "sqlite:///"
logger = logging.getLogger(__name__)


def open_client(uri: str) -> Any:
    """``MlflowClient(uri)``, its store seeded first when ``uri`` names a sqlite file that does not exist yet."""
    from mlflow import MlflowClient

    seed_sqlite_store(uri)
    return MlflowClient(uri)


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI (relative paths from the working directory, as SQLAlchemy
    reads them); ``None`` for other stores, in-memory databases and URIs with query options."""
    if not uri.startswith(SQLITE):
        return None
    path = uri.removeprefix(SQLITE)
    if not path or path.startswith(":memory:") or "?" in path:
        return None
    return Path(path)


def artifacts_beside(uri: str) -> str | None:
    """Where a new experiment of a sqlite store keeps its artifacts: ``mlartifacts/`` beside the database, not
    MLflow's default ``./mlruns`` in whatever the working directory is. ``None`` (the store's default) otherwise."""
    path = sqlite_file(uri)
    return (path.resolve().parent / "mlartifacts").as_uri() if path is not None else None


def seed_sqlite_store(uri: str) -> bool:
    """Create the sqlite store of ``uri`` as a copy of this MLflow version's empty store if its file does not exist
    and its folder does; a store that exists (or appears meanwhile) is never touched. True when seeded."""
    path = sqlite_file(uri)
    if path is None or path.exists() or not path.parent.is_dir():
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(empty_store(), tmp)
        os.link(tmp, path)  # fails if the store exists by now: another process created it, keep theirs
        return True
    except Exception as exc:  # MLflow builds the store itself
        logger.debug("MLflow store %s not seeded: %s", path, exc)
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def empty_store() -> Path:
    """This node's empty sqlite store of the installed MLflow (built on first use, with MLflow's own table creation
    and migrations, into a temporary file renamed into place)."""
    import mlflow
    import sqlalchemy

    from onlyif.storage import cache_root

    root = cache_root() / "mlflow"
    path = root / f"empty-mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}.db"
    if path.is_file():
        return path
    from mlflow.store.db.utils import _initialize_tables  # what MLflow runs on an empty database

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{path.name}.{os.getpid()}.tmp"
    engine = sqlalchemy.create_engine(f"{SQLITE}{tmp}")
    try:
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path
