"""The server runtime of one worker process: its models, the routing between primary and
canary, the prediction log, and the watch on the deployment's state.

When the state changes (canary, promote, rollback) the runtime loads any new model *before*
switching, swaps the routing table in one assignment, and acknowledges the new generation in
``acks/<pid>.json``. Requests already routed finish on the model they picked, so a switch
fails no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import random
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from jupyter_mlops._util.layout import JOURNAL_DIR, read_state
from jupyter_mlops._util.urls import redact_text, safe_logger
from jupyter_mlops.predlog import LogWriter
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.batching import Pending, timed_out
from jupyter_mlops.serving.errors import InputError, PredictionError, ServingError
from jupyter_mlops.serving.gauges import PerformanceGauges, start_gauges, stop_gauges
from jupyter_mlops.serving.metrics import Metrics
from jupyter_mlops.serving.models import LoadedModel, load_model
from jupyter_mlops.serving.proba import no_proba_message, request_mode
from jupyter_mlops.serving.protocols import (
    JSON,
    answer,
    error_response,
    json_response,
    parse_request,
    read_body,
)
from jupyter_mlops.serving.scoring import fast_input, invoke, mlflow_json, stand_in, submitter
from jupyter_mlops.serving.state import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUEST_TIMEOUT_S,
    state_stamp,
    write_ack,
)

__all__ = ["RoutingTable", "ServingRuntime"]

_log = safe_logger("jupyter_mlops.serving")
#: Seconds between two looks at ``state.json``.
WATCH_INTERVAL_S = 0.1
#: Error codes of a PredictionError's status (others: PREDICTION_FAILED).
_ERROR_CODES = {422: "INVALID_INPUT", 504: "PREDICTION_TIMEOUT"}
#: Threads running MLflow's scoring code for ``/invocations`` requests off the fast path.
MLFLOW_THREADS = 32


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


class ServingRuntime:
    """Models, routing, prediction log and state watching of one worker process."""

    def __init__(self, folder: Path, state: dict[str, Any]) -> None:
        self.folder = folder
        self.state = state
        self.name = str(state["name"])
        self.max_body = int(state.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES)
        self.batching = dict(state.get("batching") or {})
        self.predict_mode = str(state.get("predict") or "label")  # what requests get by default
        # /invocations answers as MLflow's scoring server, or with our validation and errors
        self.strict_invocations = bool(state.get("strict_invocations"))
        # seconds from a request's arrival to its 504 (states written before: the default)
        self.timeout_s = float(state.get("request_timeout_s") or DEFAULT_REQUEST_TIMEOUT_S)
        self.metrics = Metrics(self.name)
        self.predict_pool = ThreadPoolExecutor(2, thread_name_prefix="predict")
        self.load_pool = ThreadPoolExecutor(1, thread_name_prefix="load")
        # MLflow's scoring code runs here; its threads mostly wait for the batcher, so
        # enough of them let concurrent requests meet in one batch.
        self.mlflow_pool = ThreadPoolExecutor(MLFLOW_THREADS, thread_name_prefix="mlflow")
        self.models: dict[str, LoadedModel] = {}
        self.table: RoutingTable | None = None
        self.log: LogWriter | None = None
        self._stamp: Any = None
        self._refused = 0  # a generation whose models could not be loaded
        self._watcher: asyncio.Task[None] | None = None
        self.gauges: PerformanceGauges | None = None
        self._gauges_task: asyncio.Task[None] | None = None
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
        if self.log is not None:  # outcomes live beside the logged predictions
            self.gauges, self._gauges_task = start_gauges(self.name, self.folder, self.served)
            self.metrics.add_collector(self.gauges)
        # The entry point disabled the collector for start-up; the models and modules loaded
        # so far live as long as the process, so keep them out of future collections.
        gc.freeze()
        gc.enable()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        await stop_gauges(self._gauges_task)
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
        self.mlflow_pool.shutdown(wait=False)

    def _new_model(self, ref: ModelRef) -> LoadedModel:
        loaded = LoadedModel(
            ref,
            load_model(ref),
            deployment=self.name,
            executor=self.predict_pool,
            log=self.log,
            metrics=self.metrics,
            batching=self.batching,
        )
        loaded.batcher.timeout_s = self.timeout_s
        if self.predict_mode == "proba" and loaded.proba is None:  # refused like a bad load
            raise ServingError(no_proba_message(ref.label))
        return loaded

    def served(self) -> dict[str, tuple[str, list[Any] | None]]:
        """Per loaded model version: its model name and class order (for the gauges)."""
        return {m.labels[1]: (m.labels[0], list(m.proba.classes) if m.proba else None)
                for m in list(self.models.values())}  # fmt: skip

    def classes(self) -> list[Any] | None:
        """The primary model's class order (None when it answers labels only)."""
        table = self.table
        proba = table.primary.proba if table is not None else None
        return list(proba.classes) if proba is not None else None

    async def apply(self, state: dict[str, Any], *, initial: bool = False) -> None:
        """Serve what ``state`` says: load new models first, then switch in one step."""
        generation = int(state.get("generation", 0))
        primary = ModelRef.from_dict(state["primary"])
        canary = ModelRef.from_dict(state["canary"]) if state.get("canary") else None
        loop = asyncio.get_running_loop()
        try:
            for ref in [r for r in (primary, canary) if r is not None]:
                if ref.uri not in self.models:
                    _log.info("loading %s (%s)", ref.label, ref.source or ref.uri)
                    self.models[ref.uri] = await loop.run_in_executor(
                        self.load_pool, self._new_model, ref
                    )
        except Exception as exc:
            message = redact_text(f"cannot load {ref.label}: {type(exc).__name__}: {exc}")
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
        self.metrics.set_traffic(
            [(m.labels, role, w, m.ref.run_id) for m, role, w in self.table.split()]
        )
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
        if endpoint == "invocations" and not self.strict_invocations:
            return await self.handle_mlflow(request)
        started, ts, request_id, model, role = self._route(request)
        status, rows = 200, 0
        try:
            body = await read_body(request, self.max_body)
            content_type = request.headers.get("content-type")
            output = request_mode(request.query_params.get("predict"), self.predict_mode)
            if output == "proba" and model.proba is None:
                raise InputError(
                    no_proba_message(model.ref.label), status=400, code="NO_PREDICT_PROBA"
                )
            inp, params = parse_request(endpoint, body, content_type, model.spec)
            pending = Pending(inp, params, request_id, started, ts, endpoint, role, output)
            outputs = await self._in_time(model.batcher.submit(pending), started)
            rows = inp.n_rows
            response = json_response(
                answer(endpoint, outputs, request_id, {**model.info, "role": role})
            )
        except InputError as exc:
            status = exc.status
            response = error_response(status, exc.code, exc.message, request_id, exc.column)
        except PredictionError as exc:
            status = exc.status
            code = _ERROR_CODES.get(status, "PREDICTION_FAILED")
            response = error_response(status, code, exc.message, request_id)
        except Exception as exc:  # a bug of ours: answer it as one, and keep serving
            _log.exception("request %s failed", request_id)
            status = 500
            message = redact_text(f"{type(exc).__name__}: {exc}")
            response = error_response(status, "INTERNAL_ERROR", message, request_id)
        response.headers["x-model-version"] = model.labels[1] or model.ref.uri
        self.metrics.observe(
            model.labels, role, endpoint, status, time.perf_counter() - started, rows
        )
        return response

    async def handle_mlflow(self, request: Request) -> Response:
        """``/invocations`` answered as ``mlflow models serve`` answers it (see
        :mod:`~jupyter_mlops.serving.scoring`), predicted by this deployment's batcher."""
        started, ts, request_id, model, role = self._route(request)
        rows, late = [0], [False]
        try:
            body = await read_body(request, self.max_body)
            output = request_mode(request.query_params.get("predict"), "label")
            if output == "proba" and model.proba is None:
                raise InputError(
                    no_proba_message(model.ref.label), status=400, code="NO_PREDICT_PROBA"
                )
        except InputError as exc:  # our extensions: the body limit and ?predict=
            response = error_response(exc.status, exc.code, exc.message, request_id, exc.column)
            return self._answered(response, model, role, started, 0)
        content_type = request.headers.get("content-type")

        async def submit(inp: Any, params: Any) -> Any:
            rows[0] += inp.n_rows
            pending = Pending(inp, params, request_id, started, ts, "invocations", role, output)
            try:
                return await self._in_time(model.batcher.submit(pending), started)
            except PredictionError as exc:
                late[0] = exc.status == 504
                raise

        def timeout_answer() -> Response:  # ours, not MLflow's: MLflow has no timeout
            error = timed_out(self.timeout_s)
            response = error_response(504, "PREDICTION_TIMEOUT", error.message, request_id)
            return self._answered(response, model, role, started, rows[0])

        fast = fast_input(body, content_type, model.spec) if model.fast else None
        if fast is not None:
            try:
                raw = await submit(fast, None)
                response = Response(mlflow_json(raw), media_type=JSON)
                return self._answered(response, model, role, started, rows[0])
            except Exception:  # any other failure: MLflow's path answers it
                if late[0]:
                    return timeout_answer()
            rows[0] = 0
        loop = asyncio.get_running_loop()
        standin = stand_in(model.model, submitter(loop, submit))
        try:
            content, status, media_type = await loop.run_in_executor(
                self.mlflow_pool, invoke, body, content_type, standin
            )
            response = Response(content, status_code=status, media_type=media_type)
        except Exception:  # as MLflow's server, whose app lets these through to Starlette
            _log.exception("request %s failed", request_id)
            response = Response("Internal Server Error", status_code=500, media_type="text/plain")
        if late[0]:
            return timeout_answer()
        return self._answered(response, model, role, started, rows[0])

    def _route(self, request: Request) -> tuple[float, float, str, LoadedModel, str]:
        """Arrival times, request id, and the model (and its role) answering ``request``."""
        started, ts = time.perf_counter(), time.time()
        table = self.table
        assert table is not None
        key = request.headers.get("x-request-key") or request.query_params.get("request_key")
        model, role = table.choose(key)
        return started, ts, request.scope["state"]["request_id"], model, role

    async def _in_time(self, waiting: Coroutine[Any, Any, Any], started: float) -> Any:
        """Await a prediction until ``timeout_s`` after the request arrived; then 504."""
        remaining = self.timeout_s - (time.perf_counter() - started)
        try:
            return await asyncio.wait_for(waiting, max(0.0, remaining))
        except TimeoutError:
            raise timed_out(self.timeout_s) from None

    def _answered(
        self, response: Response, model: LoadedModel, role: str, started: float, rows: int
    ) -> Response:
        response.headers["x-model-version"] = model.labels[1] or model.ref.uri
        self.metrics.observe(
            model.labels,
            role,
            "invocations",
            response.status_code,
            time.perf_counter() - started,
            rows,
        )
        return response

    def info(self) -> dict[str, Any]:
        """What this worker serves: models, versions, run ids and the traffic split."""
        table = self.table
        assert table is not None
        models = [
            {
                **m.info, "uri": m.ref.uri, "target": m.ref.target, "role": role, "weight": w,
                "classes": list(m.proba.classes) if m.proba is not None else None,
            }
            for m, role, w in table.split()
        ]  # fmt: skip
        if table.canary is not None and table.weight <= 0:
            models.append(
                {
                    **table.canary.info,
                    "uri": table.canary.ref.uri,
                    "role": "canary",
                    "target": table.canary.ref.target,
                    "weight": 0.0,
                    "classes": list(table.canary.proba.classes) if table.canary.proba else None,
                }
            )
        primary = table.primary.info
        return {
            "deployment": self.name,
            "model_name": primary["name"],
            "model_version": primary["version"],
            "run_id": primary["run_id"],
            "predict": self.predict_mode,
            "classes": self.classes(),
            "models": models,
            "traffic": {entry["role"]: entry["weight"] for entry in models},
            "generation": table.generation,
            "history": [h["model"] for h in self.state.get("history") or []],
            "pid": os.getpid(),
            "started_at": self.started_at,
        }
