"""The default prediction store: one SQLite file (WAL mode) shared by a project's deployments.

``<project>/.mlops/predictions.db`` unless a deployment names another store. WAL lets the
servers' ingesters write while notebooks read; rows are keyed by request id and inserted with
``INSERT OR IGNORE``, so replaying a journal twice is harmless.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_mlops.predlog.base import (
    COLUMNS,
    PAYLOAD_COLUMNS,
    SQLPredictionStore,
    column_definitions,
    json_text,
)

__all__ = ["SQLitePredictionStore"]

_SQL_TYPES = {"text": "TEXT", "real": "REAL", "integer": "INTEGER"}


class SQLitePredictionStore(SQLPredictionStore):
    """The default store: one SQLite file (WAL mode) shared by the project's deployments."""

    mark = "?"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS predictions ({column_definitions(_SQL_TYPES)})"
            )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS predictions_deployment_ts"
                " ON predictions (deployment, ts)"
            )

    @classmethod
    def from_url(cls, url: str) -> SQLitePredictionStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
        return cls(url.removeprefix("sqlite:///"))

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``records``, ignoring request ids already stored, in one transaction."""
        if not records:
            return
        rows = [
            tuple(
                json_text(rec.get(col)) if col in PAYLOAD_COLUMNS else rec.get(col)
                for col in COLUMNS
            )
            for rec in records
        ]
        conn = self._conn()
        placeholders = ",".join("?" * len(COLUMNS))
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                f"INSERT OR IGNORE INTO predictions ({','.join(COLUMNS)}) VALUES ({placeholders})",
                rows,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _select(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._conn().execute(sql, args).fetchall()

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
