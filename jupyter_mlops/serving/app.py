"""The model server: a FastAPI app serving a deployment's primary (and canary) model.

Only the server process imports this module (it imports FastAPI, and MLflow when models
load). One app serves one deployment folder: it loads the models named in ``state.json``,
then watches that file; when the routing changes (canary, promote, rollback) it loads any new
model *before* switching, swaps the routing table in one assignment, and acknowledges the
new generation in ``acks/<pid>.json``. Requests already routed finish on the model they
picked, so a switch fails no request.

Endpoints: ``POST /predict`` (JSON records), ``POST /invocations`` (MLflow's scoring
formats and response shape), ``GET /health``, ``GET /version``, ``GET /metrics``
(Prometheus), plus ``/docs`` and ``/openapi.json``. Every response carries ``X-Request-ID``.
With a token, every endpoint but ``/health`` (and ``/ping``) needs ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from jupyter_mlops.predlog import LogWriter
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.batching import Batcher, Pending
from jupyter_mlops.serving.errors import InputError, PredictionError, ServingError, log_failed
from jupyter_mlops.serving.metrics import Metrics
from jupyter_mlops.serving.state import (
    JOURNAL_DIR,
    read_state,
    state_stamp,
    write_ack,
)
from jupyter_mlops.serving.targets import load_pyfunc, requirement_mismatches
from jupyter_mlops.serving.validation import (
    InputSpec,
    RawInput,
    TableInput,
    csv_input,
    invocations_input,
    parse_json,
    records_input,
    to_frame,
)

_log = logging.getLogger("jupyter_mlops.serving")
PUBLIC_PATHS = frozenset({"/health", "/ping"})
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
WATCH_INTERVAL_S = 0.1
_JSON = "application/json"


# -- models -------------------------------------------------------------------------------


def _rows_of(raw: Any) -> list[Any] | None:
    """Predictions as one JSON-able item per input row, or None when not row-shaped."""
    if hasattr(raw, "to_dict") and hasattr(raw, "columns"):  # DataFrame: records, like MLflow
        return raw.to_dict(orient="records")  # type: ignore[no-any-return]
    if hasattr(raw, "tolist"):  # ndarray, Series
        rows = raw.tolist()
        return rows if isinstance(rows, list) else None
    if isinstance(raw, list | tuple):
        return list(raw)
    return None


class LoadedModel:
    """A pyfunc model with its input spec, batcher and prediction-log hook."""

    def __init__(
        self,
        ref: ModelRef,
        model: Any,
        *,
        deployment: str,
        executor: ThreadPoolExecutor,
        log: LogWriter | None,
        metrics: Metrics,
        batching: dict[str, Any],
    ) -> None:
        self.ref = ref
        self.model = model
        self.deployment = deployment
        self.spec = InputSpec.from_model(model)
        self.log = log
        self.metrics = metrics
        self.labels = (ref.name or "", ref.version or "")
        self.info = {"name": ref.name, "version": ref.version, "run_id": ref.run_id}
        self.batcher = Batcher(
            self.run_batch,
            executor,
            enabled=bool(batching.get("enabled", True)),
            max_wait_s=float(batching.get("max_wait_ms", 2.0)) / 1000.0,
            max_rows=int(batching.get("max_batch_rows", 256)),
        )

    def _one_by_one(self, batch: Sequence[Pending]) -> tuple[list[Any], Future[None] | None]:
        outcomes: list[Any] = []
        pending: list[Future[None]] = []
        for p in batch:
            outcome, durable = self.run_batch([p])
            outcomes.extend(outcome)
            if durable is not None:
                pending.append(durable)
        return outcomes, _all_done(pending) if pending else None

    def _predict(self, data: Any, params: dict[str, Any] | None) -> Any:
        if params:
            return self.model.predict(data, params=params)
        return self.model.predict(data)

    def run_batch(self, batch: Sequence[Pending]) -> tuple[list[Any], Future[None] | None]:
        """Predict a batch in one call; one outcome (rows or exception) per request, and
        the future of their log records' group commit (None once already durable)."""
        first = batch[0]
        try:
            if isinstance(first.input, RawInput):
                raw = self._predict(_as_array(first.input.value), first.params)
                outputs: list[Any] = [_jsonable(raw)]
                total = first.input.n_rows
            else:
                if len(batch) == 1:
                    data = first.input.data
                else:
                    data = {
                        k: list(chain.from_iterable(p.input.data[k] for p in batch))  # type: ignore[union-attr]
                        for k in first.input.key
                    }
                total = sum(p.input.n_rows for p in batch)
                raw = self._predict(to_frame(data, self.spec), first.params)
                rows = _rows_of(raw)
                if rows is None or len(rows) != total:
                    if len(batch) > 1:  # not row-shaped: predict the requests one by one
                        return self._one_by_one(batch)
                    outputs = [_jsonable(raw)]
                else:
                    outputs, start = [], 0
                    for p in batch:
                        outputs.append(rows[start : start + p.input.n_rows])
                        start += p.input.n_rows
        except Exception as exc:
            if len(batch) > 1:  # isolate the request that broke the batch
                return self._one_by_one(batch)
            return [_prediction_failed(exc)], None
        self.metrics.observe_batch(self.labels, total)
        if self.log is None:
            return outputs, None
        done = time.perf_counter()
        try:
            durable = self.log.append(
                {
                    "request_id": p.request_id,
                    "ts": p.ts,
                    "deployment": self.deployment,
                    "model_name": self.ref.name,
                    "model_version": self.ref.version,
                    "run_id": self.ref.run_id,
                    "role": p.role,
                    "endpoint": p.endpoint,
                    "n_rows": p.input.n_rows,
                    "latency_ms": round((done - p.started) * 1000.0, 3),
                    "inputs": p.input.data if isinstance(p.input, TableInput) else p.input.value,
                    "outputs": out,
                }
                for p, out in zip(batch, outputs, strict=True)
            )
        except Exception as exc:  # no durable log entry, no answer
            _log.exception("prediction log write failed")
            return [log_failed(exc)] * len(batch), None
        return outputs, durable


def _all_done(futures: list[Future[None]]) -> Future[None]:
    """A future done when all ``futures`` are, failed if any failed."""
    combined: Future[None] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def one_done(done: Future[None]) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if done.exception() is not None and not combined.done():
            with contextlib.suppress(Exception):
                combined.set_exception(done.exception())  # type: ignore[arg-type]
        if last and not combined.done():
            with contextlib.suppress(Exception):
                combined.set_result(None)

    for future in futures:
        future.add_done_callback(one_done)
    return combined


def _as_array(value: Any) -> Any:
    import numpy as np

    return np.asarray(value)


def _jsonable(raw: Any) -> Any:
    rows = _rows_of(raw)
    if rows is not None:
        return rows
    if isinstance(raw, dict):
        return {k: _jsonable(v) for k, v in raw.items()}
    return raw


def _prediction_failed(exc: Exception) -> PredictionError:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    # MLflow's own schema enforcement: the input does not fit the model.
    status = 422 if "schema" in message.lower() or "incompatible" in message.lower() else 500
    return PredictionError(f"The model failed on this input: {message}", status=status)


def load_model(ref: ModelRef) -> Any:
    """Load ``ref`` (logging how the environment differs from its requirements) and warm it
    up: the first call of a freshly unpickled sklearn model is slower."""
    model = load_pyfunc(ref)
    for problem in requirement_mismatches(ref.source):
        _log.warning("%s: %s", ref.label, problem)
    if ref.example:
        with contextlib.suppress(Exception):
            spec = InputSpec.from_model(model)
            table = records_input(dict(ref.example), spec)
            model.predict(to_frame(table.data, spec))
    return model


# -- routing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingTable:
    """Which model answers: the primary, and the canary for ``weight`` percent of traffic."""

    primary: LoadedModel
    canary: LoadedModel | None
    weight: float
    generation: int

    def choose(self, key: str | None) -> tuple[LoadedModel, str]:
        """Pick a model; the same ``key`` always lands on the same side (sticky)."""
        if self.canary is None or self.weight <= 0:
            return self.primary, "primary"
        if key:
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") % 10000 / 100.0
        else:
            point = random.random() * 100.0
        return (self.canary, "canary") if point < self.weight else (self.primary, "primary")

    def split(self) -> list[tuple[LoadedModel, str, float]]:
        if self.canary is None or self.weight <= 0:
            return [(self.primary, "primary", 100.0)]
        return [
            (self.primary, "primary", 100.0 - self.weight),
            (self.canary, "canary", self.weight),
        ]


# -- the server runtime of one worker process ---------------------------------------------


class ServingRuntime:
    """Models, routing, prediction log and state watching of one worker process."""

    def __init__(self, folder: Path, state: dict[str, Any]) -> None:
        self.folder = folder
        self.state = state
        self.name = str(state["name"])
        self.max_body = int(state.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES)
        self.batching = dict(state.get("batching") or {})
        self.metrics = Metrics(self.name)
        self.predict_pool = ThreadPoolExecutor(2, thread_name_prefix="predict")
        self.load_pool = ThreadPoolExecutor(1, thread_name_prefix="load")
        self.models: dict[str, LoadedModel] = {}
        self.table: RoutingTable | None = None
        self.log: LogWriter | None = None
        self._stamp: Any = None
        self._refused = 0  # a generation whose models could not be loaded
        self._watcher: asyncio.Task[None] | None = None
        self.started_at = time.time()

    async def start(self) -> None:
        """Open the log, load the models of the current state, start watching the state."""
        if self.state.get("tracking_uri"):
            os.environ.setdefault("MLFLOW_TRACKING_URI", str(self.state["tracking_uri"]))
        if self.state.get("prediction_log"):
            self.log = LogWriter(
                self.folder / JOURNAL_DIR,
                str(self.state["prediction_log"]),
                durability=str(self.state.get("durability") or "write"),
            )
        self._stamp = state_stamp(self.folder)
        await self.apply(self.state, initial=True)
        # The entry point disabled the collector for start-up; the models and modules loaded
        # so far live as long as the process, so keep them out of future collections.
        gc.freeze()
        gc.enable()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for model in list(self.models.values()):
            await model.batcher.aclose()
        if self.log is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.log.close)
        self.predict_pool.shutdown(wait=False)
        self.load_pool.shutdown(wait=False)

    def _new_model(self, ref: ModelRef) -> LoadedModel:
        return LoadedModel(
            ref,
            load_model(ref),
            deployment=self.name,
            executor=self.predict_pool,
            log=self.log,
            metrics=self.metrics,
            batching=self.batching,
        )

    async def apply(self, state: dict[str, Any], *, initial: bool = False) -> None:
        """Serve what ``state`` says: load new models first, then switch in one step."""
        generation = int(state.get("generation", 0))
        primary = ModelRef.from_dict(state["primary"])
        canary = ModelRef.from_dict(state["canary"]) if state.get("canary") else None
        loop = asyncio.get_running_loop()
        try:
            for ref in (primary, canary):
                if ref is not None and ref.uri not in self.models:
                    _log.info("loading %s (%s)", ref.label, ref.source or ref.uri)
                    self.models[ref.uri] = await loop.run_in_executor(
                        self.load_pool, self._new_model, ref
                    )
        except Exception as exc:
            message = f"cannot load {ref.label}: {type(exc).__name__}: {exc}"
            if initial:
                raise ServingError(message) from exc
            _log.error("generation %s not applied: %s", generation, message)
            self._refused = generation  # the caller reverts with a newer generation
            write_ack(self.folder, generation, error=message)
            return
        weight = float(state.get("canary_weight") or 0.0) if canary is not None else 0.0
        self.table = RoutingTable(
            primary=self.models[primary.uri],
            canary=self.models[canary.uri] if canary is not None else None,
            weight=weight,
            generation=generation,
        )
        self.state = state
        # Keep the previous primary loaded too, so a rollback right after a promote is instant.
        keep = {primary.uri, *([canary.uri] if canary else [])}
        history = state.get("history") or []
        if history:
            keep.add(str(history[-1]["model"]["uri"]))
        for uri in [u for u in self.models if u not in keep]:
            del self.models[uri]  # requests already routed to it hold their own reference
        self.metrics.set_traffic([(m.labels, role, w) for m, role, w in self.table.split()])
        if not initial:
            gc.freeze()  # the new model lives long: keep it out of full collections too
        write_ack(self.folder, generation)
        _log.info(
            "generation %s: %s",
            generation,
            ", ".join(f"{m.ref.label} {role} {w:g}%" for m, role, w in self.table.split()),
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                stamp = state_stamp(self.folder)
                if stamp is None or stamp == self._stamp:
                    continue
                self._stamp = stamp
                state = read_state(self.folder)
                generation = int(state.get("generation", 0)) if state else 0
                if state and generation > self.generation and generation != self._refused:
                    await self.apply(state)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("state watch failed")

    @property
    def generation(self) -> int:
        return self.table.generation if self.table else 0

    # -- request handling -----------------------------------------------------------------

    async def handle(self, request: Request, endpoint: str) -> Response:
        """Route, read, validate, predict (micro-batched) and answer one request."""
        started, ts = time.perf_counter(), time.time()
        request_id = request.scope["state"]["request_id"]
        table = self.table
        assert table is not None
        key = request.headers.get("x-request-key") or request.query_params.get("request_key")
        model, role = table.choose(key)
        status, rows = 200, 0
        try:
            body = await _read_body(request, self.max_body)
            params = None
            if endpoint == "predict":
                inp: TableInput | RawInput = records_input(parse_json(body), model.spec)
            else:
                ctype = request.headers.get("content-type", _JSON).split(";")[0].strip().lower()
                if ctype == "text/csv":
                    inp = csv_input(body, model.spec)
                elif ctype in (_JSON, "", "*/*") or ctype.endswith("+json"):
                    inp, params = invocations_input(parse_json(body), model.spec)
                else:
                    raise InputError(
                        f"Unsupported content type {ctype!r}: send application/json or text/csv.",
                        status=415,
                        code="UNSUPPORTED_MEDIA_TYPE",
                    )
            pending = Pending(inp, params, request_id, started, ts, endpoint, role)
            outputs = await model.batcher.submit(pending)
            rows = inp.n_rows
            if endpoint == "predict":
                payload: dict[str, Any] = {
                    "predictions": outputs,
                    "request_id": request_id,
                    "model": {**model.info, "role": role},
                }
            else:
                payload = {"predictions": outputs}
            response = _json_response(payload)
        except InputError as exc:
            status = exc.status
            response = _error(status, exc.code, exc.message, request_id, exc.column)
        except PredictionError as exc:
            status = exc.status
            code = "INVALID_INPUT" if status == 422 else "PREDICTION_FAILED"
            response = _error(status, code, exc.message, request_id)
        except Exception as exc:  # a bug of ours: answer it as one, and keep serving
            _log.exception("request %s failed", request_id)
            status = 500
            response = _error(status, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}", request_id)
        response.headers["x-model-version"] = model.labels[1] or model.ref.uri
        self.metrics.observe(
            model.labels, role, endpoint, status, time.perf_counter() - started, rows
        )
        return response

    def version(self) -> dict[str, Any]:
        """What this worker serves: models, versions, run ids and the traffic split."""
        table = self.table
        assert table is not None
        models = [
            {**m.info, "uri": m.ref.uri, "target": m.ref.target, "role": role, "weight": w}
            for m, role, w in table.split()
        ]
        if table.canary is not None and table.weight <= 0:
            models.append(
                {
                    **table.canary.info,
                    "uri": table.canary.ref.uri,
                    "role": "canary",
                    "target": table.canary.ref.target,
                    "weight": 0.0,
                }
            )
        primary = table.primary.info
        return {
            "deployment": self.name,
            "model_name": primary["name"],
            "model_version": primary["version"],
            "run_id": primary["run_id"],
            "models": models,
            "traffic": {entry["role"]: entry["weight"] for entry in models},
            "generation": table.generation,
            "history": [h["model"] for h in self.state.get("history") or []],
            "pid": os.getpid(),
            "started_at": self.started_at,
        }


async def _read_body(request: Request, limit: int) -> bytes:
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


def _json_response(payload: Any, status: int = 200) -> Response:
    body = orjson.dumps(payload, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type=_JSON)


def _error(
    status: int, code: str, message: str, request_id: str, column: str | None = None
) -> Response:
    payload: dict[str, Any] = {"error_code": code, "message": message, "request_id": request_id}
    if column is not None:
        payload["column"] = column
    return _json_response(payload, status)


# -- ASGI: request ids and bearer tokens --------------------------------------------------


class Gate:
    """Pure ASGI middleware: a request id on every response, bearer token on all but health."""

    def __init__(self, app: Any, *, token_sha256: str | None, metrics: Metrics) -> None:
        self.app = app
        self.token_sha256 = token_sha256
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        if self.token_sha256 and scope["path"] not in PUBLIC_PATHS:
            refusal = self._refusal(scope)
            if refusal is not None:
                status, message = refusal
                self.metrics.refused(status)
                response = _error(
                    status, "UNAUTHORIZED" if status == 401 else "FORBIDDEN", message, request_id
                )
                if status == 401:
                    response.headers["www-authenticate"] = "Bearer"
                await response(scope, receive, send_with_id)
                return
        await self.app(scope, receive, send_with_id)

    def _refusal(self, scope: Any) -> tuple[int, str] | None:
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if auth is None:
            return (
                401,
                "This deployment needs a bearer token: send 'Authorization: Bearer <token>'.",
            )
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, "Send the token as 'Authorization: Bearer <token>'."
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        assert self.token_sha256 is not None
        if not hmac.compare_digest(digest, self.token_sha256):
            return 403, "Wrong token for this deployment."
        return None


# -- the app ------------------------------------------------------------------------------

_RECORD_EXAMPLE = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            _JSON: {
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
    ],
}
_INVOCATIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            _JSON: {
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
}


def create_app(deployment_dir: str | os.PathLike[str]) -> FastAPI:
    """The ASGI app serving the deployment described in ``deployment_dir/state.json``."""
    folder = Path(deployment_dir).resolve()
    state = read_state(folder)
    if state is None:
        raise ServingError(f"No deployment state in {folder} (state.json missing).")
    runtime = ServingRuntime(folder, state)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=f"jupyter-mlops: {runtime.name}",
        description="Predictions from the deployment's MLflow model(s).",
        lifespan=lifespan,
    )
    app.state.runtime = runtime

    @app.post("/predict", openapi_extra=_PREDICT_BODY, summary="Predict JSON records")
    async def predict(request: Request) -> Response:
        """Predictions for one record or a list of records, with the request id and model."""
        return await runtime.handle(request, "predict")

    @app.post("/invocations", openapi_extra=_INVOCATIONS_BODY, summary="MLflow scoring protocol")
    async def invocations(request: Request) -> Response:
        """MLflow-compatible scoring: answers ``{"predictions": [...]}``."""
        return await runtime.handle(request, "invocations")

    @app.get("/health", summary="Liveness and readiness")
    async def health() -> Response:
        """200 once the models are loaded (no token needed)."""
        ready = runtime.table is not None
        return _json_response(
            {
                "status": "ok" if ready else "loading",
                "deployment": runtime.name,
                "generation": runtime.generation,
                "pid": os.getpid(),
            },
            200 if ready else 503,
        )

    app.get("/ping", include_in_schema=False)(health)  # MLflow's health path

    @app.get("/version", summary="Models, versions and traffic split")
    async def version() -> Response:
        return _json_response(runtime.version())

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        body, content_type = runtime.metrics.render()
        return Response(body, media_type=content_type)

    app.add_middleware(Gate, token_sha256=state.get("token_sha256"), metrics=runtime.metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: the folder comes from the env."""
    gc.disable()  # as in __main__: re-enabled once the models are loaded
    folder = os.environ.get("JUPYTER_MLOPS_DEPLOYMENT_DIR")
    if not folder:
        raise ServingError("Set JUPYTER_MLOPS_DEPLOYMENT_DIR to the deployment folder.")
    return create_app(folder)
