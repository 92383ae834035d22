"""The OpenAPI document as this deployment answers: request bodies from the served model's
signature, an example it accepts, and every status a route can answer.

FastAPI's generated schema knows the routes only; :func:`openapi_contract` adds what the
model and the deployment decide. The body schemas are the signature's columns (their JSON
types, required ones required, no others), so a body valid against the document is one the
server predicts, and one that is not gets a 4xx: schemathesis' conformance checks hold
(``tests/test_hardening_server.py``). The example is the model's logged input example (else
one built from the signature), sent as the docs page's "Try it out" sends it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from jupyter_mlops.serving.validation import Column, InputSpec

__all__ = ["example_record", "openapi_contract"]

JSON = "application/json"
#: JSON Schema of an MLflow column type; integers within what the type holds. A null in a
#: floating-point column is a missing value (NaN), as MLflow reads it.
_TYPES: dict[str, dict[str, Any]] = {
    "double": {"type": ["number", "null"]},
    "float": {"type": ["number", "null"]},
    "long": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "integer": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "boolean": {"type": "boolean"},
    "string": {"type": "string"},
}
#: A value of each type for an example built from the signature alone.
_SAMPLES: dict[str, Any] = {"double": 1.0, "float": 1.0, "long": 1, "integer": 1}
_SAMPLES |= {"boolean": True, "string": "a"}
#: Integer columns: no missing value there (MLflow cannot hold one in an int64 column).
_WHOLE = ("long", "integer")
_ERROR = {
    "type": "object",
    "properties": {
        "error_code": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "column": {"type": "string"},
    },
    "required": ["error_code", "message"],
}
#: Statuses a scoring route answers besides 200, as the project's JSON error.
_ERRORS = {
    "400": "Malformed or empty body, or rows of the wrong shape",
    "413": "Body above the deployment's max_body_bytes",
    "415": "Unsupported content type",
    "422": "Input that does not fit the model's signature",
    "500": "The model failed on this input",
    "503": "The prediction log cannot take the record (no prediction is answered)",
    "504": "The prediction did not finish within the deployment's timeout",
}
_AUTH_ERRORS = {"401": "No bearer token", "403": "Wrong bearer token"}


def example_record(spec: InputSpec, logged: dict[str, Any] | None) -> dict[str, Any] | None:
    """One record the model accepts: its logged example (signature columns only), else one
    value per column of the signature; None for a model without named columns."""
    if spec.columns is None:
        return {k: _json_value(v) for k, v in logged.items()} if logged else None
    if logged and all(c.name in logged for c in spec.columns if c.required):
        record = {c.name: _json_value(logged[c.name]) for c in spec.columns if c.name in logged}
        if all(record[c.name] is not None or c.type not in _WHOLE for c in spec.columns
               if c.name in record):  # fmt: skip
            return record
    if all(c.type in _SAMPLES for c in spec.columns):
        return {c.name: _SAMPLES[c.type] for c in spec.columns if c.required}
    return None


def _json_value(value: Any) -> Any:
    """``value`` as JSON holds it: NaN and infinities (a logged example may hold them) as
    null, which the server reads as the missing value they stand for."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _record_schema(columns: tuple[Column, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {c.name: dict(_TYPES.get(c.type, {})) for c in columns},
        "required": [c.name for c in columns if c.required],
        "additionalProperties": False,
    }


def _records_schema(columns: tuple[Column, ...], record: dict[str, Any]) -> dict[str, Any]:
    """A list of /predict records: one frame is built of them all, so a record may leave out
    a column that takes null (a missing value there) when another record has it."""
    nullable = {c.name for c in columns if "null" in _TYPES.get(c.type, {}).get("type", [])}
    required = record["required"]
    item = {**record, "required": [name for name in required if name not in nullable]}
    schema: dict[str, Any] = {"type": "array", "items": item, "minItems": 1}
    shared = [name for name in required if name in nullable]
    if shared:
        schema["allOf"] = [{"contains": {"required": [name]}} for name in shared]
    return schema


def _bodies(spec: InputSpec, example: dict[str, Any] | None, strict: bool) -> dict[str, Any]:
    """The request bodies of /predict and /invocations for ``spec`` (None: any JSON).

    MLflow's own ``/invocations`` (not ``strict``) builds one frame of all the records, so
    a record may leave a column out (it is null there) when another record has it."""
    if spec.columns is None:
        record: dict[str, Any] = {"type": "object"}
    else:
        record = _record_schema(spec.columns)
    records = {"type": "array", "items": record, "minItems": 1}
    if spec.columns is not None:
        records = _records_schema(spec.columns, record)
    predict: dict[str, Any] = {"schema": {"oneOf": [record, records]}}
    if not strict and spec.columns is not None:
        nullable = {c.name: {"anyOf": [dict(_TYPES.get(c.type, {})), {"type": "null"}]}
                    for c in spec.columns}  # fmt: skip
        records = {
            "type": "array",
            "items": {"type": "object", "properties": nullable, "additionalProperties": False},
            "minItems": 1,
            "allOf": [{"contains": {"required": [name]}} for name in record["required"]],
        }
    invocations: dict[str, Any] = {
        "schema": {
            "type": "object",
            "description": "MLflow's scoring protocol; dataframe_split, instances and inputs "
            "are accepted as well, and text/csv (as `mlflow models serve` takes them).",
            "properties": {"dataframe_records": records},
            "required": ["dataframe_records"],
            "additionalProperties": False,
        }
    }
    if example is not None:
        predict["example"] = [example]
        invocations["example"] = {"dataframe_records": [example]}
    return {"/predict": predict, "/invocations": invocations}


def _errors(codes: dict[str, str]) -> dict[str, Any]:
    content = {JSON: {"schema": _ERROR}}
    return {code: {"description": text, "content": content} for code, text in codes.items()}


def openapi_contract(
    schema: dict[str, Any],
    spec: InputSpec,
    example: dict[str, Any] | None,
    *,
    proba: bool,
    token: bool,
    strict: bool,
) -> dict[str, Any]:
    """``schema`` (FastAPI's) with the request bodies, examples, error answers, the content
    types of every route, ``?predict=proba`` only for a model with probabilities, and with
    a token the bearer scheme on all but the health checks. ``strict``: ``/invocations``
    validates as ``/predict`` does (``strict_invocations``)."""
    schema = copy.deepcopy(schema)
    paths = schema.get("paths", {})
    for path, body in _bodies(spec, example, strict).items():
        operation = paths.get(path, {}).get("post")
        if operation is None:
            continue
        operation["requestBody"]["content"][JSON] = body
        for parameter in operation.get("parameters", []):
            if parameter.get("name") == "predict":
                parameter["allowEmptyValue"] = True  # ?predict= asks for the default
                if not proba:  # answered 400 NO_PREDICT_PROBA
                    parameter["schema"]["enum"] = ["label"]
        operation["requestBody"]["content"].pop("text/csv", None)  # any text: not all CSV
        operation.setdefault("responses", {}).update(_errors(_ERRORS))
    texts = {"/metrics": "text/plain", "/version": JSON}
    for path, media in texts.items():
        operation = paths.get(path, {}).get("get")
        if operation is not None:
            operation["responses"]["200"]["content"] = {media: {"schema": {"type": "string"}}}
    health = paths.get("/health", {}).get("get")
    if health is not None:
        health["responses"]["503"] = {
            "description": "The models are still loading",
            "content": {JSON: {"schema": {"type": "object"}}},
        }
    if token:
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
        }
        for path, operations in paths.items():
            if path == "/health":
                continue
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
                operation.setdefault("responses", {}).update(_errors(_AUTH_ERRORS))
    return schema
