"""Telling an unreachable tracking store from one that said no, and probing stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from jupyter_mlops.tracking.server import normalise_backend_uri, probe, redact
from jupyter_mlops.tracking.store import is_unavailable
from tests.helpers import free_port


def test_a_dead_server_is_unavailable_a_refusal_is_not(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = MlflowClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(MlflowException) as refused:
        dead.search_experiments()
    assert is_unavailable(refused.value)

    local = MlflowClient(f"sqlite:///{project / '.mlops' / 'mlflow.db'}")
    with pytest.raises(MlflowException) as missing:
        local.get_run("0" * 32)
    assert not is_unavailable(missing.value)  # the store answered: no such run

    db = project / "locked.db"
    holder = sqlite3.connect(db)
    holder.execute("create table t (x)")
    holder.execute("begin exclusive")
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            sqlite3.connect(db, timeout=0).execute("insert into t values (1)")
    finally:
        holder.rollback()
    assert not is_unavailable(locked.value)  # busy, retried elsewhere; not "unreachable"
    assert is_unavailable(ConnectionRefusedError("refused"))


def test_probe_answers_without_raising(project: Path) -> None:
    dead = probe(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert not dead.ok and "cannot connect" in dead.detail and "UNREACHABLE" in str(dead)
    fresh = probe(f"sqlite:///{project / '.mlops' / 'new.db'}")
    assert fresh.ok and "not created yet" in fresh.detail
    (project / "a-file").write_text("not a folder\n")
    nowhere = probe(f"sqlite:///{project / 'a-file' / 'x.db'}")
    assert not nowhere.ok and "not writable" in nowhere.detail
    pg = probe(f"postgresql://u:pw@127.0.0.1:{free_port()}/db", timeout=1)
    assert not pg.ok and "cannot connect" in pg.detail and "pw@" not in pg.uri
    assert not probe("file:///tmp/mlruns").ok


def test_redaction_and_driver_choice() -> None:
    assert redact("postgresql://me:secret@db:5432/x?sslmode=require") == (
        "postgresql://me:***@db:5432/x?sslmode=require"
    )
    assert redact("http://mlflow:5000") == "http://mlflow:5000"
    assert normalise_backend_uri("postgresql://me@db/x") in (
        "postgresql+psycopg://me@db/x",  # psycopg 3 only (the [team] extra)
        "postgresql://me@db/x",  # psycopg2 installed: SQLAlchemy's default driver
    )
    assert normalise_backend_uri("sqlite:///x.db") == "sqlite:///x.db"
