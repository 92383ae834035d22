"""What every prediction store shares: the one column list, the store protocol, the registry
of stores by URL scheme, and the JSON codec of the journal.

A store is opened from a URL (``sqlite:///...``, ``postgresql://...``) by the factory
registered for its scheme, as papermill opens notebooks by I/O handler; a new backend is one
:func:`register_prediction_store` call. The built-in factories import their module only when
a store is opened, so reading this module costs nothing (no database driver).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypedDict, Unpack

from jupyter_mlops.errors import ServingError

__all__ = [
    "ADDED_COLUMNS",
    "COLUMNS",
    "COLUMN_KINDS",
    "DEFAULT_DB",
    "PAYLOAD_COLUMNS",
    "PredictionStore",
    "SQLPredictionStore",
    "Window",
    "column_definitions",
    "default_store_url",
    "dumps",
    "json_text",
    "loads",
    "open_prediction_store",
    "register_prediction_store",
    "window_condition",
    "window_query",
]

#: The columns every stored prediction has, with their kind (``text``, ``real`` or
#: ``integer``; inputs and outputs are JSON text). Each store spells the kinds in its SQL.
COLUMN_KINDS = {
    "request_id": "text",
    "ts": "real",
    "deployment": "text",
    "model_name": "text",
    "model_version": "text",
    "run_id": "text",
    "role": "text",
    "endpoint": "text",
    "n_rows": "integer",
    "latency_ms": "real",
    "inputs": "text",
    "outputs": "text",
    "proba": "text",
}
COLUMNS = tuple(COLUMN_KINDS)
#: Constraints beyond the type (every other column may be NULL).
_CONSTRAINTS = {"request_id": " PRIMARY KEY", "ts": " NOT NULL", "deployment": " NOT NULL"}
#: The columns holding a request's (possibly large) payload, stored as JSON text. ``proba``
#: (one ``{class: probability}`` per input row) is NULL for models without ``predict_proba``;
#: stores created before it had it get it added in place (:data:`ADDED_COLUMNS`).
PAYLOAD_COLUMNS = ("inputs", "outputs", "proba")
#: Columns added to the ``predictions`` table after its first release: each store adds them
#: to an existing table when it opens it (``ALTER TABLE ... ADD COLUMN``).
ADDED_COLUMNS = ("proba",)
DEFAULT_DB = "predictions.db"


class Window(TypedDict, total=False):
    """Which rows :meth:`PredictionStore.read` returns: ``since <= ts < until``, and of those
    only the latest ``limit`` (each None or left out: no bound)."""

    since: float | None
    until: float | None
    limit: int | None


class PredictionStore(Protocol):
    """Where predictions end up. Implementations must make ``write`` idempotent per id."""

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Store journal records (dicts with the keys of ``COLUMNS``), ignoring known ids."""

    def read(self, deployment: str, **window: Unpack[Window]) -> list[dict[str, Any]]:
        """Rows of ``deployment`` in ``window``, oldest first."""

    def close(self) -> None:
        """Release connections."""


class SQLPredictionStore(ABC):
    """What the SQL stores share: the ``predictions`` table read with one ``SELECT`` of
    :func:`window_query`. A store says its driver's placeholder ``mark``, the ``order`` that
    makes "the latest ``limit``" exact, and how it runs a query (:meth:`_select`)."""

    table: ClassVar[str] = "predictions"
    mark: ClassVar[str]
    order: ClassVar[tuple[str, ...]] = ("ts",)

    @abstractmethod
    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Store journal records, ignoring request ids already stored."""

    @abstractmethod
    def _select(self, sql: str, args: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """The rows of one ``SELECT`` with its arguments."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def read(self, deployment: str, **window: Unpack[Window]) -> list[dict[str, Any]]:
        """Rows of ``deployment`` with ``since <= ts < until``, oldest first (latest
        ``limit``)."""
        sql, args = window_query(self.table, deployment, mark=self.mark, order=self.order, **window)
        return [dict(zip(COLUMNS, row, strict=True)) for row in self._select(sql, args)]


def column_definitions(sql_types: Mapping[str, str]) -> str:
    """The column list of the ``predictions`` table's ``CREATE TABLE`` statement, each kind
    of :data:`COLUMN_KINDS` spelled as ``sql_types`` says (``{"real": "REAL", ...}``)."""
    return ", ".join(
        f"{name} {sql_types[kind]}{_CONSTRAINTS.get(name, '')}"
        for name, kind in COLUMN_KINDS.items()
    )


def window_condition(
    deployment: str, since: float | None, until: float | None, mark: str
) -> tuple[str, list[Any]]:
    """The SQL condition (and its arguments) for ``deployment``'s rows with
    ``since <= ts < until``; ``mark`` is the driver's placeholder (``?`` or ``%s``)."""
    where = [f"deployment = {mark}"]
    args: list[Any] = [deployment]
    if since is not None:
        where.append(f"ts >= {mark}")
        args.append(since)
    if until is not None:
        where.append(f"ts < {mark}")
        args.append(until)
    return " AND ".join(where), args


def window_query(
    table: str,
    deployment: str,
    *,
    mark: str,
    order: Sequence[str] = ("ts",),
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> tuple[str, list[Any]]:
    """The ``SELECT`` (and its arguments) of :meth:`PredictionStore.read`: ``deployment``'s
    rows with ``since <= ts < until`` sorted by ``order``, only the latest ``limit``."""
    where, args = window_condition(deployment, since, until, mark)
    sql = f"SELECT {','.join(COLUMNS)} FROM {table} WHERE {where}"
    if limit is not None:
        newest = ", ".join(f"{column} DESC" for column in order)
        sql = f"SELECT * FROM ({sql} ORDER BY {newest} LIMIT {int(limit)}) AS latest"
    return f"{sql} ORDER BY {', '.join(order)}", args


# -- the JSON codec -----------------------------------------------------------------------

try:  # several times faster than json on the journal's hot paths
    import orjson

    def dumps(value: Any) -> bytes:
        """``value`` as compact JSON bytes (numpy values and anything else via ``str``)."""
        return orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY)

    loads: Callable[[bytes | str], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it

    def dumps(value: Any) -> bytes:
        """``value`` as compact JSON bytes (anything not JSON via ``str``)."""
        return json.dumps(value, default=str, separators=(",", ":")).encode()

    loads = json.loads


def json_text(value: Any) -> str | None:
    """A payload as the JSON text a store keeps (text already encoded passes as it is)."""
    if value is None or isinstance(value, str):
        return value
    return dumps(value).decode()


# -- the registry of stores ---------------------------------------------------------------


def _sqlite_store(url: str) -> PredictionStore:
    from jupyter_mlops.predlog.sqlite import SQLitePredictionStore

    return SQLitePredictionStore.from_url(url)


def _postgres_store(url: str) -> PredictionStore:
    from jupyter_mlops.predlog.postgres import PostgresPredictionStore

    return PostgresPredictionStore.from_url(url)


_STORES: dict[str, Callable[[str], PredictionStore]] = {
    "sqlite": _sqlite_store,
    # postgresql+psycopg:// (SQLAlchemy's spelling, as MLflow takes it) and postgres:// too.
    "postgresql": _postgres_store,
    "postgresql+psycopg": _postgres_store,
    "postgres": _postgres_store,
}


def register_prediction_store(scheme: str, factory: Callable[[str], PredictionStore]) -> None:
    """Make ``open_prediction_store`` handle URLs of ``scheme`` (e.g. ``postgresql``)."""
    _STORES[scheme] = factory


def open_prediction_store(url: str) -> PredictionStore:
    """The store behind ``url`` (``sqlite:///...``, ``postgresql://...``; more schemes via
    the registry)."""
    scheme = url.split(":", 1)[0]
    factory = _STORES.get(scheme) or _STORES.get(scheme.split("+", 1)[0])
    if factory is None:
        raise ServingError(
            f"No prediction store for {scheme!r} URLs (known: {', '.join(sorted(_STORES))})."
        )
    return factory(url)


def default_store_url(mlops_dir: Path) -> str:
    """``sqlite:///<project>/.mlops/predictions.db``."""
    return f"sqlite:///{mlops_dir.resolve() / DEFAULT_DB}"
