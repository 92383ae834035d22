"""The model server: a FastAPI app serving a deployment's primary (and canary) model.

Only the server process imports this module (it imports FastAPI, and MLflow when models
load). One app serves one deployment folder: its :class:`ServingRuntime` loads the models named
in ``state.json`` and follows that file as it changes.

Endpoints: ``POST /predict`` (JSON records), ``POST /invocations`` (answered by MLflow's own
scoring code, as ``mlflow models serve`` answers; see :mod:`~jupyter_mlops.serving.scoring`),
``GET /health``, ``GET /ping`` (MLflow's), ``GET /info`` (models, versions, traffic),
``GET /version`` (the MLflow version, as MLflow's scoring server answers), ``GET /metrics``
(Prometheus), ``POST /feedback`` (outcomes of answered requests:
:mod:`~jupyter_mlops.serving.feedback`), plus ``/docs`` and ``/openapi.json`` (the served
model's columns, an example it accepts and every status:
:mod:`~jupyter_mlops.serving.contract`). Every response carries ``X-Request-ID``. With a
token, every endpoint but ``/health`` (and ``/ping``) needs ``Authorization: Bearer``.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from jupyter_mlops._util.layout import read_state
from jupyter_mlops.serving.auth import TokenAuth
from jupyter_mlops.serving.contract import example_record, openapi_contract
from jupyter_mlops.serving.errors import ServingError
from jupyter_mlops.serving.feedback import FEEDBACK_OPENAPI, Feedback
from jupyter_mlops.serving.protocols import (
    INVOCATIONS_OPENAPI,
    PREDICT_OPENAPI,
    json_response,
    openapi_with_classes,
)
from jupyter_mlops.serving.runtime import ServingRuntime
from jupyter_mlops.serving.state import token_required
from jupyter_mlops.serving.validation import InputSpec

__all__ = ["app_from_env", "create_app"]


def create_app(deployment_dir: str | os.PathLike[str]) -> FastAPI:
    """The ASGI app serving the deployment described in ``deployment_dir/state.json``."""
    folder = Path(deployment_dir).resolve()
    state = read_state(folder)
    if state is None:
        raise ServingError(f"No deployment state in {folder} (state.json missing).")
    runtime = ServingRuntime(folder, state)
    feedback = Feedback(folder, state)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            feedback.close()

    app = FastAPI(
        title=f"jupyter-mlops: {runtime.name}",
        description="Predictions from the deployment's MLflow model(s).",
        lifespan=lifespan,
    )
    app.state.runtime = runtime

    @app.post("/predict", openapi_extra=PREDICT_OPENAPI, summary="Predict JSON records")
    async def predict(request: Request) -> Response:
        """Predictions for one record or a list of records, with the request id and model."""
        return await runtime.handle(request, "predict")

    @app.post("/invocations", openapi_extra=INVOCATIONS_OPENAPI, summary="MLflow scoring protocol")
    async def invocations(request: Request) -> Response:
        """MLflow-compatible scoring: answers ``{"predictions": [...]}``."""
        return await runtime.handle(request, "invocations")

    @app.post("/feedback", openapi_extra=FEEDBACK_OPENAPI, summary="Outcomes of predictions")
    async def feedback_route(request: Request) -> Response:
        """Outcomes (ground truth) for answered request ids: one object or a list; stored
        before the answer, all or nothing."""
        return await feedback.handle(request, runtime.max_body)

    @app.get("/health", summary="Liveness and readiness")
    async def health() -> Response:
        """200 once the models are loaded (no token needed)."""
        ready = runtime.table is not None
        return json_response(
            {
                "status": "ok" if ready else "loading",
                "deployment": runtime.name,
                "generation": runtime.generation,
                "pid": os.getpid(),
            },
            200 if ready else 503,
        )

    @app.get("/ping", include_in_schema=False)
    async def ping() -> Response:
        """MLflow's health path, answered as its scoring server answers it."""
        ready = runtime.table is not None
        return Response("\n", status_code=200 if ready else 503, media_type="application/json")

    @app.get("/info", summary="Models, versions and traffic split")
    async def info() -> Response:
        return json_response(runtime.info())

    @app.get("/version", summary="MLflow version (as MLflow's scoring server answers)")
    async def version() -> Response:
        return Response(mlflow_version(), media_type="application/json")

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        body, content_type = runtime.metrics.render()
        return Response(body, media_type=content_type)

    def openapi() -> dict[str, Any]:
        """FastAPI's schema (built once) plus what the served model takes and answers, read
        per call because a promote may change the model: its columns, example and classes."""
        schema = openapi_with_classes(FastAPI.openapi(app), runtime.classes(), runtime.predict_mode)
        table = runtime.table
        spec = table.primary.spec if table is not None else InputSpec(columns=None)
        example = example_record(spec, table.primary.ref.example if table is not None else None)
        proba = runtime.classes() is not None
        return openapi_contract(
            schema,
            spec,
            example,
            proba=proba,
            token=token_required(state),
            strict=runtime.strict_invocations,
        )

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(TokenAuth, state=state, metrics=runtime.metrics)
    return app


def mlflow_version() -> str:
    """The installed MLflow's version (full or skinny), what ``mlflow models serve`` answers."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mlflow", "mlflow-skinny"):
        with contextlib.suppress(PackageNotFoundError):
            return version(dist)
    return "unknown"


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: the folder comes from the env."""
    gc.disable()  # as in __main__: re-enabled once the models are loaded
    folder = os.environ.get("JUPYTER_MLOPS_DEPLOYMENT_DIR")
    if not folder:
        raise ServingError("Set JUPYTER_MLOPS_DEPLOYMENT_DIR to the deployment folder.")
    return create_app(folder)
