"""``/invocations`` answered by MLflow's own scoring code, so it is a drop-in for
``mlflow models serve``.

Every request goes through ``mlflow.pyfunc.scoring_server.invocations`` (content types,
charset, the four JSON formats, CSV, Parquet, ``params``, signature enforcement, error codes
and messages) with a stand-in model: a real ``PyFuncModel`` over the served model's metadata
whose implementation hands the enforced input to the deployment's micro-batcher, so each
request is still batched, logged and counted. Answers are MLflow's bytes, status and media
type.

A fast path skips MLflow's parsing for the common request only when it provably gives the
same answer: ``application/json`` (charset utf-8 at most) holding exactly one
``dataframe_records`` or ``dataframe_split`` whose rows carry exactly the signature's columns,
every one ``double`` (a finite JSON number) or ``long`` (a JSON integer in int64 range), and a
model without params schema or type-hint signature. MLflow would build that very frame
(``astype`` float64/int64, columns in signature order); the answer is serialized with
MLflow's own ``predictions_to_json``. Anything else takes MLflow's path.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.serving.errors import InputError
from jupyter_mlops.serving.payload import (
    json_problem,
    parse_json,
    read_csv_rows,
    split_index_problem,
)
from jupyter_mlops.serving.validation import InputSpec, TableInput

__all__ = ["EnforcedInput", "fast_eligible", "fast_input", "invoke", "mlflow_json", "stand_in"]

_log = safe_logger("jupyter_mlops.serving")

JSON = "application/json"
_FAST_TYPES = ("double", "long")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class EnforcedInput:
    """An input MLflow parsed and enforced against the signature, predicted as it is;
    DataFrames of one layout join into one batch."""

    value: Any
    n_rows: int
    key: tuple[Any, ...] | None  # None: predicted alone

    @classmethod
    def of(cls, value: Any) -> EnforcedInput:
        if hasattr(value, "columns") and hasattr(value, "dtypes"):  # a DataFrame
            key = ("enforced", tuple(value.columns), tuple(str(t) for t in value.dtypes))
            return cls(value, len(value), key)
        shape = getattr(value, "shape", None)
        if shape:
            return cls(value, int(shape[0]), None)
        if isinstance(value, dict) and value:
            first = next(iter(value.values()))
            return cls(value, len(first) if hasattr(first, "__len__") else 1, None)
        return cls(value, len(value) if isinstance(value, list) else 1, None)

    @property
    def data(self) -> Any:
        """The input as the prediction log stores it (column lists, or JSON values)."""
        value = self.value
        if hasattr(value, "to_dict") and hasattr(value, "columns"):
            return value.to_dict(orient="list")
        if hasattr(value, "tolist"):
            return value.tolist()
        if isinstance(value, dict):
            return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in value.items()}
        return value


def fast_eligible(model: Any, spec: InputSpec) -> bool:
    """Whether a model's requests may take the fast path (see the module docstring)."""
    metadata = model.metadata
    if metadata is None or spec.columns is None:
        return False
    if any(c.type not in _FAST_TYPES for c in spec.columns):
        return False
    if metadata.get_params_schema() is not None:  # MLflow would pass default params
        return False
    for hint in ("_is_signature_from_type_hint", "_is_type_hint_from_example"):
        check = getattr(metadata, hint, None)
        if check is None or check():  # unknown MLflow: no fast path
            return False
    return True


def _plain_json(content_type: str | None) -> bool:
    """``application/json``, with at most ``charset=utf-8`` (read as MLflow reads it)."""
    if content_type is None:
        return False
    mime, *rest = (part.strip() for part in content_type.split(";"))
    if mime != JSON:
        return False
    for pair in rest:
        key, _, value = pair.partition("=")
        if key != "charset" or value.lower() != "utf-8":
            return False
    return True


def fast_input(body: bytes, content_type: str | None, spec: InputSpec) -> TableInput | None:
    """The request as column lists when the fast path answers it exactly as MLflow; else None."""
    import orjson

    if not _plain_json(content_type):
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or len(payload) != 1:
        return None
    (kind, data), = payload.items()  # fmt: skip
    columns = spec.columns or ()
    names = [c.name for c in columns]
    if kind == "dataframe_records":
        if not isinstance(data, list) or not data:
            return None
        wanted = set(names)
        for record in data:
            if not isinstance(record, dict) or len(record) != len(names) or record.keys() != wanted:
                return None
        table = {n: [r[n] for r in data] for n in names}
        n_rows = len(data)
    elif kind == "dataframe_split":
        if not isinstance(data, dict) or data.keys() != {"columns", "data"}:
            return None
        sent, rows = data["columns"], data["data"]
        if not isinstance(sent, list) or len(sent) != len(names) or set(sent) != set(names):
            return None
        if not isinstance(rows, list) or not rows:
            return None
        if not all(isinstance(r, list) and len(r) == len(sent) for r in rows):
            return None
        position = {name: i for i, name in enumerate(sent)}
        table = {n: [r[position[n]] for r in rows] for n in names}
        n_rows = len(rows)
    else:
        return None
    for column in columns:
        if not _exact(column.type, table[column.name]):
            return None
    return TableInput(table, n_rows, tuple(names))


def _exact(kind: str, values: list[Any]) -> bool:
    """Values MLflow casts to the column's dtype with no surprise (no null, NaN, bool)."""
    if kind == "double":
        for v in values:
            t = type(v)
            if t is float:
                if not math.isfinite(v):
                    return False
            elif t is not int:
                return False
        return True
    low, high = _INT64
    return all(type(v) is int and low <= v <= high for v in values)


class _Feeder:
    """The implementation under the stand-in PyFuncModel: MLflow calls its ``predict`` with
    the enforced input; it answers what the deployment's batcher answers."""

    def __init__(self, submit: Callable[[EnforcedInput, Any], Any]) -> None:
        self.submit = submit

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.submit(EnforcedInput.of(data), params)


def stand_in(model: Any, submit: Callable[[EnforcedInput, Any], Any]) -> Any:
    """A ``PyFuncModel`` with ``model``'s metadata whose predictions come from ``submit``
    (called in MLflow's thread with the enforced input and params)."""
    from mlflow.pyfunc import PyFuncModel

    return PyFuncModel(model.metadata, _Feeder(submit), model_id=getattr(model, "model_id", None))


def submitter(
    loop: asyncio.AbstractEventLoop, submit: Callable[[EnforcedInput, Any], Any]
) -> Callable[[EnforcedInput, Any], Any]:
    """``submit`` (a coroutine function run on ``loop``) callable from MLflow's thread; a
    failed prediction raises what the model raised, as MLflow's own server sees it."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, TEMPORARILY_UNAVAILABLE

    def call(value: EnforcedInput, params: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(submit(value, params), loop)
        try:
            return future.result()
        except Exception as exc:
            cause = exc.__cause__
            if isinstance(cause, Exception):
                raise cause from None
            status = getattr(exc, "status", 500)
            code = TEMPORARILY_UNAVAILABLE if status == 503 else INTERNAL_ERROR
            raise MlflowException(str(exc), error_code=code) from None

    return call


def invoke(body: bytes, content_type: str | None, model: Any) -> tuple[bytes, int, str]:
    """MLflow's scoring server's answer to one ``/invocations`` request: body, status, type."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST
    from mlflow.pyfunc import scoring_server

    schema = model.metadata.get_input_schema()
    try:
        problem = refused(body, content_type)
        if problem is not None:
            raise MlflowException(problem, error_code=BAD_REQUEST)
        try:
            result = scoring_server.invocations(body, content_type, model, schema)  # type: ignore[no-untyped-call]
        except MlflowException:
            raise
        except Exception as exc:  # MLflow's server would answer 500: the request's fault
            _log.warning("MLflow's scoring code failed on a request: %r", exc)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            message = f"Invalid input. {type(exc).__name__}: {first}"
            raise MlflowException(message, error_code=BAD_REQUEST) from None
    except MlflowException as exc:  # as its _async_catch_mlflow_exception answers
        text: str = exc.serialize_as_json()  # type: ignore[no-untyped-call]
        status: int = exc.get_http_status_code()  # type: ignore[no-untyped-call]
        return text.encode(), status, JSON
    text = result.response
    return (text.encode() if isinstance(text, str) else text), result.status, result.mimetype


def refused(body: bytes, content_type: str | None) -> str | None:
    """Why a request MLflow would take must be refused all the same, or None: JSON no model
    can take (lone surrogates, nesting MLflow's parser cannot follow, numbers beyond a
    double; see :mod:`~jupyter_mlops.serving.payload`), a ``dataframe_split`` whose index
    does not fit its rows, a CSV row with more values than the header (pandas would make
    the extra value the row's index), a body without a content type. Of the bodies, only those
    MLflow reads as UTF-8 JSON or CSV."""
    if content_type is None:  # MLflow's server fails on it (500)
        return (
            "Invalid input. The request has no Content-Type header: send application/json, "
            "text/csv or application/vnd.apache.parquet."
        )
    mime, *rest = (part.strip().lower() for part in content_type.split(";"))
    if any(p.startswith("charset=") and p != "charset=utf-8" for p in rest):
        return None
    if mime == JSON:
        problem = json_problem(body)
        if problem is None and b'"index"' in body:
            try:
                payload = parse_json(body)
            except InputError:
                return None  # MLflow says what is wrong
            split = payload.get("dataframe_split") if isinstance(payload, dict) else None
            problem = split_index_problem(split)
            if problem is not None:
                problem = (
                    "Provided dataframe_split field is not a valid dataframe representation "
                    f"in 'split' format. Error: '{problem}'"
                )
        return None if problem is None else f"Invalid input. {problem}"
    if mime == "text/csv":
        try:
            read_csv_rows(body.decode("utf-8"))
        except UnicodeDecodeError:
            return None  # MLflow says so
        except InputError as exc:
            return (
                "Failed to parse input as a Pandas DataFrame. Ensure that the input is a "
                "valid CSV-formatted Pandas DataFrame produced using the "
                f"`pandas.DataFrame.to_csv()` method. Error: '{exc.message}'"
            )
    return None


def mlflow_json(raw: Any) -> bytes:
    """``{"predictions": ...}`` as MLflow's scoring server writes ``raw``."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = io.StringIO()
    predictions_to_json(raw, out)  # type: ignore[no-untyped-call]
    return out.getvalue().encode()
