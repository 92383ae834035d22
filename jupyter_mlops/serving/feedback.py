"""``POST /feedback``: outcomes for the predictions this deployment answered, as Seldon's
feedback endpoint takes them.

The body is one object or a list: ``{"request_id": "...", "outcome": 1}`` plus optional
``row``, ``arrived`` and extra (business) fields; the answer is ``{"accepted": n,
"request_ids": [...]}`` once the outcomes are committed to the deployment's outcome store
(the prediction log's database), so a ``kill -9`` right after the answer loses nothing. A
refused batch stores nothing and is answered with the server's usual error body, its
``error_code`` (404 UNKNOWN_REQUEST_ID, 409 DUPLICATE_OUTCOME, 422 OUTCOME_TYPE, 400
BAD_PAYLOAD) and ``rejected``, every refused item. The work is
:func:`~jupyter_mlops.predlog.outcomes.ingest_outcomes`, run on one thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from jupyter_mlops._util.layout import JOURNAL_DIR
from jupyter_mlops._util.urls import redact_text, safe_logger
from jupyter_mlops.errors import OutcomeError
from jupyter_mlops.predlog.base import PredictionStore, loads, open_prediction_store
from jupyter_mlops.predlog.outcomes import OutcomeReceipt, ingest_outcomes
from jupyter_mlops.serving.errors import InputError, ServingError
from jupyter_mlops.serving.protocols import JSON, error_response, json_response, read_body

__all__ = ["FEEDBACK_OPENAPI", "Feedback"]

_log = safe_logger("jupyter_mlops.serving")

_ITEM = {
    "type": "object",
    "required": ["request_id", "outcome"],
    "properties": {
        "request_id": {
            "type": "string",
            "minLength": 1,
            "description": "The id the prediction answered",
        },
        "outcome": {
            "description": "The true class (classifiers) or value (regressors); a list "
            "labels rows row, row+1, ... of a multi-row request",
            "anyOf": [
                {"type": ["string", "number", "boolean"]},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": ["string", "number", "boolean"]},
                },
            ],
        },
        "row": {"type": "integer", "minimum": 0, "description": "Row of the request (0)"},
        "arrived": {
            "type": "number",
            "description": "When the outcome became known, epoch seconds (default: now; "
            "an ISO 8601 time as text is taken too)",
        },
    },
    "additionalProperties": {
        "type": ["string", "number", "boolean", "null"],
        "description": "Extra fields (business figures such as order_value)",
    },
}
_ERROR = {
    "type": "object",
    "properties": {
        "error_code": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "rejected": {"type": "array", "items": {"type": "object"}},
    },
}
_STATUSES = {
    "400": "Malformed JSON or a record without request_id/outcome (BAD_PAYLOAD)",
    "404": "A request id (or row) this deployment never answered (UNKNOWN_REQUEST_ID)",
    "409": "An outcome already recorded, or twice in the batch (DUPLICATE_OUTCOME)",
    "413": "Body above the deployment's max_body_bytes",
    "422": "An outcome that does not fit the model's task (OUTCOME_TYPE)",
    "503": "The outcome store cannot be written (nothing was stored)",
}
#: OpenAPI details of ``/feedback``.
FEEDBACK_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {"anyOf": [_ITEM, {"type": "array", "items": _ITEM, "minItems": 1}]},
                "example": {"request_id": "0b5c3f...", "outcome": 1},
            }
        },
    },
    "responses": {
        "200": {
            "description": "Stored (durable before this answer)",
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "accepted": {"type": "integer"},
                            "request_ids": {"type": "array", "items": {"type": "string"}},
                        },
                    }
                }
            },
        },
        **{
            status: {"description": text, "content": {JSON: {"schema": _ERROR}}}
            for status, text in _STATUSES.items()
        },
    },
}


def _parse(body: bytes) -> Any:
    """The JSON body (integers beyond 64 bits too, which orjson refuses)."""
    try:
        return loads(body)
    except ValueError:
        try:
            return json.loads(body)
        except ValueError:
            raise OutcomeError("The body is not valid JSON.", "BAD_PAYLOAD") from None


class Feedback:
    """The outcome store of one server process (opened on first use, used from one thread)."""

    def __init__(self, folder: Path, state: dict[str, Any]) -> None:
        self.name = str(state["name"])
        self.url = state.get("prediction_log")
        self.journal = folder / JOURNAL_DIR
        self._store: PredictionStore | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="feedback")

    def _record(self, payload: Any) -> OutcomeReceipt:
        if self._store is None:
            self._store = open_prediction_store(str(self.url))
        return ingest_outcomes(self._store, self.name, payload, journal=self.journal)

    async def handle(self, request: Request, max_body: int) -> Response:
        """Read, check and store one ``/feedback`` body; answer its receipt or refusal."""
        request_id = request.scope["state"]["request_id"]
        try:
            body = await read_body(request, max_body)
            if not self.url:
                raise InputError(
                    f"Deployment {self.name!r} keeps no prediction log: outcomes cannot be "
                    "joined to its predictions (deploy with prediction_log=True).",
                    status=409,
                    code="NO_PREDICTION_LOG",
                )
            payload = _parse(body)
            loop = asyncio.get_running_loop()
            receipt = await loop.run_in_executor(self._pool, self._record, payload)
        except InputError as exc:
            return error_response(exc.status, exc.code, exc.message, request_id)
        except OutcomeError as exc:
            answer = {
                "error_code": exc.code,
                "message": exc.message,
                "request_id": request_id,
                "rejected": exc.rejected,
            }
            return json_response(answer, exc.http_status)
        except ServingError as exc:  # the store cannot be reached: nothing was stored
            self._drop()
            return error_response(503, "OUTCOME_STORE_UNAVAILABLE", exc.args[0], request_id)
        except Exception as exc:  # a bug of ours: answer it as one, and keep serving
            _log.exception("feedback %s failed", request_id)
            self._drop()
            message = redact_text(f"{type(exc).__name__}: {exc}")
            return error_response(500, "INTERNAL_ERROR", message, request_id)
        return json_response({"accepted": receipt.accepted, "request_ids": receipt.request_ids})

    def _drop(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            self._pool.submit(store.close)  # its connection belongs to the pool's thread

    def close(self) -> None:
        self._drop()
        with contextlib.suppress(Exception):
            self._pool.shutdown(wait=True)
