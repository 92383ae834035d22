"""The default prediction store: one SQLite file (WAL mode) shared by a project's deployments.

``<project>/.mlops/predictions.db`` unless a deployment names another store. WAL lets the
servers' ingesters write while notebooks read; rows are keyed by request id and inserted with
``INSERT OR IGNORE``, so replaying a journal twice is harmless. The outcome tables live in the
same file (:mod:`~jupyter_mlops.predlog.outcome_sql`); a file made before a column was added
gets it when opened.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_mlops.predlog import outcome_sql as osql
from jupyter_mlops.predlog.base import (
    ADDED_COLUMNS,
    COLUMN_KINDS,
    COLUMNS,
    PAYLOAD_COLUMNS,
    SQLPredictionStore,
    column_definitions,
    json_text,
)
from jupyter_mlops.predlog.blocks import Labelled, encode_blocks

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
            self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Add the columns and tables a file made by an earlier release lacks."""
        have = {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}
        for name in ADDED_COLUMNS:
            if name not in have:
                try:
                    kind = _SQL_TYPES[COLUMN_KINDS[name]]
                    conn.execute(f"ALTER TABLE predictions ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:  # another process added it meanwhile
                    if "duplicate column" not in str(exc):
                        raise
        for statement in osql.create_statements(
            _SQL_TYPES, serial="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB"
        ):
            conn.execute(statement)

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

    # -- outcomes ---------------------------------------------------------------------------

    def lookup(self, request_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """The logged requests among ``request_ids`` (columns of ``LOOKUP_COLUMNS``)."""
        conn = self._conn()
        found: list[tuple[Any, ...]] = []
        for part in osql.chunks(request_ids):
            found += conn.execute(osql.lookup_query(len(part), "?"), list(part)).fetchall()
        return found

    def add_outcomes(
        self, rows: Sequence[Labelled], *, skip_duplicates: bool = False
    ) -> set[tuple[str, int]]:
        """Store ``rows`` (and their blocks) in one transaction; returns the keys already
        stored. Those are left out with ``skip_duplicates``, else nothing is stored."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            ids = list({item.request_id for item in rows})
            stored: set[tuple[str, int]] = set()
            for part in osql.chunks(ids):
                query = osql.existing_query(len(part), "?")
                stored.update(conn.execute(query, list(part)).fetchall())
            duplicates = {(i.request_id, i.row) for i in rows} & stored
            if duplicates and not skip_duplicates:
                conn.execute("ROLLBACK")
                return duplicates
            fresh = [i for i in rows if (i.request_id, i.row) not in duplicates]
            conn.executemany(osql.insert_outcomes("?"), [osql.outcome_row(i) for i in fresh])
            blocks = [osql.block_row(b) for b in encode_blocks(fresh)]
            conn.executemany(osql.insert_block("?"), blocks)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return duplicates

    def outcome_blocks(
        self, deployment: str, since: float | None = None, until: float | None = None
    ) -> list[bytes]:
        """The outcome blocks of ``deployment`` that may hold rows with
        ``since <= ts < until``, oldest first."""
        sql, args = osql.blocks_query(deployment, since, until, "?")
        return [row[0] for row in self._conn().execute(sql, args)]

    def prediction_counts(
        self,
        deployment: str,
        since: float | None = None,
        until: float | None = None,
        bucket_s: float | None = None,
    ) -> list[tuple[Any, ...]]:
        """Predicted rows per model version and role (and bucket start).

        Buckets are summed by one range scan of the covering index per bucket: grouping by
        a computed bucket would sort every row in a temporary b-tree, several times slower.
        """
        conn = self._conn()
        sql, args = osql.counts_query(
            deployment, since, until, None, mark="?", floor="CAST({} AS INTEGER)"
        )
        if bucket_s is None:
            return conn.execute(sql, args).fetchall()
        width = float(bucket_s)
        spans = conn.execute(
            sql.replace("SUM(COALESCE(n_rows, 1))", "MIN(ts), MAX(ts)"), args
        ).fetchall()
        one = (
            "SELECT SUM(COALESCE(n_rows, 1)) FROM predictions WHERE deployment = ? AND"
            " model_version IS ? AND role IS ? AND ts >= ? AND ts < ?"
        )
        found = []
        for version, role, first, last in spans:
            base = math.floor(first / width)
            for k in range(base, math.floor(last / width) + 1):
                start = k * width
                low = start if since is None else max(start, since)
                high = start + width if until is None else min(start + width, until)
                (count,) = conn.execute(one, (deployment, version, role, low, high)).fetchone()
                if count:
                    found.append((version, role, start, count))
        return found

    def _select(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._conn().execute(sql, args).fetchall()

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
