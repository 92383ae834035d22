"""The wire formats of the two scoring endpoints, and of every answer.

``POST /predict`` takes JSON records (one object or a list) and answers the predictions with
the request id and the model that answered. ``POST /invocations`` is MLflow's scoring protocol:
``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs`` as JSON, or CSV; it
answers ``{"predictions": [...]}`` as MLflow's own server does. Errors are JSON with an
``error_code``, a message meant for people and the request id. Parsing the payloads against
the model's signature is :mod:`~jupyter_mlops.serving.validation`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from jupyter_mlops.serving.errors import InputError
from jupyter_mlops.serving.payload import parse_json, too_deep
from jupyter_mlops.serving.validation import (
    InputSpec,
    RawInput,
    TableInput,
    csv_input,
    invocations_input,
    records_input,
)

__all__ = [
    "INVOCATIONS_OPENAPI",
    "JSON",
    "PREDICT_OPENAPI",
    "answer",
    "error_response",
    "json_response",
    "openapi_with_classes",
    "parse_request",
    "read_body",
]

JSON = "application/json"


def parse_request(
    endpoint: str, body: bytes, content_type: str | None, spec: InputSpec
) -> tuple[TableInput | RawInput, dict[str, Any] | None]:
    """The model input of a request body (and MLflow's ``params``, for ``invocations``)."""
    if endpoint == "predict":
        return records_input(_parse_json(body, spec), spec), None
    ctype = (content_type or JSON).split(";")[0].strip().lower()
    if ctype == "text/csv":
        return csv_input(body, spec), None
    if ctype in (JSON, "", "*/*") or ctype.endswith("+json"):
        return invocations_input(_parse_json(body, spec), spec)
    raise InputError(
        f"Unsupported content type {ctype!r}: send application/json or text/csv.",
        status=415,
        code="UNSUPPORTED_MEDIA_TYPE",
    )


def _parse_json(body: bytes, spec: InputSpec) -> Any:
    """The JSON body; for a model taking values unchecked (no signature, or a column of any
    type), refused when nested deeper than the model or the prediction log can take."""
    payload = parse_json(body)
    if spec.columns is None or any(c.type == "any" for c in spec.columns):
        problem = too_deep(payload)
        if problem is not None:
            raise InputError(problem, status=400, code="BAD_PAYLOAD")
    return payload


def answer(endpoint: str, outputs: Any, request_id: str, model: dict[str, Any]) -> dict[str, Any]:
    """The body answering a request: MLflow's shape for ``invocations``; for ``predict``,
    with the request id and the ``model`` (name, version, run id, role) that answered."""
    if endpoint == "predict":
        return {"predictions": outputs, "request_id": request_id, "model": model}
    return {"predictions": outputs}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; refused (413) beyond ``limit`` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InputError("Bad Content-Length header.", status=400, code="BAD_REQUEST") from None
        if size > limit:
            raise _too_large(size, limit)
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> InputError:
    return InputError(
        f"Request body of {size} bytes (or more) exceeds the limit of {limit} bytes; "
        "split it into smaller requests or use batch scoring.",
        status=413,
        code="PAYLOAD_TOO_LARGE",
    )


def json_response(payload: Any, status: int = 200) -> Response:
    """``payload`` as a JSON response (numpy values included). What orjson cannot write (a
    lone surrogate or an integer beyond 64 bits a model answered, say) is written by the
    standard library, which escapes it: the client gets an answer, never a reset."""
    try:
        body = orjson.dumps(payload, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:
        body = json.dumps(payload, default=str).encode()
    return Response(body, status_code=status, media_type=JSON)


def error_response(
    status: int, code: str, message: str, request_id: str, column: str | None = None
) -> Response:
    """An error answer: ``error_code``, ``message``, ``request_id`` (and ``column``)."""
    payload: dict[str, Any] = {"error_code": code, "message": message, "request_id": request_id}
    if column is not None:
        payload["column"] = column
    return json_response(payload, status)


_RECORD_EXAMPLE = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5}
_PREDICT_PARAMETER = {
    "name": "predict",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["label", "proba"]},
    "description": "label: the model's predict; proba: one {class: probability} per row, "
    "in the class order of /info (classifiers only; the default is the deployment's "
    "--predict).",
}
#: OpenAPI details of ``/predict`` (request body and the sticky routing header).
PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "oneOf": [
                        {"type": "object", "description": "one record: {column: value}"},
                        {"type": "array", "items": {"type": "object"}},
                    ]
                },
                "example": [_RECORD_EXAMPLE],
            }
        },
    },
    "parameters": [
        {
            "name": "X-Request-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Sticky routing key: the same key always reaches the same model.",
        },
        _PREDICT_PARAMETER,
    ],
}
#: OpenAPI details of ``/invocations``.
INVOCATIONS_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "description": "One of dataframe_split, dataframe_records, "
                    "instances or inputs (MLflow scoring protocol).",
                },
                "example": {"dataframe_records": [_RECORD_EXAMPLE]},
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    },
    "parameters": [_PREDICT_PARAMETER],
}


def openapi_with_classes(
    schema: dict[str, Any], classes: list[Any] | None, default: str
) -> dict[str, Any]:
    """The app's OpenAPI schema with what this deployment answers: the default ``predict``
    mode and, for a classifier, its class order and the shape of a probability row."""
    import copy

    schema = copy.deepcopy(schema)
    schema.setdefault("info", {})["x-predict"] = default
    schema["info"]["x-classes"] = classes
    label = {"description": "the model's prediction for the row (label)"}
    row: dict[str, Any] = label
    if classes is not None:
        names = [str(c) for c in classes]
        proba = {
            "type": "object",
            "description": f"probabilities per class, in the order {names}",
            "properties": {n: {"type": "number", "minimum": 0, "maximum": 1} for n in names},
            "required": names,
            "x-classes": classes,
        }
        row = {"oneOf": [label, proba]}
    for path in ("/predict", "/invocations"):
        operation = schema.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        for parameter in operation.get("parameters", []):
            if parameter.get("name") == "predict":
                parameter["schema"]["default"] = default
                if classes is not None:
                    parameter["description"] += f" Classes: {[str(c) for c in classes]}."
        predictions = {"type": "array", "items": row}
        properties: dict[str, Any] = {"predictions": predictions}
        if path == "/predict":
            properties |= {"request_id": {"type": "string"}, "model": {"type": "object"}}
        operation.setdefault("responses", {})["200"] = {
            "description": "Predictions, one per input row",
            "content": {JSON: {"schema": {"type": "object", "properties": properties}}},
        }
    return schema
