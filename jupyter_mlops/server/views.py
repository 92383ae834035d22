"""What the sidebar asks for, as plain JSON-ready dicts, over the same core API as the magics.

``SidebarViews`` is built once per Jupyter server (see ``server.load``) and knows no HTTP:
every method is a blocking call that the handlers run in a worker thread. It only shapes
what the core returns (runs from ``tracking.runs.RunCatalog``, the registry, serving,
monitoring, pipelines) for the panel; the reading, caching and paging stay in the core.

Files: the views read the tracking store and the project's ``.mlops/`` folder only. Paths
that come from records (notebooks, executed pipeline notebooks) are turned into links only
when they resolve inside the folder Jupyter serves, and nothing from a request ever becomes
a file path without being checked against the project root.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.urls import redact_text, safe_logger
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError, NotFoundError, RequestError
from jupyter_mlops.server.shapes import (
    json_object,
    jsonable,
    pipeline_json,
    run_json,
    run_row,
    text_field,
)
from jupyter_mlops.tracking.runs.catalog import RunCatalog
from jupyter_mlops.tracking.store import unavailable_error

if TYPE_CHECKING:
    from jupyter_mlops.monitoring.live import LiveMonitor

_log = safe_logger(__name__)

DEFAULT_PAGE = 50
MAX_PAGE = 500
HISTORY_SHOWN = 50
LIVE_WINDOW = "5m"  # requests/s, p99 and errors over this window
DRIFT_EVERY_S = 60.0
FIGURES = ("rps", "p99_ms", "error_rate", "drift_share", "requests")
PERFORMANCE_WINDOW = "1h"  # model performance per version over this window of predictions
PERFORMANCE_EVERY_S = 30.0  # the deployments list recomputes it at most this often
_PIPELINE_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Recorded in the alias history: the change came from the sidebar, not a notebook.
_CONTEXT = {"notebook": None, "source": "jupyterlab-sidebar"}

_IMPORT_LOCK = threading.Lock()
_imported = False


def import_heavy() -> None:
    """Import MLflow and pandas once, one thread at a time.

    The handlers run in a thread pool and the views warm up in another thread: two
    threads importing MLflow for the first time at once deadlock on its protobuf modules
    ("deadlock detected by _ModuleLock('mlflow.protos.databricks_pb2')").
    """
    global _imported
    if _imported:
        return
    with _IMPORT_LOCK:
        if not _imported:
            from jupyter_mlops.client import quiet_mlflow

            with quiet_mlflow():
                import mlflow  # noqa: F401
                import pandas  # noqa: F401
            _imported = True


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise RequestError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")


def performance_json(report: Any) -> dict[str, Any]:
    """A ``PerformanceReport`` as the sidebar shows it: per model version and role, counts,
    label coverage and delay, the task's scores, estimates and business metrics over the
    whole window; ``metric`` names the headline score (accuracy, or RMSE for regressors)."""
    versions = []
    for record in report.totals.to_dict("records"):
        shown = {k: v for k, v in record.items() if not hasattr(v, "isoformat")}  # times
        versions.append(json_object(shown))
    return {
        "deployment": report.deployment,
        "window": report.window,
        "task": report.task,
        "metric": "rmse" if report.task == "regression" else "accuracy",
        "business": [str(getattr(m, "name", m)) for m in report.business],
        "versions": versions,
        "notes": {str(k): redact_text(str(v)) for k, v in report.notes.items()},
    }


def live_figures(monitor: LiveMonitor) -> dict[str, Any]:
    """Live figures of one running deployment as JSON: traffic over LIVE_WINDOW every
    call, drift at most every DRIFT_EVERY_S seconds (carried over in between)."""
    try:
        figs = monitor.snapshot().figures
    except Exception as exc:  # one deployment's metrics must not hide the others
        return {"error": redact_text(f"{type(exc).__name__}: {exc}")}
    out: dict[str, Any] = {k: figs.get(k) for k in FIGURES}
    out["notes"] = {k: redact_text(str(v)) for k, v in figs.notes.items() if k in FIGURES}
    out["window"] = figs.window
    return out


class SidebarViews:
    """The server extension's view of one project (the one containing Jupyter's root)."""

    def __init__(
        self, root_dir: str | Path, config: Config | None = None, *, allow_hidden: bool = False
    ) -> None:
        self.root_dir = Path(root_dir).resolve()  # what Jupyter's contents API serves
        self.config = config or load_config(self.root_dir)
        # Whether Jupyter opens files under dot-folders (executed pipeline notebooks live in
        # .mlops/); when it does not, the sidebar shows their path instead of a link.
        self.allow_hidden = allow_hidden
        self.catalog = RunCatalog(self.config)
        self._monitors: dict[str, LiveMonitor] = {}  # one throttle per deployment
        self._performance: dict[str, tuple[float, dict[str, Any]]] = {}  # name: (when, json)
        self.warmed = threading.Event()  # set once warm() is done (tests wait on it)

    @property
    def project_root(self) -> Path:
        return self.config.root

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` once the heavy imports are done (see ``import_heavy``)."""
        import_heavy()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # a 503 naming the store, not MLflow's 500 quoting its URL
            error = unavailable_error(exc, self.config)
            if error is None:
                raise
            raise error from None

    def warm(self) -> None:
        """Import the heavy libraries and read the runs once, so the first panel is fast."""
        try:
            import_heavy()
            if self.catalog.store_exists():
                self.catalog.frame()
                self.catalog.client()
        except Exception as exc:  # a broken store is reported when the panel asks
            _log.debug("warming the sidebar views failed: %s", exc)
        finally:
            self.warmed.set()

    # -- paths ---------------------------------------------------------------------------
    def contents_path(self, path: str | None) -> str | None:
        """The path Jupyter's contents API knows ``path`` (project-relative) by, if served.

        None when the file is outside the project or outside the folder Jupyter serves.
        """
        if not path:
            return None
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.project_root / candidate
        inside_project = _inside(candidate, self.project_root)
        if inside_project is None:
            return None
        served = _inside(inside_project, self.root_dir)
        return None if served is None else served.relative_to(self.root_dir).as_posix()

    def _link(self, path: str | None) -> tuple[str | None, bool]:
        """(path to open in JupyterLab, whether Jupyter hides it as a dot-folder's file)."""
        served = self.contents_path(path)
        if served is None:
            return None, False
        hidden = any(part.startswith(".") for part in Path(served).parts)
        if hidden and not self.allow_hidden:
            return None, True
        return served, hidden

    # -- status --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Project, store, the parts of the project the panel shows, and the store's stamp."""
        from jupyter_mlops._util.urls import redact
        from jupyter_mlops._version import __version__

        return {
            "version": __version__,
            "project_root": str(self.project_root),
            "served_root": str(self.root_dir),
            "tracking_uri": redact(self.config.tracking_uri),  # a database URI may hold one
            "stamp": self.catalog.stamp(),
            "features": {"serving": True, "monitoring": True, "pipelines": True},
        }

    # -- experiments and runs ------------------------------------------------------------
    def experiments(self) -> list[dict[str, Any]]:
        """Active experiments with their run counts, newest run first."""
        return self.catalog.experiments()

    def runs(
        self,
        *,
        experiment: str | None = None,
        text: str | None = None,
        where: str | None = None,
        limit: int = DEFAULT_PAGE,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        """One page of runs, newest first (see ``RunCatalog.page``)."""
        _check_limit(limit)
        page = self.catalog.page(
            limit=limit, experiment=experiment, text=text, where=where, page_token=page_token
        )
        return {
            "runs": [run_row(r) for r in page.records],
            "next_page_token": page.next_page_token,
            "total": page.total,
            "stamp": page.stamp,
        }

    def run(self, run_id: str) -> dict[str, Any]:
        """Everything the detail view shows about one run."""
        return run_json(self.catalog.details(run_id), self.contents_path)

    # -- registry ------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """Registered models: versions (newest first), aliases and recent alias history."""
        if not self.catalog.store_exists():
            return []
        import jupyter_mlops.registry as registry

        out = []
        for model in registry.list_models(config=self.config):
            # One odd model (a name refused here, a damaged history tag) is shown with its
            # ``problem``; it never turns the whole panel into an error.
            problems = [model.problem] if model.problem else []
            try:
                events = registry.history(model.name, config=self.config, skipped=problems)
            except MlopsError as exc:  # e.g. a name refused here: said once, in problem
                events = []
                if not model.problem:
                    problems.append(str(exc))
            out.append(
                jsonable(
                    {
                        "name": model.name,
                        "aliases": model.aliases,
                        "versions": model.versions,
                        "history": [asdict(e) for e in events[-HISTORY_SHOWN:]][::-1],
                        "problem": "; ".join(problems) or None,
                    }
                )
            )
        return out

    def model(self, name: str) -> dict[str, Any]:
        for model in self.models():
            if model["name"] == name:
                return model
        raise NotFoundError(f"No registered model {name!r}")

    def promote(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Body ``{version, alias, gate?, expected?}``: point ``name@alias`` at ``version``
        if it passes ``gate`` (as ``%register``) and the alias still points at ``expected``
        (the holder the caller saw; ``PromotionConflict`` if it moved)."""
        import jupyter_mlops.registry as registry

        version = str(text_field(body, "version"))
        alias = str(text_field(body, "alias"))
        gate = text_field(body, "gate", required=False)
        expected: dict[str, Any] = {}
        if "expected" in body:
            expected["expected"] = None if body["expected"] is None else str(body["expected"])
        if not version.isdigit():
            raise RequestError(f"version must be a number, got {version!r}")
        event = registry.promote(
            f"{name}/{version}", alias, gate=gate or None, context=dict(_CONTEXT), **expected
        )
        return json_object(asdict(event))

    def rollback(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Body ``{alias}``: move ``name@alias`` back to its previous holder (as
        ``%register --rollback``)."""
        import jupyter_mlops.registry as registry

        alias = str(text_field(body, "alias"))
        event = registry.rollback(name, alias, context=dict(_CONTEXT))
        return json_object(asdict(event))

    # -- deployments ---------------------------------------------------------------------
    def deployments(self) -> dict[str, Any]:
        """Deployments with health, traffic split and live figures."""
        from jupyter_mlops import serving

        out = []
        listed = serving.list_deployments(self.config)
        for dep in listed:
            item = dep.to_dict()
            item.pop("log_file", None)  # a server path the browser has no use for
            running = dep.status == "running"
            item["figures"] = live_figures(self._monitor(dep.name)) if running else None
            item["performance"] = self._performance_of(dep.name)
            out.append(jsonable(item))
        # A deployment whose state cannot be read is named with its path and fix.
        message = " ".join(f"{d.name}: {d}." for d in listed.damaged) or None
        damaged = [jsonable(d.to_dict()) for d in listed.damaged]
        return {
            "available": True,
            "monitoring": True,
            "message": message,
            "deployments": out,
            "damaged": damaged,
        }

    def _monitor(self, name: str) -> LiveMonitor:
        """The live monitor of deployment ``name`` (it keeps that deployment's drift throttle)."""
        if name not in self._monitors:
            from jupyter_mlops.monitoring.live import LiveMonitor

            self._monitors[name] = LiveMonitor(
                name, last=LIVE_WINDOW, drift_every=DRIFT_EVERY_S, rules=False, config=self.config
            )
        return self._monitors[name]

    def performance(self, name: str) -> dict[str, Any]:
        """Realised performance per model version of deployment ``name`` over
        PERFORMANCE_WINDOW, from its predictions joined to their outcomes (404: no such
        deployment)."""
        from jupyter_mlops.monitoring import performance

        report = performance(name, last=PERFORMANCE_WINDOW, config=self.config)
        return performance_json(report)

    def _performance_of(self, name: str) -> dict[str, Any]:
        """``performance(name)`` for the deployments list, recomputed at most every
        PERFORMANCE_EVERY_S seconds; a failure is its ``error``, never the list's."""
        import time

        now = time.monotonic()
        cached = self._performance.get(name)
        if cached is not None and now - cached[0] < PERFORMANCE_EVERY_S:
            return cached[1]
        try:
            shown = self.performance(name)
        except Exception as exc:  # e.g. no prediction log: said, without hiding the rest
            shown = {"versions": [], "error": redact_text(f"{type(exc).__name__}: {exc}")}
        self._performance[name] = (now, shown)
        return shown

    def stop_deployment(self, name: str) -> dict[str, Any]:
        from jupyter_mlops import serving

        item = serving.stop(name, config=self.config).to_dict()
        item.pop("log_file", None)
        return json_object(item)

    # -- pipelines -----------------------------------------------------------------------
    def pipelines(self, limit: int = 20) -> dict[str, Any]:
        """The newest pipeline runs with per-step status and links to executed notebooks."""
        from jupyter_mlops.pipelines import list_pipeline_runs

        _check_limit(limit)
        damaged: list[Any] = []  # a record that cannot be read is named, not a 500
        runs = list_pipeline_runs(config=self.config, limit=limit, damaged=damaged)
        return {
            "available": True,
            "message": " ".join(f"{d}." for d in damaged) or None,
            "runs": [pipeline_json(r, self._link) for r in runs],
            "damaged": [d.to_dict() for d in damaged],
        }

    def pipeline(self, run_id: str) -> dict[str, Any]:
        """One pipeline run (by id or unique prefix)."""
        from jupyter_mlops.pipelines import get_pipeline_run

        # The id becomes part of a glob under .mlops/pipelines: letters, digits, - _ . only.
        if not _PIPELINE_RUN_ID.fullmatch(run_id):
            raise NotFoundError(f"No pipeline run {run_id!r}")
        return pipeline_json(get_pipeline_run(run_id, config=self.config), self._link)


def _inside(path: Path, folder: Path) -> Path | None:
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return None
    return resolved if resolved.is_relative_to(folder) else None
