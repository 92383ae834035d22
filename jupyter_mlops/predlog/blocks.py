"""Outcome blocks: the column-wise copy of each ingested batch that :func:`read_outcomes` reads.

The ``outcomes`` table keeps one row per labelled prediction row (the key that refuses a
duplicate, and what SQL joins to ``predictions``). Reading a million of those rows back
through a database driver costs a Python object per cell: seconds. So each ingested batch
is also written, in the same transaction, as a few *blocks*: one per model version, role
and class set, each an Arrow IPC stream (ids, rows, times, prediction, outcome,
``proba_<class>``, extra fields as typed columns; the version, role and run id in the
schema's metadata). Reading is one ``SELECT`` of a few hundred blobs, zero-copy Arrow
buffers (zstd-compressed), one concatenation, one sort by prediction time: no per-row
Python. Never pickle: a
team's database is shared, and unpickling runs code; Arrow IPC is data only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.predlog.base import dumps, loads

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

__all__ = ["Block", "Labelled", "decode_blocks", "encode_blocks"]

_log = safe_logger(__name__)

#: Rows per block at most (a big batch is cut in several).
BLOCK_ROWS = 50_000
#: What the schema's metadata names (constant within a block).
SERVED = ("deployment", "model_name", "model_version", "run_id", "role")
#: Prefix of the extra fields' columns inside a block (so no name clashes with ours).
EXTRA = "x:"
#: Suffix of a column kept as JSON text (values Arrow cannot type as one column).
AS_JSON = "#json"


class Labelled(NamedTuple):  # a tuple: ingestion makes one per outcome, cheaply
    """One labelled prediction row as ingestion joined it: the outcome and, copied from the
    logged prediction, what a performance view needs (so reading joins nothing)."""

    request_id: str
    row: int
    deployment: str
    arrived: float
    outcome: Any
    ts: float
    model_name: str | None
    model_version: str | None
    run_id: str | None
    role: str | None
    prediction: Any
    proba: dict[str, float] | None
    extra: dict[str, Any] | None


@dataclass(frozen=True)
class Block:
    """An encoded block with the bounds a query selects it by."""

    deployment: str
    ts_min: float
    ts_max: float
    n: int
    data: bytes


def _typed(name: str, values: list[Any]) -> tuple[str, pa.Array]:
    """``values`` as one typed Arrow column, or as JSON text (``name#json``) when Arrow
    cannot type them as one (mixed kinds, integers beyond 64 bits)."""
    import pyarrow as pa

    try:
        return name, pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return name + AS_JSON, pa.array([dumps(v).decode() for v in values], pa.string())


def encode_blocks(rows: Sequence[Labelled]) -> list[Block]:
    """``rows`` as blocks: one per model version, role and class set (cut at
    :data:`BLOCK_ROWS`)."""
    import numpy as np
    import pyarrow as pa

    groups: dict[tuple[Any, ...], list[Labelled]] = {}  # served, then the class set
    for item in rows:
        classes = tuple(item.proba) if item.proba is not None else None
        served = (item.deployment, item.model_name, item.model_version, item.run_id, item.role)
        groups.setdefault((*served, classes), []).append(item)
    blocks = []
    for key, members in groups.items():
        names: tuple[str, ...] | None = key[5]
        for start in range(0, len(members), BLOCK_ROWS):
            part = members[start : start + BLOCK_ROWS]
            n = len(part)
            ts = np.fromiter((m.ts for m in part), float, n)
            columns: dict[str, Any] = {
                "request_id": pa.array([m.request_id for m in part], pa.string()),
                "row": pa.array(np.fromiter((m.row for m in part), np.int64, n)),
                "ts": pa.array(ts),
                "arrived": pa.array(np.fromiter((m.arrived for m in part), float, n)),
            }
            columns.update([_typed("prediction", [m.prediction for m in part])])
            columns.update([_typed("outcome", [m.outcome for m in part])])
            if names is not None:
                matrix = np.array(
                    [[m.proba[c] if m.proba else None for c in names] for m in part], dtype=float
                )
                for i, name in enumerate(names):
                    columns[f"proba_{name}"] = pa.array(matrix[:, i])
            extra_names: dict[str, None] = {}
            for m in part:
                extra_names.update(dict.fromkeys(m.extra or ()))
            for name in extra_names:
                values = [(m.extra or {}).get(name) for m in part]
                columns.update([_typed(EXTRA + name, values)])
            meta = {k: v for k, v in zip(SERVED, key[:5], strict=True)}
            table = pa.table(columns, metadata={"served": json.dumps(meta)})
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema, options=_options()) as writer:
                writer.write_table(table)
            data = sink.getvalue().to_pybytes()
            blocks.append(Block(str(key[0]), float(ts.min()), float(ts.max()), n, data))
    return blocks


def _options() -> Any:
    """zstd-compressed buffers (a sixth of the bytes, read as fast) where the codec is
    built in, as in every pyarrow wheel; plain buffers otherwise."""
    import pyarrow as pa

    codec = "zstd" if pa.Codec.is_available("zstd") else None
    return pa.ipc.IpcWriteOptions(compression=codec)


def _str_column(array: pa.Array | pa.ChunkedArray) -> Any:
    """An Arrow string column as pandas' string dtype (pandas 3's ``str``) without a
    Python object per value; object dtype under pandas 2."""
    import pandas as pd

    if int(pd.__version__.split(".", 1)[0]) >= 3:
        return pd.array(array, dtype="str")
    return array.to_numpy(zero_copy_only=False)


def decode_blocks(
    blobs: Iterable[bytes], since: float | None = None, until: float | None = None
) -> pd.DataFrame:
    """The blocks' rows with ``since <= ts < until`` as the :func:`read_outcomes` frame,
    oldest prediction first."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    tables, served, damaged = [], [], 0
    for blob in blobs:  # a damaged block is left out and counted: it hides no other
        try:
            with pa.ipc.open_stream(pa.py_buffer(blob)) as reader:
                table = reader.read_all()
            served.append(loads(table.schema.metadata[b"served"]))
        except Exception:  # whatever the damage, the other blocks are read
            damaged += 1
            continue
        tables.append(table)
    if damaged:
        _log.warning(
            "%d outcome block(s) could not be read and were left out (damaged, or written "
            "by another version of jupyter-mlops); their rows stay in the outcomes table",
            damaged,
        )
    if not tables:
        frame = _empty()
        frame.attrs["damaged_blocks"] = damaged
        return frame
    group = np.repeat(np.arange(len(tables), dtype=np.int32), [t.num_rows for t in tables])
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # one column typed differently by block
        table = pa.concat_tables(
            [_as_json_text(t, tables) for t in tables], promote_options="permissive"
        )
    ts = table.column("ts").to_numpy()
    keep = np.ones(len(ts), dtype=bool)
    if since is not None:
        keep &= ts >= since
    if until is not None:
        keep &= ts < until
    order = np.flatnonzero(keep)
    order = order[np.argsort(ts[order], kind="stable")]
    if len(order) != len(ts) or np.any(order[1:] < order[:-1]):
        table = table.combine_chunks().take(pa.array(order))  # one chunk: a faster take
        ts = ts[order]
    group = group[order]
    arrived = table.column("arrived").to_numpy()
    columns: dict[str, Any] = {
        "request_id": _str_column(table.column("request_id")),
        "row": table.column("row").to_numpy(),
        "timestamp": _utc(ts),
        "arrived": _utc(arrived),
        "delay_s": arrived - ts,
    }
    for field in SERVED:
        names = pa.array([s.get(field) for s in served], pa.string())
        columns[field] = _str_column(names.take(pa.array(group)))
    rest = [c for c in table.column_names if c not in ("request_id", "row", "ts", "arrived")]
    for name in sorted(rest, key=_place):
        column = table.column(name)
        label = name.removeprefix(EXTRA).removesuffix(AS_JSON)
        if name.endswith(AS_JSON):
            values = [None if v is None else loads(v) for v in column.to_pylist()]
            data: Any = pd.Series(values, dtype=object).infer_objects().to_numpy()
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            data = _str_column(column)
        else:
            data = column.to_pandas().to_numpy()
        columns[label if label not in columns else f"extra_{label}"] = data
    frame = pd.DataFrame(columns)
    frame.attrs["damaged_blocks"] = damaged
    return frame


def _utc(seconds: np.ndarray) -> pd.DatetimeIndex:
    """Epoch seconds as UTC times (nanoseconds), vectorized."""
    import numpy as np
    import pandas as pd

    nanos = np.round(seconds * 1e9).astype("int64").view("datetime64[ns]")
    return pd.DatetimeIndex(nanos).tz_localize("UTC")


def _place(name: str) -> tuple[int, str]:
    """prediction, outcome, then ``proba_<class>`` (block order kept), then extras."""
    base = name.removesuffix(AS_JSON)
    rank = {"prediction": 0, "outcome": 1}.get(base, 2 if base.startswith("proba_") else 3)
    return rank, "" if rank == 2 else base


def _as_json_text(table: pa.Table, tables: list[pa.Table]) -> pa.Table:
    """``table`` with every column that other blocks type differently as JSON text."""
    import pyarrow as pa

    kinds: dict[str, set[Any]] = {}
    for other in tables:
        for field in other.schema:
            kinds.setdefault(field.name.removesuffix(AS_JSON), set()).add(field.type)
    for i, field in enumerate(table.schema):
        base = field.name.removesuffix(AS_JSON)
        if len(kinds[base]) > 1 and not field.name.endswith(AS_JSON):
            text = pa.array(
                [None if v is None else dumps(v).decode() for v in table.column(i).to_pylist()],
                pa.string(),
            )
            table = table.set_column(i, base + AS_JSON, text)
    return table


def _empty() -> pd.DataFrame:
    import pandas as pd

    names = (
        "request_id", "row", "timestamp", "arrived", "delay_s", *SERVED, "prediction",
        "outcome",
    )  # fmt: skip
    return pd.DataFrame({name: pd.Series(dtype=object) for name in names})
