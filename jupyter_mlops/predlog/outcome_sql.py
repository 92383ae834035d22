"""The SQL of the outcome store, shared by the SQLite and PostgreSQL prediction stores.

Outcomes live in the same database as the predictions they label, so a join is one SQL
statement away. Two tables: ``outcomes`` (one row per labelled prediction row, keyed by
``(request_id, row)``: what refuses a duplicate, and what SQL joins to ``predictions``) and
``outcome_blocks`` (the same rows column-wise, one blob per model version and batch:
what :func:`~jupyter_mlops.predlog.outcomes.read_outcomes` reads; see
:mod:`~jupyter_mlops.predlog.blocks`). Both are written in one transaction.

Each store spells the kinds in its SQL (``sql_types``) and its placeholder (``mark``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jupyter_mlops.predlog.base import dumps
from jupyter_mlops.predlog.blocks import Block, Labelled

__all__ = [
    "LOOKUP_COLUMNS",
    "OUTCOME_COLUMNS",
    "block_row",
    "counts_query",
    "create_statements",
    "existing_query",
    "insert_block",
    "insert_outcomes",
    "lookup_query",
    "outcome_row",
]

#: The ``outcomes`` table: the outcome, when it arrived, and the prediction it labels
#: (copied at ingest, so reading joins nothing). ``outcome``, ``prediction``, ``proba`` and
#: ``extra`` are JSON text.
OUTCOME_KINDS = {
    "request_id": "text",
    "row": "integer",
    "deployment": "text",
    "arrived": "real",
    "outcome": "text",
    "ts": "real",
    "model_name": "text",
    "model_version": "text",
    "run_id": "text",
    "role": "text",
    "prediction": "text",
    "proba": "text",
    "extra": "text",
}
OUTCOME_COLUMNS = tuple(OUTCOME_KINDS)
_NOT_NULL = {"request_id", "row", "deployment", "arrived", "ts"}
#: What ingestion reads of each labelled request from ``predictions``.
LOOKUP_COLUMNS = (
    "request_id", "deployment", "ts", "model_name", "model_version", "run_id", "role",
    "n_rows", "outputs", "proba",
)  # fmt: skip


def create_statements(sql_types: Mapping[str, str], *, serial: str, blob: str) -> list[str]:
    """The ``CREATE`` statements of the outcome tables and of the index that counts
    predictions per version without reading the table (``serial``: the auto-increment
    primary key's spelling; ``blob``: the binary type)."""
    columns = ", ".join(
        f"{name} {sql_types[kind]}{' NOT NULL' if name in _NOT_NULL else ''}"
        for name, kind in OUTCOME_KINDS.items()
    )
    return [
        f"CREATE TABLE IF NOT EXISTS outcomes ({columns}, PRIMARY KEY (request_id, row))",
        # reads go to the blocks: no index beyond the key, so each outcome costs one insert
        "DROP INDEX IF EXISTS outcomes_deployment_ts",
        f"CREATE TABLE IF NOT EXISTS outcome_blocks (id {serial}, deployment "
        f"{sql_types['text']} NOT NULL, ts_min {sql_types['real']} NOT NULL, ts_max "
        f"{sql_types['real']} NOT NULL, n {sql_types['integer']} NOT NULL, data {blob} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS outcome_blocks_deployment"
        " ON outcome_blocks (deployment, ts_min, ts_max)",
        # prediction_counts scans this index alone (a covering index, already grouped by
        # version and role: no sort), not the payloads
        "DROP INDEX IF EXISTS predictions_counts",  # its first form (ts before version)
        "CREATE INDEX IF NOT EXISTS predictions_version_ts"
        " ON predictions (deployment, model_version, role, ts, n_rows)",
    ]


def lookup_query(n: int, mark: str) -> str:
    """The logged requests of ``n`` request ids."""
    return (
        f"SELECT {','.join(LOOKUP_COLUMNS)} FROM predictions"
        f" WHERE request_id IN ({','.join([mark] * n)})"
    )


def existing_query(n: int, mark: str) -> str:
    """The stored outcome keys of ``n`` request ids."""
    return f"SELECT request_id, row FROM outcomes WHERE request_id IN ({','.join([mark] * n)})"


def insert_outcomes(mark: str) -> str:
    return (
        f"INSERT INTO outcomes ({','.join(OUTCOME_COLUMNS)})"
        f" VALUES ({','.join([mark] * len(OUTCOME_COLUMNS))})"
    )


def insert_block(mark: str) -> str:
    return (
        "INSERT INTO outcome_blocks (deployment, ts_min, ts_max, n, data)"
        f" VALUES ({','.join([mark] * 5)})"
    )


def outcome_row(item: Labelled) -> tuple[Any, ...]:
    """A labelled row as the ``outcomes`` table's values."""
    return (
        *item[:4], dumps(item.outcome).decode(), *item[5:10], dumps(item.prediction).decode(),
        None if item.proba is None else dumps(item.proba).decode(),
        dumps(item.extra).decode() if item.extra else None,
    )  # fmt: skip


def block_row(block: Block) -> tuple[Any, ...]:
    return (block.deployment, block.ts_min, block.ts_max, block.n, block.data)


def counts_query(
    deployment: str,
    since: float | None,
    until: float | None,
    bucket_s: float | None,
    *,
    mark: str,
    floor: str,
) -> tuple[str, list[Any]]:
    """Predicted rows per model version and role (and per bucket of ``bucket_s`` seconds of
    prediction time; ``floor`` spells rounding down, e.g. ``CAST({} AS INTEGER)``)."""
    args: list[Any] = []
    keys = ["model_version", "role"]
    if bucket_s is not None:
        keys.append(f"{floor.format(f'ts / {mark}')} * {mark}")
        args += [float(bucket_s), float(bucket_s)]
    where = [f"deployment = {mark}"]
    args.append(deployment)
    if since is not None:
        where.append(f"ts >= {mark}")
        args.append(since)
    if until is not None:
        where.append(f"ts < {mark}")
        args.append(until)
    groups = ", ".join(str(i + 1) for i in range(len(keys)))
    sql = (
        f"SELECT {', '.join(keys)}, SUM(COALESCE(n_rows, 1)) FROM predictions"
        f" WHERE {' AND '.join(where)} GROUP BY {groups} ORDER BY {groups}"
    )
    return sql, args


def blocks_query(
    deployment: str, since: float | None, until: float | None, mark: str
) -> tuple[str, list[Any]]:
    """The ``SELECT`` (and its arguments) of the outcome blocks of ``deployment`` that may
    hold rows with ``since <= ts < until``, oldest first."""
    sql = f"SELECT data FROM outcome_blocks WHERE deployment = {mark}"
    args: list[Any] = [deployment]
    if since is not None:
        sql += f" AND ts_max >= {mark}"
        args.append(since)
    if until is not None:
        sql += f" AND ts_min < {mark}"
        args.append(until)
    return sql + " ORDER BY id", args


def chunks(values: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    """``values`` in slices of ``size`` (the placeholders of one ``IN (...)``)."""
    return [values[i : i + size] for i in range(0, len(values), size)]
