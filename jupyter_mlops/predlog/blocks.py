"""Outcome blocks: the column-wise copy of each ingested batch that :func:`read_outcomes` reads.

The ``outcomes`` table keeps one row per labelled prediction row (the key that refuses a
duplicate, and what SQL joins to ``predictions``). Reading a million of those rows back
through a database driver costs a Python object per cell, seconds in all. So each ingested
batch is also written, in the same transaction, as a few *blocks*: one per model version,
role and class set, holding its columns side by side (times, row numbers and probabilities
as raw float64/int64 buffers, ids and labels as one JSON array each). Reading is then one
``SELECT`` of a few hundred blobs, ``numpy.frombuffer`` and one JSON parse per column per
block: no per-row Python.

A block is ``MAGIC``, the header's length (4 bytes, little endian), the header (JSON), then the
buffers named in the header's ``buffers`` in that order. Never pickle: a team's database is
shared, and unpickling runs code.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from jupyter_mlops.predlog.base import dumps, loads

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["Block", "Labelled", "decode_blocks", "encode_blocks"]

MAGIC = b"JMOB1"
#: Rows per block at most (a big batch is cut in several).
BLOCK_ROWS = 50_000
#: The columns a :func:`read_outcomes` frame starts with (``proba_<class>`` and extras follow).
FRAME_COLUMNS = (
    "request_id", "row", "timestamp", "arrived", "delay_s", "deployment", "model_name",
    "model_version", "run_id", "role", "prediction", "outcome",
)  # fmt: skip


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


def encode_blocks(rows: Sequence[Labelled]) -> list[Block]:
    """``rows`` as blocks: one per model version, role and class set (cut at
    :data:`BLOCK_ROWS`)."""
    import numpy as np

    groups: dict[tuple[Any, ...], list[Labelled]] = {}  # the last key item: the classes
    for item in rows:
        classes = tuple(item.proba) if item.proba is not None else None
        served = (item.deployment, item.model_name, item.model_version, item.run_id, item.role)
        groups.setdefault((*served, classes), []).append(item)
    blocks = []
    for key, members in groups.items():
        names: tuple[str, ...] | None = key[5]
        for start in range(0, len(members), BLOCK_ROWS):
            part = members[start : start + BLOCK_ROWS]
            ts = np.fromiter((m.ts for m in part), float, len(part))
            buffers = {
                "ts": ts.astype("<f8").tobytes(),
                "arrived": np.fromiter((m.arrived for m in part), float, len(part))
                .astype("<f8")
                .tobytes(),
                "row": np.fromiter((m.row for m in part), np.int64, len(part))
                .astype("<i8")
                .tobytes(),
            }
            if names is not None:
                matrix = np.array(
                    [[m.proba[c] if m.proba else None for c in names] for m in part],
                    dtype=float,
                )
                buffers["proba"] = matrix.astype("<f8").tobytes()
            extra_names: dict[str, None] = {}
            for m in part:
                extra_names.update(dict.fromkeys(m.extra or ()))
            header = {
                "n": len(part),
                "deployment": key[0],
                "model_name": key[1],
                "model_version": key[2],
                "run_id": key[3],
                "role": key[4],
                "classes": list(names) if names is not None else None,
                "request_id": [m.request_id for m in part],
                "prediction": [m.prediction for m in part],
                "outcome": [m.outcome for m in part],
                "extra": {name: [(m.extra or {}).get(name) for m in part] for name in extra_names},
                "buffers": list(buffers),
            }
            head = dumps(header)
            data = b"".join((MAGIC, struct.pack("<I", len(head)), head, *buffers.values()))
            blocks.append(Block(key[0], float(ts.min()), float(ts.max()), len(part), data))
    return blocks


def _decode(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    import numpy as np

    if not data.startswith(MAGIC):
        raise ValueError("not an outcome block")
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    header = loads(data[start : start + size])
    n = int(header["n"])
    offset = start + size
    arrays: dict[str, np.ndarray] = {}
    for name in header["buffers"]:
        dtype = "<i8" if name == "row" else "<f8"
        count = n * len(header["classes"]) if name == "proba" else n
        arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        offset += arrays[name].nbytes
    return header, arrays


def decode_blocks(
    blobs: Iterable[bytes], since: float | None = None, until: float | None = None
) -> pd.DataFrame:
    """The blocks' rows with ``since <= ts < until`` as the :func:`read_outcomes` frame,
    oldest prediction first."""
    import numpy as np
    import pandas as pd

    decoded = [_decode(bytes(blob)) for blob in blobs]
    sizes = [int(h["n"]) for h, _ in decoded]
    total = sum(sizes)
    classes: dict[str, None] = {}
    extras: dict[str, None] = {}
    for header, _ in decoded:
        classes.update(dict.fromkeys(header["classes"] or ()))
        extras.update(dict.fromkeys(header["extra"]))
    ts = np.empty(total)
    arrived = np.empty(total)
    row = np.empty(total, dtype=np.int64)
    proba = np.full((total, len(classes)), np.nan)
    request_id: list[str] = []
    prediction: list[Any] = []
    outcome: list[Any] = []
    extra: dict[str, list[Any]] = {name: [] for name in extras}
    group = np.empty(total, dtype=np.int32)
    labels: list[tuple[Any, ...]] = []
    position = {name: i for i, name in enumerate(classes)}
    start = 0
    for (header, arrays), n in zip(decoded, sizes, strict=True):
        stop = start + n
        ts[start:stop] = arrays["ts"]
        arrived[start:stop] = arrays["arrived"]
        row[start:stop] = arrays["row"]
        if header["classes"]:
            at = [position[c] for c in header["classes"]]
            proba[start:stop, at] = arrays["proba"].reshape(n, len(at))
        request_id.extend(header["request_id"])
        prediction.extend(header["prediction"])
        outcome.extend(header["outcome"])
        for name, values in extra.items():
            values.extend(header["extra"].get(name) or [None] * n)
        key = tuple(header[k] for k in ("deployment", "model_name", "model_version", "run_id"))
        labels.append((*key, header["role"]))
        group[start:stop] = len(labels) - 1
        start = stop
    keep = np.ones(total, dtype=bool)
    if since is not None:
        keep &= ts >= since
    if until is not None:
        keep &= ts < until
    order = np.flatnonzero(keep)
    order = order[np.argsort(ts[order], kind="stable")]
    full = len(order) == total and bool(np.all(order == np.arange(total)))

    def pick(values: list[Any]) -> Any:
        if full:
            return values
        picked = np.empty(total, dtype=object)
        picked[:] = values
        return picked[order]

    def label(field: int) -> np.ndarray:
        names = np.empty(len(labels), dtype=object)
        names[:] = [item[field] for item in labels]
        return names[group[order]]

    when = pd.to_datetime(ts[order], unit="s", utc=True)
    came = pd.to_datetime(arrived[order], unit="s", utc=True)
    columns: dict[str, Any] = {
        "request_id": pick(request_id),
        "row": row[order],
        "timestamp": when,
        "arrived": came,
        "delay_s": arrived[order] - ts[order],
        "deployment": label(0),
        "model_name": label(1),
        "model_version": label(2),
        "run_id": label(3),
        "role": label(4),
        "prediction": _typed(pick(prediction)),
        "outcome": _typed(pick(outcome)),
    }
    for name, i in position.items():
        columns[f"proba_{name}"] = proba[order, i]
    for name, values in extra.items():
        columns[name if name not in columns else f"extra_{name}"] = _typed(pick(values))
    return pd.DataFrame(columns)


def _typed(values: Any) -> Any:
    """A column's values as pandas infers them (int64, float64, bool or object)."""
    import numpy as np
    import pandas as pd

    if not len(values):
        return np.empty(0, dtype=object)
    return pd.Series(values).infer_objects().to_numpy()
