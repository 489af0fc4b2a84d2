"""New sqlite MLflow stores seeded from a cached empty store (``onlyif.mlflow_store``), on real MLflow stores."""

from __future__ import annotations

import sqlite3

import pytest
from mlflow.entities import Metric

from onlyif.mlflow_store import artifacts_beside, empty_store, open_client, seed_sqlite_store, sqlite_file


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def in_cache(cache, monkeypatch):
    monkeypatch.setenv("ONLYIF_CACHE_DIR", str(cache))
    return cache


def _schema(path) -> tuple[dict, list]:
    """The store's tables and indexes, each as its set of definition lines (MLflow's migrations write a table's
    constraints in varying order from one build to the next), and its schema revision."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        defs = {
            (kind, name): {line.strip().rstrip(",") for line in (sql or "").splitlines()} for kind, name, sql in rows
        }
        return defs, db.execute("SELECT version_num FROM alembic_version").fetchall()


def test_a_seeded_store_is_the_store_mlflow_builds(in_cache, tmp_path, monkeypatch):
    built, seeded = tmp_path / "built" / "mlflow.db", tmp_path / "seeded" / "mlflow.db"
    built.parent.mkdir()
    seeded.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    open_client(f"sqlite:///{tmp_path / 'unused.db'}")  # builds the empty store of this MLflow once
    template = empty_store()
    assert template.parent == in_cache / "mlflow" and template.is_file()

    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{built}").search_experiments()  # MLflow's own migrations
    client = open_client(f"sqlite:///{seeded}")
    assert _schema(seeded) == _schema(built)
    assert [e.name for e in client.search_experiments()] == ["Default"]  # MLflow added it, as on any new store

    exp = client.create_experiment("e", artifact_location=artifacts_beside(f"sqlite:///{seeded}"))
    run = client.create_run(exp).info.run_id
    client.log_batch(run, metrics=[Metric("loss", 0.5, 0, 1)])
    client.set_terminated(run)
    again = MlflowClient(f"sqlite:///{seeded}")
    assert again.get_run(run).data.metrics == {"loss": 0.5}
    assert again.get_experiment(exp).artifact_location == (seeded.parent / "mlartifacts").as_uri()
    assert template.stat().st_mtime_ns == empty_store().stat().st_mtime_ns  # built once, not again


def test_an_existing_store_is_never_replaced(in_cache, tmp_path):
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"not a copy")
    assert seed_sqlite_store(f"sqlite:///{store}") is False
    assert store.read_bytes() == b"not a copy"
    assert seed_sqlite_store(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}") is False  # no folder: MLflow's error
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no temporary file left


def test_without_a_usable_cache_mlflow_builds_the_store(tmp_path, monkeypatch):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("ONLYIF_CACHE_DIR", str(blocker))
    store = tmp_path / "mlflow.db"
    assert seed_sqlite_store(f"sqlite:///{store}") is False
    assert not store.exists()
    client = open_client(f"sqlite:///{store}")
    assert client.get_experiment_by_name("Default") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache-is-a-file", "mlflow.db"]


def test_which_uris_name_a_sqlite_file(tmp_path):
    assert sqlite_file(f"sqlite:///{tmp_path}/m.db") == tmp_path / "m.db"
    assert sqlite_file("sqlite:///rel/m.db").as_posix() == "rel/m.db"
    for uri in ("sqlite:///:memory:", "sqlite:///m.db?timeout=5", "http://127.0.0.1:5000", "databricks", "sqlite://"):
        assert sqlite_file(uri) is None
        assert artifacts_beside(uri) is None
