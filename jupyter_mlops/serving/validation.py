"""Request bodies -> model inputs, checked against the model's signature.

Every problem becomes an :class:`InputError` with an HTTP status and a message that names the
column and what is wrong with it (missing, unexpected, wrong type, a null MLflow refuses), so
clients can fix their request and the server stays up. Inputs are kept column-major
(``{column: [values]}``) so that the micro-batcher can join requests by concatenating lists,
build one DataFrame per batch, and the prediction log can store them as they came.

The checks follow MLflow's own signature enforcement (``mlflow.models.utils._enforce_schema``,
what ``mlflow.pyfunc`` and MLflow's scoring server apply), so a request is refused here exactly
when MLflow would refuse it: *required* means the column must be present, not that its values
must be set. ``null``/``NaN`` are accepted in double, float, string, boolean, binary and
datetime columns (a pipeline that imputes gets them as NaN/None); integer columns cannot hold
a missing value in MLflow, so a null there is refused. An optional column absent from a whole
request stays absent, as in MLflow; a record lacking a column that other records of the
request have gets null for it, as ``pandas.DataFrame(records)`` does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from jupyter_mlops.serving.errors import InputError
from jupyter_mlops.serving.payload import read_csv_rows, split_index_problem

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # an MLflow DataType name (double, long, string, ...) or "any"
    required: bool = True


@dataclass(frozen=True)
class InputSpec:
    """What the model accepts: named columns (checked), or anything (no signature/tensors)."""

    columns: tuple[Column, ...] | None
    # A model taking one unnamed tensor (PyTorch): its dtype, cast to like MLflow's server.
    tensor_dtype: str | None = None

    @classmethod
    def from_model(cls, model: Any) -> InputSpec:
        """The spec of a pyfunc model's input signature."""
        schema = model.metadata.get_input_schema() if model.metadata else None
        if schema is not None and schema.is_tensor_spec() and not schema.has_input_names():
            dtype = schema.inputs[0].type  # ints are not cast (no silent truncation)
            return cls(columns=None, tensor_dtype=str(dtype) if dtype.kind == "f" else None)
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return cls(columns=None)
        columns = []
        for spec in schema.inputs:
            kind = getattr(spec.type, "name", None)
            columns.append(
                Column(str(spec.name), kind if isinstance(kind, str) else "any", spec.required)
            )
        return cls(columns=tuple(columns))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns or ()]


@dataclass
class TableInput:
    """Validated rows, column-major; joinable with others of the same ``key``."""

    data: dict[str, list[Any]]
    n_rows: int
    key: tuple[str, ...]


@dataclass
class RawInput:
    """An input the server passes through untouched (tensor models); predicted alone."""

    value: Any
    n_rows: int = 1


# -- payload shapes -> TableInput ---------------------------------------------------------


def records_input(payload: Any, spec: InputSpec) -> TableInput:
    """``/predict``: a JSON object (one row) or a list of objects."""
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        raise InputError(
            f"Expected a JSON object or a list of objects, got {_json_type(payload)}.",
            status=400,
            code="BAD_PAYLOAD",
        )
    return from_records(payload, spec)


def invocations_input(payload: Any, spec: InputSpec) -> tuple[TableInput | RawInput, Any]:
    """``/invocations``: MLflow's JSON scoring formats; returns (input, params)."""
    if not isinstance(payload, dict):
        raise InputError(
            f"Expected a JSON object with one of the keys {', '.join(MLFLOW_FORMATS)}, "
            f"got {_json_type(payload)}.",
            status=400,
            code="BAD_PAYLOAD",
        )
    formats = [k for k in MLFLOW_FORMATS if k in payload]
    if len(formats) != 1:
        raise InputError(
            f"Expected exactly one of the keys {', '.join(MLFLOW_FORMATS)}; got keys "
            f"{sorted(payload)}.",
            status=400,
            code="BAD_PAYLOAD",
        )
    kind, data, params = formats[0], payload[formats[0]], payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise InputError("'params' must be a JSON object.", status=400, code="BAD_PAYLOAD")
    if kind == "dataframe_split":
        return from_split(data, spec), params
    if kind == "dataframe_records":
        if not isinstance(data, list):
            raise InputError(
                "'dataframe_records' must be a list of objects.", status=400, code="BAD_PAYLOAD"
            )
        return from_records(data, spec), params
    # instances / inputs (TF-serving style)
    if spec.columns is None:
        if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
            return from_records(data, spec), params
        if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
            return from_columns(data, spec), params
        return RawInput(data, len(data) if isinstance(data, list) else 1), params
    if isinstance(data, dict):
        if all(isinstance(v, list) for v in data.values()):
            return from_columns(data, spec), params
        return from_records([data], spec), params
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return from_records(data, spec), params
    if isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        return from_split({"columns": spec.names, "data": data}, spec), params
    raise InputError(
        f"'{kind}' must hold objects (one per row), lists (rows in the order "
        f"{spec.names}) or an object of columns.",
        status=400,
        code="BAD_PAYLOAD",
    )


def csv_input(body: bytes, spec: InputSpec) -> TableInput:
    """``text/csv`` bodies (MLflow accepts them too): a header row, then data rows."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("CSV body is not UTF-8.", status=400, code="BAD_PAYLOAD") from exc
    rows = read_csv_rows(text)
    if not rows:
        raise InputError(
            "Empty request body: send CSV with a header.", status=400, code="EMPTY_BODY"
        )
    header, data = rows[0], rows[1:]
    types = {c.name: c.type for c in spec.columns or ()}
    converted = [
        [_from_csv(v, types.get(h, "any")) for h, v in zip(header, r, strict=False)] for r in data
    ]
    return from_split({"columns": header, "data": converted}, spec)


def _from_csv(text: str, kind: str) -> Any:
    """A CSV cell as the JSON value a client would have sent for that column type."""
    if text == "":
        return None
    converters: tuple[Any, ...] = {
        "double": (float,),
        "float": (float,),
        "long": (int,),
        "integer": (int,),
        "any": (int, float),
    }.get(kind, ())
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), text)
    for convert in converters:
        try:
            return convert(text)
        except ValueError:
            continue
    return text  # left as text: the type check names the column if it is wrong


def from_split(data: Any, spec: InputSpec) -> TableInput:
    """``{"columns": [...], "data": [[...], ...]}`` (pandas split orient)."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputError(
            "'dataframe_split' must be an object with 'columns' and 'data' (a list of rows).",
            status=400,
            code="BAD_PAYLOAD",
        )
    rows = data["data"]
    columns = data.get("columns")
    if columns is None:
        columns = spec.names
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InputError("'columns' must be a list of names.", status=400, code="BAD_PAYLOAD")
    if not rows:
        raise InputError("No rows to predict.", status=400, code="EMPTY_BODY")
    problem = split_index_problem(data)
    if problem is not None:
        raise InputError(problem, status=400, code="BAD_PAYLOAD")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InputError(
                f"Row {i} has {len(row) if isinstance(row, list) else 'no'} values for "
                f"{len(columns)} columns.",
                status=400,
                code="BAD_PAYLOAD",
            )
    values = [list(col) for col in zip(*rows, strict=True)]
    return _check(dict(zip(columns, values, strict=True)), len(rows), spec)


def from_columns(data: dict[str, Any], spec: InputSpec) -> TableInput:
    """``{"col": [values], ...}`` (TF-serving columnar)."""
    lengths = {len(v) for v in data.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise InputError(
            "All columns must hold the same, non-zero number of values.",
            status=400,
            code="BAD_PAYLOAD",
        )
    return _check({str(k): list(v) for k, v in data.items()}, lengths.pop(), spec)


def from_records(records: list[Any], spec: InputSpec) -> TableInput:
    """A list of ``{column: value}`` objects."""
    if not records:
        raise InputError("No records to predict.", status=400, code="EMPTY_BODY")
    if spec.columns is None:
        names: dict[str, None] = {}
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise _not_object(i, rec)
            names.update(dict.fromkeys(rec))
        data = {n: [rec.get(n) for rec in records] for n in names}
        return TableInput(data, len(records), tuple(names))
    allowed = {c.name for c in spec.columns}
    seen_layouts: set[tuple[str, ...]] = set()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise _not_object(i, rec)
        layout = tuple(rec)
        if layout not in seen_layouts:  # clients repeat one layout: check each layout once
            extra = [k for k in layout if k not in allowed]
            if extra:
                raise _unexpected(extra[0], spec, record=i)
            seen_layouts.add(layout)
    data = {}
    for column in spec.columns:
        name = column.name
        try:
            data[name] = [rec[name] for rec in records]
        except KeyError:
            if any(name in layout for layout in seen_layouts):  # null where a record lacks it
                data[name] = [rec.get(name) for rec in records]
            elif column.required:
                raise _missing(column, spec) from None
    return _check(data, len(records), spec, already_named=True)


def _check(
    data: dict[str, list[Any]], n_rows: int, spec: InputSpec, *, already_named: bool = False
) -> TableInput:
    if spec.columns is None:
        return TableInput(data, n_rows, tuple(data))
    if not already_named:
        allowed = {c.name for c in spec.columns}
        extra = [k for k in data if k not in allowed]
        if extra:
            raise _unexpected(extra[0], spec)
        for column in spec.columns:
            if column.required and column.name not in data:
                raise _missing(column, spec)
        data = {c.name: data[c.name] for c in spec.columns if c.name in data}
    for column in spec.columns:
        if column.name in data:
            _check_values(column, data[column.name])
    return TableInput(data, n_rows, tuple(data))


def _missing(column: Column, spec: InputSpec) -> InputError:
    return InputError(
        f"Missing column {column.name!r} (required by the model's signature); expected "
        f"columns: {spec.names}.",
        code="MISSING_COLUMN",
        column=column.name,
    )


def _check_values(column: Column, values: list[Any]) -> None:
    """Refuse what MLflow's enforcement refuses; ``None`` and ``NaN`` are both "missing"."""
    kind = column.type
    if kind in ("double", "float"):
        low, high = _INT_RANGES["long"]
        for i, v in enumerate(values):
            t = type(v)
            if t is float:
                if math.isinf(v):
                    raise _out_of_range(column, i, v, "a finite number")
            elif t is int:
                if not low <= v <= high:
                    values[i] = float(v)  # as MLflow casts it; the log keeps 64-bit integers
            elif v is not None:
                _wrong(column, i, v, "a number")
    elif kind in ("long", "integer"):
        low, high = _INT_RANGES[kind]
        for i, v in enumerate(values):
            t = type(v)
            if t is float and v.is_integer():
                v = values[i] = int(v)  # 3.0 from a JSON encoder that writes numbers as floats
                t = int
            if t is int:
                if not low <= v <= high:
                    raise _out_of_range(column, i, v, f"an integer from {low} to {high}")
            elif v is None or (t is float and math.isnan(v)):
                raise _null_integer(column, i, "null" if v is None else "NaN")
            else:
                _wrong(column, i, v, "an integer")
    elif kind == "boolean":
        for i, v in enumerate(values):
            if type(v) is not bool and not _is_null(v):
                _wrong(column, i, v, "true or false")
    elif kind in ("string", "binary", "datetime"):
        for i, v in enumerate(values):
            if type(v) is not str and not _is_null(v):
                _wrong(column, i, v, "a string")


#: What MLflow's integer types hold (int64 and int32): beyond, numpy cannot cast the column.
_INT_RANGES = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}


def _out_of_range(column: Column, i: int, value: Any, expected: str) -> InputError:
    return InputError(
        f"Column {column.name!r} expects {expected} ({column.type}); record {i} has "
        f"{_short(value)}.",
        code="OUT_OF_RANGE",
        column=column.name,
    )


def _is_null(value: Any) -> bool:
    return value is None or (type(value) is float and math.isnan(value))


def _wrong(column: Column, i: int, value: Any, expected: str) -> None:
    raise InputError(
        f"Column {column.name!r} expects {expected} ({column.type}); record {i} has "
        f"{_json_type(value)} {_short(value)}.",
        code="WRONG_TYPE",
        column=column.name,
    )


def _null_integer(column: Column, i: int, what: str) -> InputError:
    """MLflow cannot put a missing value in an integer column (pandas makes it float)."""
    return InputError(
        f"Column {column.name!r} is an integer column ({column.type}) and record {i} has "
        f"{what}: MLflow signatures allow no missing integers. Send a number, or log the "
        "model from data where this column has missing values (it becomes double).",
        code="MISSING_VALUE",
        column=column.name,
    )


def _unexpected(name: str, spec: InputSpec, record: int | None = None) -> InputError:
    where = "" if record is None else f" in record {record}"
    return InputError(
        f"Unexpected column {name!r}{where}; expected columns: {spec.names}.",
        code="UNEXPECTED_COLUMN",
        column=name,
    )


def _not_object(i: int, value: Any) -> InputError:
    return InputError(
        f"Record {i} must be a JSON object, got {_json_type(value)}.",
        status=400,
        code="BAD_PAYLOAD",
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any) -> str:
    if type(value) is float and not math.isfinite(value):
        return str(value)
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):  # deeply nested: its kind says enough
        return _json_type(value)
    if isinstance(value, int) and len(text) > 40:
        return f"an integer of {len(text.lstrip('-'))} digits"
    return text if len(text) <= 40 else text[:37] + "..."
