"""The prediction log in PostgreSQL: one table shared by deployments on several hosts.

``deploy(..., prediction_log="postgresql://user@db-host/mlops")`` (or ``prediction_log =``
in ``[tool.jupyter-mlops]``, or ``JUPYTER_MLOPS_PREDICTION_LOG``) sends the log here instead of
the project's SQLite file. The table has the columns and the reading semantics of
:class:`~jupyter_mlops.predlog.sqlite.SQLitePredictionStore`; every process that opens the
store creates it when missing, under an advisory lock, so servers starting together on
several hosts do not race. Writes are one ``INSERT ... SELECT FROM unnest(...)`` per few
thousand records (``ON CONFLICT DO NOTHING``: replaying a journal twice is harmless).

A lost connection (the database restarted, a network cut) is dropped and opened again on
the next call; a call that still fails raises :class:`ServingError`, and the server's
ingester leaves the records in its journal and retries a second later. Messages and
``repr`` never show the password. psycopg 3 is imported only when a store is opened.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_mlops._util.urls import redact
from jupyter_mlops.errors import ServingError
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

if TYPE_CHECKING:
    import psycopg

TABLE = "predictions"
#: Key of the advisory lock held while creating the table (any constant shared by all).
_DDL_LOCK = 0x6A6D6C6F7073  # "jmlops"
#: Records per INSERT statement.
CHUNK = 5000
#: libpq settings used unless the URL gives its own: fail fast, notice dead peers.
_DEFAULTS = {
    "connect_timeout": "5",
    "application_name": "jupyter-mlops prediction log",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
#: How each column kind is spelled in the table and in the arrays of an INSERT.
_SQL_TYPES = {"text": "TEXT", "real": "DOUBLE PRECISION", "integer": "INTEGER"}
_ARRAY_TYPES = {"text": "text", "real": "float8", "integer": "int4"}
_PYTHON_TYPES: dict[str, Callable[[Any], Any]] = {"text": str, "real": float, "integer": int}
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ({column_definitions(_SQL_TYPES)})",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_deployment_ts ON {TABLE} (deployment, ts)",
    # a table made by an earlier release gets the columns added since
    *(
        f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {name} {_SQL_TYPES[COLUMN_KINDS[name]]}"
        for name in ADDED_COLUMNS
    ),
    *osql.create_statements(_SQL_TYPES, serial="BIGSERIAL PRIMARY KEY", blob="BYTEA"),
)
#: Whether the schema is complete: the last table created, and every added column.
_SCHEMA_READY = (
    "SELECT to_regclass('outcome_blocks') IS NOT NULL AND (SELECT count(*) FROM pg_attribute"
    f" WHERE attrelid = to_regclass('{TABLE}') AND NOT attisdropped AND attname IN"
    f" ({','.join(repr(n) for n in ADDED_COLUMNS)})) = {len(ADDED_COLUMNS)}"
)
_INSERT = (
    f"INSERT INTO {TABLE} ({','.join(COLUMNS)}) SELECT * FROM unnest("
    + ",".join(f"%s::{_ARRAY_TYPES[kind]}[]" for kind in COLUMN_KINDS.values())
    + ") ON CONFLICT (request_id) DO NOTHING"
)

T = TypeVar("T")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise ServingError(
            "A PostgreSQL prediction log needs psycopg 3: pip install 'jupyter-mlops[team]'"
        ) from exc
    return psycopg


def libpq_url(url: str) -> str:
    """``url`` as libpq reads it: ``postgresql+psycopg://`` and ``postgres://`` become
    ``postgresql://``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ServingError(f"Not a PostgreSQL URL: {redact(url)}")
    return f"postgresql://{rest}"


def _column(name: str, values: list[Any]) -> list[Any]:
    """One column of records in the Python type its array parameter takes."""
    if name in PAYLOAD_COLUMNS:
        return [json_text(v) for v in values]
    cast = _PYTHON_TYPES[COLUMN_KINDS[name]]
    return [None if v is None else cast(v) for v in values]


class PostgresPredictionStore(SQLPredictionStore):
    """Predictions in the ``predictions`` table of a PostgreSQL database.

    Thread-safe: calls share one connection, one at a time (the server's ingester writes a
    few statements a second; readers are notebooks). The search path decides the schema
    (``?options=-csearch_path%3Dmlops`` in the URL).
    """

    mark = "%s"
    #: Timestamps may tie across hosts: the request id makes "the latest ``limit``" exact.
    order = ("ts", "request_id")

    def __init__(self, url: str, *, connect: bool = True) -> None:
        """Open the store at ``url``; with ``connect``, connect (and create the table) now,
        so a wrong URL fails here rather than in the background."""
        pg = _psycopg()
        self.url = url
        self.safe_url = redact(url)
        try:
            params = pg.conninfo.conninfo_to_dict(libpq_url(url))
        except pg.Error:  # its message may quote the URL: leave it out
            raise ServingError(f"Not a valid PostgreSQL URL: {self.safe_url}") from None
        self._password = str(params.get("password") or "")
        self._params = {**_DEFAULTS, **params}
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        if connect:
            self._call(lambda conn: None)

    @classmethod
    def from_url(cls, url: str) -> PostgresPredictionStore:
        """The factory registered for the PostgreSQL schemes."""
        return cls(url)

    def __repr__(self) -> str:
        return f"PostgresPredictionStore({self.safe_url!r})"

    # -- connection -------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        text = text.replace(self.url, self.safe_url)
        if self._password:
            for secret in (self._password, urllib.parse.quote(self._password, safe="")):
                text = text.replace(secret, "***")
        return text

    def _connect(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = _psycopg().connect(**self._params, autocommit=True)
        try:
            found = conn.execute(_SCHEMA_READY).fetchone()
            if found is None or not found[0]:
                with conn.transaction():
                    # Servers starting together each find the table missing (or an old
                    # one): the lock lets one create or migrate it; the others then see it
                    # done and change nothing.
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                    for statement in _CREATE:
                        conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self._conn.close()
            self._conn = None

    def _call(self, op: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``op`` on the connection; after a connection error, once more on a new one."""
        pg = _psycopg()
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._connect()
                    return op(self._conn)
                except (pg.OperationalError, pg.InterfaceError) as exc:
                    self._drop()  # the server restarted or the network failed: reconnect
                    if attempt == 2:
                        raise ServingError(
                            f"Cannot reach the PostgreSQL prediction log {self.safe_url}: "
                            f"{self._scrub(str(exc).strip())}"
                        ) from None
                except pg.Error as exc:
                    raise ServingError(
                        f"PostgreSQL prediction log {self.safe_url}: "
                        f"{type(exc).__name__}: {self._scrub(str(exc).strip())}"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the PredictionStore protocol -------------------------------------------------------

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``records``, ignoring request ids already stored; one statement per
        :data:`CHUNK` records, all in one transaction."""
        if not records:
            return
        chunks = []
        for start in range(0, len(records), CHUNK):
            part = records[start : start + CHUNK]
            chunks.append([_column(c, [rec.get(c) for rec in part]) for c in COLUMNS])

        def insert(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                for arrays in chunks:
                    cur.execute(_INSERT, arrays)

        self._call(insert)

    # -- outcomes ---------------------------------------------------------------------------

    def lookup(self, request_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """The logged requests among ``request_ids`` (columns of ``LOOKUP_COLUMNS``)."""
        sql = f"SELECT {','.join(osql.LOOKUP_COLUMNS)} FROM {TABLE} WHERE request_id = ANY(%s)"
        return self._select(sql, [list(request_ids)])

    def add_outcomes(
        self, rows: Sequence[Labelled], *, skip_duplicates: bool = False
    ) -> set[tuple[str, int]]:
        """Store ``rows`` (and their blocks) in one transaction; returns the keys already
        stored. Those are left out with ``skip_duplicates``, else nothing is stored."""
        ids = list({item.request_id for item in rows})

        def insert(conn: psycopg.Connection[Any]) -> set[tuple[str, int]]:
            with conn.transaction(), conn.cursor() as cur:
                # one ingester at a time per deployment: the duplicate check stays true
                # until the commit (a concurrent batch waits here, then sees these rows)
                cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (1, "outcomes"))
                cur.execute(
                    "SELECT request_id, row FROM outcomes WHERE request_id = ANY(%s)", (ids,)
                )
                stored = {(str(r[0]), int(r[1])) for r in cur.fetchall()}
                duplicates = {(i.request_id, i.row) for i in rows} & stored
                if duplicates and not skip_duplicates:
                    return duplicates
                fresh = [i for i in rows if (i.request_id, i.row) not in duplicates]
                if fresh:
                    cur.executemany(
                        osql.insert_outcomes("%s"), [osql.outcome_row(i) for i in fresh]
                    )
                    cur.executemany(
                        osql.insert_block("%s"),
                        [osql.block_row(b) for b in encode_blocks(fresh)],
                    )
                return duplicates

        return self._call(insert)

    def outcome_blocks(
        self, deployment: str, since: float | None = None, until: float | None = None
    ) -> list[bytes]:
        """The outcome blocks of ``deployment`` that may hold rows with
        ``since <= ts < until``, oldest first."""
        sql, args = osql.blocks_query(deployment, since, until, "%s")
        return [bytes(row[0]) for row in self._select(sql, args)]

    def prediction_counts(
        self,
        deployment: str,
        since: float | None = None,
        until: float | None = None,
        bucket_s: float | None = None,
    ) -> list[tuple[Any, ...]]:
        """Predicted rows per model version and role (and bucket start)."""
        sql, args = osql.counts_query(
            deployment, since, until, bucket_s, mark="%s", floor="floor({})"
        )
        return self._select(sql, args)

    def _select(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        def select(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(sql, args).fetchall()

        return self._call(select)

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            self._drop()
