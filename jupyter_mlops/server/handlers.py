"""The REST handlers of the sidebar and their route table (described in ``openapi.yaml``).

Every verb is ``@tornado.web.authenticated``: a request without a valid Jupyter token gets
403. Handlers parse the request, run one blocking call of the views in a worker thread (so
the server keeps answering while MLflow reads), and answer JSON. Errors go through one helper:
an ``MlopsError`` answers with its class's ``http_status`` and ``details()``, MLflow's own
not-found/bad-request codes with 404/400, anything else with 500, always with a
``"message"``.
"""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado.ioloop import IOLoop

from jupyter_mlops import values
from jupyter_mlops._util.urls import redact_text, safe_logger
from jupyter_mlops.config import Config
from jupyter_mlops.errors import MlopsError, RequestError
from jupyter_mlops.server.views import DEFAULT_PAGE, SidebarViews

NAMESPACE = "jupyter-mlops"
VIEWS_KEY = "jupyter_mlops.views"
EXECUTOR_KEY = "jupyter_mlops.executor"
_log = safe_logger(__name__)

# MLflow's own error codes that mean "you asked for something that is not there / not valid".
_MLFLOW_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_MLFLOW_BAD_REQUEST = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"}


def error_reply(exc: BaseException, config: Config | None = None) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for an exception raised by the views (``config``: the
    project whose databases a SQLite error may come from)."""
    from jupyter_mlops.tracking.store import user_error

    exc = user_error(exc, config) or exc  # a damaged or unreachable store: which, how
    body: dict[str, Any] = {"message": redact_text(str(exc)) or type(exc).__name__}
    if isinstance(exc, MlopsError):  # each error class says its status and extra fields
        body.update(exc.details())
        return exc.http_status, body
    code = str(getattr(exc, "error_code", "") or "")
    if code in _MLFLOW_NOT_FOUND:
        return 404, body
    if code in _MLFLOW_BAD_REQUEST:
        return 400, body
    body["message"] = f"Internal error: {type(exc).__name__}: {redact_text(str(exc))}"
    return 500, body


class MlopsHandler(APIHandler):
    """Base of the sidebar's handlers: the views, a worker thread and JSON replies."""

    @property
    def views(self) -> SidebarViews:
        return self.settings[VIEWS_KEY]  # type: ignore[no-any-return]

    async def reply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` off the event loop and answer its result (or its error) as JSON."""
        executor = self.settings.get(EXECUTOR_KEY)
        try:
            result = await IOLoop.current().run_in_executor(
                executor, functools.partial(self.views.call, fn, *args, **kwargs)
            )
        except Exception as exc:
            status, body = error_reply(exc, self.views.config)
            if status == 500:  # the traceback for the server's log, minus its secrets
                trace = redact_text("".join(traceback.format_exception(exc)))
                self.log.error("jupyter-mlops: %s failed\n%s", self.request.path, trace)
            self.set_status(status)
            self.finish(json.dumps(body))
            return
        self.finish(json.dumps({"data": result} if isinstance(result, list) else result))

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish(json.dumps({"message": message}))

    def body(self) -> dict[str, Any]:
        """The request's JSON object body (400 if it is not one)."""
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise RequestError(f"The request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RequestError("The request body must be a JSON object")
        return data

    def int_argument(self, name: str, default: int) -> int:
        raw = self.get_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise RequestError(f"{name} must be a whole number, got {raw!r}") from None

    async def guarded(self, fn: Callable[[], Any]) -> None:
        """Parse with ``fn`` (which may raise RequestError), then reply."""
        try:
            call = fn()
        except MlopsError as exc:
            status, body = error_reply(exc)
            self.set_status(status)
            self.finish(json.dumps(body))
            return
        await self.reply(call)


def answer(view: str, doc: str) -> Callable[..., Awaitable[None] | None]:
    """The verb of a handler that only answers ``views.<view>(*path arguments)``, with the
    verb's ``doc`` (its JSON); authenticated like every verb."""

    async def verb(self: MlopsHandler, *path: str) -> None:
        await self.reply(getattr(self.views, view), *path)

    verb.__doc__ = doc
    return tornado.web.authenticated(verb)


class StatusHandler(MlopsHandler):
    get = answer(
        "status",
        """``{version, project_root, served_root, tracking_uri, stamp, features}``;
        ``stamp`` changes whenever the tracking store is written (the panel polls it).""",
    )


class ExperimentsHandler(MlopsHandler):
    get = answer(
        "experiments",
        "``{data: [{experiment_id, name, runs, last_run_time}]}``, latest activity first.",
    )


class RunsHandler(MlopsHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """``{runs: [...], next_page_token, total, stamp}``: one page, newest first.

        Query: ``experiment`` (id or name), ``text`` (words to find), ``where`` (e.g.
        ``metrics.accuracy >= 0.9``), ``limit`` (1-500, default 50), ``page_token``.
        """

        await self.guarded(
            lambda: functools.partial(
                self.views.runs,
                experiment=self.get_argument("experiment", None) or None,
                text=self.get_argument("text", None),
                where=self.get_argument("where", None),
                limit=self.int_argument("limit", DEFAULT_PAGE),
                page_token=self.get_argument("page_token", None) or None,
            )
        )


class RunHandler(MlopsHandler):
    get = answer(
        "run",
        """One run (path: its id): params, metrics, tags, models, data snapshots, cell source,
        notebook (``notebook_path`` is the path to open in JupyterLab, null if not served).""",
    )


class ModelsHandler(MlopsHandler):
    get = answer("models", "``{data: [{name, aliases, versions, history}]}``.")


class ModelHandler(MlopsHandler):
    get = answer("model", "``{name, aliases, versions, history}`` of one registered model.")


class ModelPromoteHandler(MlopsHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Body ``{version, alias, gate?, expected?}``: point the alias at the version, if
        the version's run passes ``gate`` (as ``%register --promote``) and the alias still
        points at ``expected`` (the holder the user saw; null: none; 409 if it moved).
        Answers the alias event. A version or ``expected`` that is no model version number
        (``"abc"``, 23 digits) is a 400 before the registry is asked."""

        def parse() -> Any:
            body = self.body()
            values.version_number(body.get("version"))
            if body.get("expected") is not None:
                values.version_number(body["expected"], "expected")
            return functools.partial(self.views.promote, name, body)

        await self.guarded(parse)


class ModelRollbackHandler(MlopsHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Body ``{alias}``: move the alias back to its previous holder. Answers the event."""

        await self.guarded(lambda: functools.partial(self.views.rollback, name, self.body()))


class DeploymentsHandler(MlopsHandler):
    get = answer(
        "deployments",
        """``{available, monitoring, message, deployments: [...]}`` with health, traffic
        split, while running ``figures`` (rps, p99_ms, error_rate, drift_share), and
        ``performance`` per model version (as ``deployments/<name>/performance``, at most
        30 s old).""",
    )


class DeploymentPerformanceHandler(MlopsHandler):
    get = answer(
        "performance",
        """``{deployment, window, task, metric, business, versions: [...], notes}``: per model
        version and role over the last hour, ``n_predictions``, ``n_labelled``, ``coverage``,
        ``delay_s_median``, the task's scores (``metric`` is the headline one), estimates and
        business metrics, from the predictions joined to their outcomes.""",
    )


class DeploymentStopHandler(MlopsHandler):
    post = answer(
        "stop_deployment", "Stop deployment ``name`` (no body). Answers the stopped deployment."
    )


class PipelinesHandler(MlopsHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """``{data: [{run_id, pipeline, status, started, ended, steps: [...]}]}``; query
        ``limit`` (default 20)."""
        await self.guarded(
            lambda: functools.partial(self.views.pipelines, self.int_argument("limit", 20))
        )


class PipelineHandler(MlopsHandler):
    get = answer("pipeline", "One pipeline run with its steps and links to the executed notebooks.")


class UnknownHandler(MlopsHandler):
    """Any other path under the API: a JSON 404 rather than an HTML page."""

    @tornado.web.authenticated
    async def get(self, path: str) -> None:
        self.fail(404, f"No endpoint {path!r} in the jupyter-mlops API")

    @tornado.web.authenticated
    async def post(self, path: str) -> None:
        self.fail(404, f"No endpoint {path!r} in the jupyter-mlops API")


_SEGMENT = r"([^/]+)"
ROUTES: list[tuple[str, type[MlopsHandler]]] = [
    ("status", StatusHandler),
    ("experiments", ExperimentsHandler),
    ("runs", RunsHandler),
    (f"runs/{_SEGMENT}", RunHandler),
    ("models", ModelsHandler),
    (f"models/{_SEGMENT}", ModelHandler),
    (f"models/{_SEGMENT}/promote", ModelPromoteHandler),
    (f"models/{_SEGMENT}/rollback", ModelRollbackHandler),
    ("deployments", DeploymentsHandler),
    (f"deployments/{_SEGMENT}/stop", DeploymentStopHandler),
    (f"deployments/{_SEGMENT}/performance", DeploymentPerformanceHandler),
    ("pipelines", PipelinesHandler),
    (f"pipelines/{_SEGMENT}", PipelineHandler),
]


def setup_handlers(web_app: Any, views: SidebarViews) -> None:
    """Register the routes under ``<base_url>/jupyter-mlops/api/`` with ``views``."""
    web_app.settings[VIEWS_KEY] = views
    web_app.settings.setdefault(
        EXECUTOR_KEY, ThreadPoolExecutor(max_workers=4, thread_name_prefix="jupyter-mlops")
    )
    base = url_path_join(web_app.settings["base_url"], NAMESPACE, "api")
    handlers: list[tuple[str, type[MlopsHandler]]] = [
        (url_path_join(base, path) + "/?$", handler) for path, handler in ROUTES
    ]
    handlers.append((url_path_join(base, "(.*)"), UnknownHandler))
    web_app.add_handlers(".*$", handlers)
