"""What the sidebar asks for, as plain JSON-ready dicts, over the same core API as the magics.

``SidebarBackend`` is built once per Jupyter server (see ``handlers.setup_handlers``) and
knows no HTTP: every method is a blocking call that the handlers run in a worker thread.
It only shapes what the core returns (runs, registry, serving, monitoring, pipelines) for
presentation; the work stays in the core. Optional parts of the project (serving,
monitoring, pipelines) are imported lazily, and a missing one is reported as not
available rather than failing the whole panel.

Files: the backend reads the tracking store and the project's ``.mlops/`` folder only.
Paths that come from records (notebooks, executed pipeline notebooks) are turned into
links only when they resolve inside the folder Jupyter serves, and nothing from a request
ever becomes a file path without being checked against the project root.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import inspect
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError, RequestError
from jupyter_mlops.tracking.run import TAG_DATA, TAG_MODELS, TAG_NOTEBOOK, TAG_SOURCE_HASH

if TYPE_CHECKING:
    import pandas as pd

_log = logging.getLogger(__name__)

DEFAULT_PAGE = 50
LIVE_WINDOW = "5m"  # requests/s, p99 and errors over this window
DRIFT_EVERY_S = 60.0
FIGURES = ("rps", "p99_ms", "error_rate", "drift_share", "requests")
MAX_PAGE = 500
KEY_METRICS = 4
HISTORY_SHOWN = 50
_RUN_ID = re.compile(r"^[0-9a-fA-F]{1,32}$")
_PIPELINE_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HIDDEN_TAG_PREFIXES = ("mlflow.", "mlops.")


_IMPORT_LOCK = threading.Lock()
_imported = False


def import_heavy() -> None:
    """Import MLflow and pandas once, one thread at a time.

    The handlers run in a thread pool and the backend warms up in another thread: two
    threads importing MLflow for the first time at once deadlock on its protobuf modules
    ("deadlock detected by _ModuleLock('mlflow.protos.databricks_pb2')").
    """
    global _imported
    if _imported:
        return
    with _IMPORT_LOCK:
        if not _imported:
            from jupyter_mlops.tracking import store

            with store.quiet_mlflow():
                import mlflow  # noqa: F401
                import pandas  # noqa: F401
            _imported = True


@dataclass
class _FrameCache:
    stamp: Any
    frame: pd.DataFrame
    at: float


def _optional(module: str) -> Any | None:
    """``module`` if it can be imported (it may be built by another part of the project)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        _log.debug("%s not available: %s", module, exc)
        return None


def _jsonable(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _jsonable(value.item())
    return value


def _ms(value: Any) -> int | None:
    """A pandas Timestamp (or None/NaT) as epoch milliseconds."""
    if value is None:
        return None
    try:
        if value != value:  # NaT
            return None
        return int(value.value // 1_000_000)
    except (AttributeError, TypeError, ValueError):
        return None


def encode_token(start_ms: int | None, run_id: str) -> str:
    """An opaque page token: the sort key of the last run of the page (keyset paging)."""
    raw = json.dumps([start_ms, run_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[int | None, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        start_ms, run_id = json.loads(raw)
        if (start_ms is not None and not isinstance(start_ms, int)) or not isinstance(run_id, str):
            raise ValueError(raw)
    except (ValueError, TypeError, binascii.Error):
        raise RequestError(f"Invalid page_token {token!r}") from None
    return start_ms, run_id


class SidebarBackend:
    """The server extension's view of one project (the one containing Jupyter's root)."""

    def __init__(
        self, root_dir: str | Path, config: Config | None = None, *, allow_hidden: bool = False
    ) -> None:
        self.root_dir = Path(root_dir).resolve()  # what Jupyter's contents API serves
        self.config = config or load_config(self.root_dir)
        # Whether Jupyter opens files under dot-folders (executed pipeline notebooks live in
        # .mlops/); when it does not, the sidebar shows their path instead of a link.
        self.allow_hidden = allow_hidden
        self._frame: _FrameCache | None = None
        self._drift: dict[str, tuple[float, Any, Any]] = {}  # name -> (when, share, note)
        self._frame_lock = threading.Lock()
        self._refreshing = threading.Lock()
        self.warmed = threading.Event()  # set once warm() is done (tests wait on it)

    # -- helpers -----------------------------------------------------------------------
    @property
    def project_root(self) -> Path:
        return self.config.root

    def _inside(self, path: Path, folder: Path) -> Path | None:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            return None
        return resolved if resolved.is_relative_to(folder) else None

    def contents_path(self, path: str | None) -> str | None:
        """The path Jupyter's contents API knows ``path`` (project-relative) by, if served.

        None when the file is outside the project or outside the folder Jupyter serves.
        """
        if not path:
            return None
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.project_root / candidate
        inside_project = self._inside(candidate, self.project_root)
        if inside_project is None:
            return None
        served = self._inside(inside_project, self.root_dir)
        return None if served is None else served.relative_to(self.root_dir).as_posix()

    def _store_exists(self) -> bool:
        """False for a local store that was never written (nothing to show, nothing made)."""
        from jupyter_mlops.tracking.query import sqlite_path

        path = sqlite_path(self.config.tracking_uri)
        return path is None or path.is_file()

    def _client(self) -> Any:
        from jupyter_mlops.tracking import store

        return store.client(self.config)

    def store_stamp(self) -> str:
        """Something that changes whenever the tracking store is written (cheap to get).

        For the embedded SQLite store, the size and time of the database and its WAL file;
        for any other store, the newest run's start time and id (one small query).
        """
        from jupyter_mlops.tracking.query import sqlite_path

        path = sqlite_path(self.config.tracking_uri)
        if path is not None:
            parts = []
            for file in (path, path.with_name(path.name + "-wal")):
                try:
                    st = file.stat()
                except OSError:
                    continue
                if st.st_size:  # an empty WAL (made or truncated by a reader) changes nothing
                    parts.append(f"{st.st_mtime_ns}:{st.st_size}")
            return "/".join(parts) or "empty"
        from jupyter_mlops.tracking import store

        client = self._client()
        exps = [e.experiment_id for e in store.call(client.search_experiments)]
        if not exps:
            return "empty"
        newest = store.call(
            client.search_runs, exps, max_results=1, order_by=["attributes.start_time DESC"]
        )
        if not newest:
            return "empty"
        info = newest[0].info
        return f"{info.start_time}:{info.run_id}:{info.status}:{info.end_time}"

    def runs_frame(self) -> pd.DataFrame:
        """Every active run of the store, newest first (cached until the store changes)."""
        from jupyter_mlops.tracking.query import runs

        with self._frame_lock:  # one read at a time; a waiting caller then finds it cached
            stamp = self.store_stamp()
            cached = self._frame
            if cached is not None and cached.stamp == stamp:
                return cached.frame
            # Every active experiment: the server has no notebook, and the sidebar shows all
            # experiments even when the project names a default one.
            frame = runs(notebook="", config=replace(self.config, experiment=None))
            self._frame = _FrameCache(stamp, frame, time.time())
            return frame

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` once the heavy imports are done (see ``import_heavy``)."""
        import_heavy()
        return fn(*args, **kwargs)

    def warm(self) -> None:
        """Import the heavy libraries and read the runs once, so the first panel is fast."""
        try:
            import_heavy()
            if self._store_exists():
                self.runs_frame()
                self._client()
        except Exception as exc:  # a broken store is reported when the panel asks
            _log.debug("warming the sidebar backend failed: %s", exc)
        finally:
            self.warmed.set()

    # -- status --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Project, store, which optional parts are installed, and the store's stamp."""
        from jupyter_mlops._util.urls import redact
        from jupyter_mlops._version import __version__

        return {
            "version": __version__,
            "project_root": str(self.project_root),
            "served_root": str(self.root_dir),
            "tracking_uri": redact(self.config.tracking_uri),  # a database URI may hold one
            "stamp": self.store_stamp(),
            "features": {
                "serving": _optional("jupyter_mlops.serving") is not None,
                "monitoring": _optional("jupyter_mlops.monitoring") is not None,
                "pipelines": _optional("jupyter_mlops.pipelines") is not None,
            },
        }

    # -- experiments and runs ----------------------------------------------------------
    def experiments(self) -> list[dict[str, Any]]:
        """Active experiments with their run counts, newest run first."""
        if not self._store_exists():
            return []
        from jupyter_mlops.tracking import store

        frame = self.runs_frame()
        counts = frame.groupby("experiment_id").size().to_dict() if len(frame) else {}
        latest = frame.groupby("experiment_id")["start_time"].max().to_dict() if len(frame) else {}
        out = []
        for exp in store.call(self._client().search_experiments):
            exp_id = str(exp.experiment_id)
            out.append(
                {
                    "experiment_id": exp_id,
                    "name": exp.name,
                    "runs": int(counts.get(exp_id, 0)),
                    "last_run_time": _ms(latest.get(exp_id)),
                }
            )
        out.sort(key=lambda e: (e["last_run_time"] or 0, e["name"]), reverse=True)
        return out

    def runs(
        self,
        *,
        experiment: str | None = None,
        text: str | None = None,
        where: str | None = None,
        limit: int = DEFAULT_PAGE,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        """One page of runs, newest first, with ``next_page_token`` for the following one.

        ``experiment``: an id or a name; ``text``: case-insensitive words that must all
        appear in the run's name, id, experiment, status, notebook or params;
        ``where``: a metric/param filter in the ``%compare --where`` language, e.g.
        ``metrics.accuracy >= 0.9``. Paging is by the sort key of the last run shown, so
        runs that arrive meanwhile do not shift later pages.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise RequestError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        after = decode_token(page_token) if page_token else None
        empty = {"runs": [], "next_page_token": None, "total": 0, "stamp": self.store_stamp()}
        if not self._store_exists():
            return empty
        import numpy as np

        if not (experiment or where or text) and after is None and self._frame_stale():
            # The store changed since the runs were read (a %%track cell, a pipeline): the
            # newest page comes from MLflow's own paged search, which costs the same for 10
            # or 10,000 runs, while the full read for filters and totals goes on behind it.
            self._refresh_in_background()
            return self._newest_runs(limit)
        frame = self.runs_frame()
        stamp = self._frame.stamp if self._frame else None
        if experiment:
            mask = (frame["experiment_id"] == experiment) | (frame["experiment"] == experiment)
            if not mask.any() and not self._experiment_known(experiment):
                raise NotFoundError(f"No experiment {experiment!r}")
            frame = frame[mask.to_numpy()]
        if where and where.strip():
            from jupyter_mlops.tracking.query import Where

            condition = Where(where)
            frame = condition.apply(frame) if len(frame) else frame
        if text and text.strip():
            frame = frame[self._text_mask(frame, text)]
        total = len(frame)
        if after is not None:
            start_ms, last_id = after
            starts = frame["start_time"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
            ids = frame["run_id"].to_numpy(dtype=object)
            if start_ms is None:
                keep = ids > last_id
            else:
                keep = (starts < start_ms) | ((starts == start_ms) & (ids > last_id))
            frame = frame[keep]
        page = frame.head(limit)
        rows = [self._run_row(r) for r in page.to_dict("records")]
        token = None
        if len(frame) > limit and rows:
            token = encode_token(rows[-1]["start_time"], rows[-1]["run_id"])
        return {"runs": rows, "next_page_token": token, "total": total, "stamp": stamp}

    def _frame_stale(self) -> bool:
        cached = self._frame
        return cached is None or cached.stamp != self.store_stamp()

    def _refresh_in_background(self) -> None:
        if self._refreshing.acquire(blocking=False):

            def refresh() -> None:
                try:
                    self.runs_frame()
                except Exception as exc:  # reported by the next request that needs it
                    _log.debug("reading the runs failed: %s", exc)
                finally:
                    self._refreshing.release()

            threading.Thread(target=refresh, name="jupyter-mlops-runs", daemon=True).start()

    def _newest_runs(self, limit: int) -> dict[str, Any]:
        """The first page, newest first, from ``MlflowClient.search_runs`` (no total)."""
        from mlflow.entities import ViewType

        from jupyter_mlops.tracking import store
        from jupyter_mlops.tracking.query import _data_summary

        client = self._client()
        exps = store.call(client.search_experiments, view_type=ViewType.ACTIVE_ONLY)
        names = {str(e.experiment_id): e.name for e in exps}
        found = store.call(
            client.search_runs,
            list(names),
            max_results=limit + 1,
            order_by=["attributes.start_time DESC"],  # ties: run id, as the full read
        )
        rows = []
        for run in found[:limit]:
            info, data = run.info, run.data
            datasets = [
                (d.dataset.name, {t.key: t.value for t in d.tags}.get("mlops.content_hash"))
                for d in (run.inputs.dataset_inputs if run.inputs else [])
            ]
            end = info.end_time
            record = {
                "run_id": info.run_id,
                "run_name": info.run_name or data.tags.get("mlflow.runName"),
                "experiment": names.get(str(info.experiment_id), str(info.experiment_id)),
                "experiment_id": str(info.experiment_id),
                "status": info.status,
                "duration": (end - info.start_time) / 1000 if end and info.start_time else None,
                "data": _data_summary(data.tags.get(TAG_DATA), datasets),
                **{f"metrics.{k}": v for k, v in data.metrics.items()},
                **{f"tags.{k}": v for k, v in data.tags.items() if k in (TAG_MODELS, TAG_NOTEBOOK)},
            }
            row = self._run_row(record)
            row["start_time"] = info.start_time
            rows.append(row)
        token = None
        if len(found) > limit and rows:
            token = encode_token(rows[-1]["start_time"], rows[-1]["run_id"])
        # No total and no stamp: the panel asks again once the full read is done.
        return {"runs": rows, "next_page_token": token, "total": None, "stamp": None}

    def _experiment_known(self, experiment: str) -> bool:
        known = self.experiments()
        return any(experiment in (e["experiment_id"], e["name"]) for e in known)

    @staticmethod
    def _text_mask(frame: pd.DataFrame, text: str) -> Any:
        import numpy as np

        columns = ["run_name", "run_id", "experiment", "status"]
        if f"tags.{TAG_NOTEBOOK}" in frame.columns:
            columns.append(f"tags.{TAG_NOTEBOOK}")
        columns += [c for c in frame.columns if c.startswith("params.")]
        haystack = np.full(len(frame), "", dtype=object)
        for column in columns:
            values = frame[column].to_numpy(dtype=object)
            haystack = (
                haystack
                + " "
                + np.where([v is None or v != v for v in values], "", values.astype(str))
            )
        lowered = np.char.lower(haystack.astype(str))
        mask = np.ones(len(frame), dtype=bool)
        for word in text.lower().split():
            mask &= np.char.find(lowered, word) >= 0
        return mask

    @staticmethod
    def _run_row(record: Mapping[str, Any]) -> dict[str, Any]:
        metrics = {
            k.removeprefix("metrics."): v
            for k, v in sorted(record.items())
            if k.startswith("metrics.") and v is not None and v == v
        }
        models_raw = record.get(f"tags.{TAG_MODELS}")
        try:
            models = sorted(json.loads(models_raw)) if isinstance(models_raw, str) else []
        except ValueError:
            models = []
        duration = record.get("duration")
        return _jsonable(
            {
                "run_id": record["run_id"],
                "run_name": record.get("run_name") or "",
                "experiment": record.get("experiment"),
                "experiment_id": record.get("experiment_id"),
                "status": record.get("status"),
                "start_time": _ms(record.get("start_time")),
                "duration": duration if duration == duration else None,
                "metrics": dict(list(metrics.items())[:KEY_METRICS]),
                "metric_count": len(metrics),
                "data": record.get("data"),
                "notebook": record.get(f"tags.{TAG_NOTEBOOK}"),
                "models": models,
            }
        )

    def _resolve_run_id(self, run_id: str) -> str:
        """A full run id from an id or an unambiguous prefix; NotFoundError otherwise."""
        if not _RUN_ID.match(run_id):
            raise NotFoundError(f"No run {run_id!r}: run ids are 32 hexadecimal characters")
        run_id = run_id.lower()
        if len(run_id) == 32 or not self._store_exists():
            return run_id
        ids = self.runs_frame()["run_id"]
        found = ids[ids.str.startswith(run_id)].tolist()
        if len(found) == 1:
            return str(found[0])
        if len(found) > 1:
            raise RequestError(f"Run id prefix {run_id!r} is ambiguous: {', '.join(found[:5])}")
        raise NotFoundError(f"No run {run_id!r}")

    def run(self, run_id: str) -> dict[str, Any]:
        """Everything the detail view shows about one run."""
        from mlflow.exceptions import MlflowException

        from jupyter_mlops.tracking import store
        from jupyter_mlops.tracking.query import run_source

        full_id = self._resolve_run_id(run_id)
        if not self._store_exists():
            raise NotFoundError(f"No run {run_id!r}: the store is empty")
        client = self._client()
        try:
            run = store.call(client.get_run, full_id)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                raise NotFoundError(f"No run {run_id!r}") from None
            raise
        info, data = run.info, run.data
        tags = dict(data.tags)
        experiment = store.call(client.get_experiment, info.experiment_id)
        try:
            models = json.loads(tags.get(TAG_MODELS) or "{}")
        except ValueError:
            models = {}
        try:
            snapshots = json.loads(tags.get(TAG_DATA) or "[]")
        except ValueError:
            snapshots = []
        datasets = [
            {
                "name": d.dataset.name,
                "digest": d.dataset.digest,
                "content_hash": {t.key: t.value for t in d.tags}.get("mlops.content_hash"),
            }
            for d in (run.inputs.dataset_inputs if run.inputs else [])
        ]
        versions = store.call(client.search_model_versions, f"run_id = '{info.run_id}'")
        notebook = tags.get(TAG_NOTEBOOK)
        return _jsonable(
            {
                "run_id": info.run_id,
                "run_name": info.run_name or tags.get("mlflow.runName") or "",
                "experiment_id": info.experiment_id,
                "experiment": experiment.name if experiment else None,
                "status": info.status,
                "start_time": info.start_time,
                "end_time": info.end_time,
                "user": info.user_id,
                "params": dict(sorted(data.params.items())),
                "metrics": dict(sorted(data.metrics.items())),
                "tags": {
                    k: v for k, v in sorted(tags.items()) if not k.startswith(_HIDDEN_TAG_PREFIXES)
                },
                "models": [{"name": k, "uri": v} for k, v in sorted(models.items())],
                "registered_versions": [
                    {"name": v.name, "version": str(v.version)} for v in versions
                ],
                "data": snapshots,
                "datasets": datasets,
                "source": run_source(info.artifact_uri, info.run_id, self.config),
                "source_sha256": tags.get(TAG_SOURCE_HASH),
                "notebook": notebook,
                "notebook_path": self.contents_path(notebook),
                "git_commit": tags.get("mlflow.source.git.commit"),
                "git_dirty": tags.get("mlops.git.dirty"),
            }
        )

    # -- registry ------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """Registered models: versions (newest first), aliases and recent alias history."""
        if not self._store_exists():
            return []
        import jupyter_mlops.registry as registry

        out = []
        for model in registry.list_models(config=self.config):
            events = registry.history(model.name, config=self.config)
            out.append(
                _jsonable(
                    {
                        "name": model.name,
                        "aliases": model.aliases,
                        "versions": model.versions,
                        "history": [asdict(e) for e in events[-HISTORY_SHOWN:]][::-1],
                    }
                )
            )
        return out

    def model(self, name: str) -> dict[str, Any]:
        for model in self.models():
            if model["name"] == name:
                return model
        raise NotFoundError(f"No registered model {name!r}")

    def promote(
        self, name: str, version: str, alias: str, gate: str | None = None, **expected: Any
    ) -> dict[str, Any]:
        """Point ``name@alias`` at ``version``, if it passes ``gate`` (as ``%register``);
        ``expected=`` is the holder the caller saw (``PromotionConflict`` if it moved)."""
        import jupyter_mlops.registry as registry

        if not str(version).isdigit():
            raise RequestError(f"version must be a number, got {version!r}")
        if set(expected) - {"expected"}:
            raise RequestError(f"unknown fields {sorted(set(expected) - {'expected'})}")
        event = registry.promote(
            f"{name}/{version}", alias, gate=gate or None, context=self._context(), **expected
        )
        return _jsonable(asdict(event))

    def rollback(self, name: str, alias: str) -> dict[str, Any]:
        """Move ``name@alias`` back to its previous holder (as ``%register --rollback``)."""
        import jupyter_mlops.registry as registry

        return _jsonable(asdict(registry.rollback(name, alias, context=self._context())))

    @staticmethod
    def _context() -> dict[str, Any]:
        # Recorded in the alias history: the change came from the sidebar, not a notebook.
        return {"notebook": None, "source": "jupyterlab-sidebar"}

    # -- deployments -----------------------------------------------------------------------
    def deployments(self) -> dict[str, Any]:
        """Deployments with health, traffic split and live figures (if monitoring exists)."""
        serving = _optional("jupyter_mlops.serving")
        if serving is None:
            return {"available": False, "message": "serving is not installed", "deployments": []}
        monitoring = _optional("jupyter_mlops.monitoring")
        figures = getattr(monitoring, "figures", None) if monitoring else None
        out = []
        for dep in serving.list_deployments(self.config):
            item = dep.to_dict()
            item.pop("log_file", None)  # a server path the browser has no use for
            item["figures"] = self._figures(figures, dep) if dep.status == "running" else None
            out.append(_jsonable(item))
        return {
            "available": True,
            "monitoring": figures is not None,
            "message": None if figures else "monitoring is not installed: no live figures",
            "deployments": out,
        }

    def _figures(self, figures: Callable[..., Any] | None, dep: Any) -> dict[str, Any] | None:
        """Live figures of one running deployment: traffic over the last few minutes every
        call, drift (which compares logged inputs with the training data, so costs more)
        at most every DRIFT_EVERY_S seconds."""
        if figures is None:
            return None
        try:
            params = inspect.signature(figures).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        kwargs: dict[str, Any] = {}
        if "config" in params:
            kwargs["config"] = self.config
        if "last" in params:
            kwargs["last"] = LIVE_WINDOW
        cached = self._drift.get(dep.name)
        drift_due = cached is None or time.monotonic() - cached[0] > DRIFT_EVERY_S
        if "drift" in params:
            kwargs["drift"] = drift_due
        try:
            raw = figures(dep.name, **kwargs)
        except Exception as exc:  # one deployment's metrics must not hide the others
            return {"error": f"{type(exc).__name__}: {exc}"}
        values = raw if isinstance(raw, Mapping) else getattr(raw, "__dict__", {})
        notes = dict(getattr(raw, "notes", {}) or {})
        out: dict[str, Any] = {k: values.get(k) for k in FIGURES}
        if drift_due or "drift" not in params:
            self._drift[dep.name] = (
                time.monotonic(),
                values.get("drift_share"),
                notes.get("drift_share"),
            )
        else:
            assert cached is not None
            out["drift_share"] = cached[1]
            if cached[2]:
                notes["drift_share"] = cached[2]
        out["notes"] = {k: str(v) for k, v in notes.items() if k in FIGURES}
        out["window"] = getattr(raw, "window", None)
        return out

    def stop_deployment(self, name: str) -> dict[str, Any]:
        serving = _optional("jupyter_mlops.serving")
        if serving is None:
            raise NotFoundError("Serving is not installed: there are no deployments to stop")
        item = serving.stop(name, config=self.config).to_dict()
        item.pop("log_file", None)
        return _jsonable(item)

    # -- pipelines -----------------------------------------------------------------------
    def pipelines(self, limit: int = 20) -> dict[str, Any]:
        """The newest pipeline runs with per-step status and links to executed notebooks."""
        pipelines = _optional("jupyter_mlops.pipelines")
        lister = getattr(pipelines, "list_pipeline_runs", None)
        if lister is None:
            return {"available": False, "message": "pipelines are not installed", "runs": []}
        if not 1 <= limit <= MAX_PAGE:
            raise RequestError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        runs = lister(config=self.config, limit=limit)
        return {"available": True, "message": None, "runs": [self._pipeline(r) for r in runs]}

    def pipeline(self, run_id: str) -> dict[str, Any]:
        """One pipeline run (by id or unique prefix)."""
        pipelines = _optional("jupyter_mlops.pipelines")
        getter = getattr(pipelines, "get_pipeline_run", None)
        # The id becomes part of a glob under .mlops/pipelines: letters, digits, - _ . only.
        if getter is None or not _PIPELINE_RUN_ID.match(run_id):
            raise NotFoundError(f"No pipeline run {run_id!r}")
        return self._pipeline(getter(run_id, config=self.config))

    def _pipeline(self, run: Any) -> dict[str, Any]:
        steps = []
        for step in run.steps.values():
            executed = self._link(step.executed_notebook)
            steps.append(
                {
                    "name": step.name,
                    "status": step.status,
                    "started": _epoch_ms(step.started),
                    "ended": _epoch_ms(step.ended),
                    "seconds": step.seconds,
                    "error": step.error,
                    "mlflow_run_id": step.mlflow_run_id,
                    "metrics": dict(step.metrics),
                    "notebook": step.notebook,
                    "notebook_path": self._link(step.notebook)[0],
                    "executed": step.executed_notebook,
                    "executed_path": executed[0],
                    "executed_hidden": executed[1],
                }
            )
        return _jsonable(
            {
                "run_id": run.run_id,
                "pipeline": run.pipeline,
                "status": run.status,
                "started": _epoch_ms(run.started),
                "ended": _epoch_ms(run.ended),
                "params": dict(run.params),
                "mlflow_run_id": run.mlflow_run_id,
                "sweep": run.sweep,
                "steps": steps,
            }
        )

    def _link(self, path: str | None) -> tuple[str | None, bool]:
        """(path to open in JupyterLab, whether Jupyter hides it as a dot-folder's file)."""
        served = self.contents_path(path)
        if served is None:
            return None, False
        hidden = any(part.startswith(".") for part in Path(served).parts)
        if hidden and not self.allow_hidden:
            return None, True
        return served, hidden


def _epoch_ms(seconds: float | None) -> float | None:
    return None if seconds is None else float(seconds) * 1000
