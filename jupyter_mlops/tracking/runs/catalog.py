"""The runs of one store for a reader that keeps asking (the JupyterLab sidebar): the runs
table cached until the store changes, pages by keyset, text search, experiments with their
run counts, and one run in full.

Reading every run costs about as much for a page as for the whole store, so the table is
read once and kept until the store's stamp changes (cheap to get: the SQLite files' sizes
and times, or the newest run of a server). While the table is re-read after a change, the
newest page comes from MLflow's own paged search, so a run just tracked shows at once.
Paging is by the sort key of the last run shown, so runs that arrive meanwhile do not
shift later pages.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.client import client as project_client
from jupyter_mlops.config import Config
from jupyter_mlops.errors import NotFoundError, RequestError
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.run import TAG_DATA, TAG_NOTEBOOK
from jupyter_mlops.tracking.runs.diff import run_source
from jupyter_mlops.tracking.runs.refs import is_id_prefix, resolve_run_ref
from jupyter_mlops.tracking.runs.sqlite_reader import sqlite_path
from jupyter_mlops.tracking.runs.table import data_summary, runs
from jupyter_mlops.tracking.runs.where import Where

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

_log = safe_logger(__name__)


def epoch_ms(value: Any) -> int | None:
    """A time of the runs table (a pandas Timestamp, NaT, or MLflow's epoch milliseconds)
    as epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
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
    """The sort key a page token holds; ``RequestError`` for a token not made here."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        start_ms, run_id = json.loads(raw)
        if (start_ms is not None and not isinstance(start_ms, int)) or not isinstance(run_id, str):
            raise ValueError(raw)
    except (ValueError, TypeError, binascii.Error):
        raise RequestError(f"Invalid page_token {token!r}") from None
    return start_ms, run_id


@dataclass(frozen=True)
class RunPage:
    """One page of runs, newest first. ``records`` are rows of the runs table as dicts;
    ``total`` and ``stamp`` are None for a page read before the table (ask again)."""

    records: list[dict[str, Any]]
    next_page_token: str | None
    total: int | None
    stamp: str | None


@dataclass(frozen=True)
class RunDetails:
    """One run as MLflow has it, with its experiment's name, the model versions registered
    from it (name, version) and the cell source ``%%track`` stored with it."""

    run: Run
    experiment: str | None
    registered_versions: list[tuple[str, str]]
    source: str | None


@dataclass(frozen=True)
class _Cached:
    stamp: str
    frame: pd.DataFrame


class RunCatalog:
    """The runs of the store ``config`` names, for a long-lived reader."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._cached: _Cached | None = None
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    def client(self) -> MlflowClient:
        return project_client(self.config)

    def store_exists(self) -> bool:
        """False for a local store that was never written (nothing to show, nothing made)."""
        path = sqlite_path(self.config.tracking_uri)
        return path is None or path.is_file()

    def stamp(self) -> str:
        """Something that changes whenever the tracking store is written (cheap to get).

        For the embedded SQLite store, the size and time of the database and its WAL file;
        for any other store, the newest run's start time and id (one small query).
        """
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
        client = self.client()
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

    def frame(self) -> pd.DataFrame:
        """Every active run of the store, newest first (cached until the store changes)."""
        with self._lock:  # one read at a time; a waiting caller then finds it cached
            stamp = self.stamp()
            cached = self._cached
            if cached is not None and cached.stamp == stamp:
                return cached.frame
            # Every active experiment: there is no notebook here, and all experiments are
            # shown even when the project names a default one.
            frame = runs(notebook="", config=replace(self.config, experiment=None))
            self._cached = _Cached(stamp, frame)
            return frame

    def is_stale(self) -> bool:
        cached = self._cached
        return cached is None or cached.stamp != self.stamp()

    def refresh_in_background(self) -> None:
        """Re-read the table in a thread (once at a time)."""
        if self._refreshing.acquire(blocking=False):

            def refresh() -> None:
                try:
                    self.frame()
                except Exception as exc:  # reported by the next request that needs it
                    _log.debug("reading the runs failed: %s", exc)
                finally:
                    self._refreshing.release()

            threading.Thread(target=refresh, name="jupyter-mlops-runs", daemon=True).start()

    # -- experiments ---------------------------------------------------------------------
    def experiments(self) -> list[dict[str, Any]]:
        """Active experiments (experiment_id, name, runs, last_run_time), latest first."""
        if not self.store_exists():
            return []
        frame = self.frame()
        counts = frame.groupby("experiment_id").size().to_dict() if len(frame) else {}
        latest = frame.groupby("experiment_id")["start_time"].max().to_dict() if len(frame) else {}
        out = []
        for exp in store.call(self.client().search_experiments):
            exp_id = str(exp.experiment_id)
            out.append(
                {
                    "experiment_id": exp_id,
                    "name": exp.name,
                    "runs": int(counts.get(exp_id, 0)),
                    "last_run_time": epoch_ms(latest.get(exp_id)),
                }
            )
        out.sort(key=lambda e: (e["last_run_time"] or 0, e["name"]), reverse=True)
        return out

    def _experiment_known(self, experiment: str) -> bool:
        return any(experiment in (e["experiment_id"], e["name"]) for e in self.experiments())

    # -- pages of runs -------------------------------------------------------------------
    def page(
        self,
        *,
        limit: int,
        experiment: str | None = None,
        text: str | None = None,
        where: str | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """One page of runs, newest first, with the token of the following one.

        ``experiment``: an id or a name; ``text``: case-insensitive words that must all
        appear in the run's name, id, experiment, status, notebook or params; ``where``: a
        filter in the ``--where`` language, e.g. ``metrics.accuracy >= 0.9``.
        """
        after = decode_token(page_token) if page_token else None
        if not self.store_exists():
            return RunPage([], None, 0, self.stamp())
        if not (experiment or where or text) and after is None and self.is_stale():
            # The store changed since the runs were read (a %%track cell, a pipeline): the
            # newest page comes from MLflow's own paged search, which costs the same for 10
            # or 10,000 runs, while the full read for filters and totals goes on behind it.
            self.refresh_in_background()
            return self.newest(limit)
        frame = self.frame()
        stamp = self._cached.stamp if self._cached else None
        if experiment:
            mask = (frame["experiment_id"] == experiment) | (frame["experiment"] == experiment)
            if not mask.any() and not self._experiment_known(experiment):
                raise NotFoundError(f"No experiment {experiment!r}")
            frame = frame[mask.to_numpy()]
        if where and where.strip():
            frame = Where(where).apply(frame) if len(frame) else frame
        if text and text.strip():
            frame = frame[_text_mask(frame, text)]
        total = len(frame)
        if after is not None:
            frame = frame[_after(frame, *after)]
        records = frame.head(limit).to_dict("records")
        token = None
        if len(frame) > limit and records:
            last = records[-1]
            token = encode_token(epoch_ms(last["start_time"]), str(last["run_id"]))
        return RunPage([{str(k): v for k, v in r.items()} for r in records], token, total, stamp)

    def newest(self, limit: int) -> RunPage:
        """The first page from ``MlflowClient.search_runs``, without total or stamp: the
        columns a page shows, with ``start_time`` in epoch milliseconds."""
        from mlflow.entities import ViewType

        client = self.client()
        exps = store.call(client.search_experiments, view_type=ViewType.ACTIVE_ONLY)
        names = {str(e.experiment_id): e.name for e in exps}
        found = store.call(
            client.search_runs,
            list(names),
            max_results=limit + 1,
            order_by=["attributes.start_time DESC"],  # ties: run id, as the full read
        )
        records = []
        for run in found[:limit]:
            info, data = run.info, run.data
            datasets = [
                (d.dataset.name, {t.key: t.value for t in d.tags}.get("mlops.content_hash"))
                for d in (run.inputs.dataset_inputs if run.inputs else [])
            ]
            end = info.end_time
            records.append(
                {
                    "run_id": info.run_id,
                    "run_name": info.run_name or data.tags.get("mlflow.runName"),
                    "experiment": names.get(str(info.experiment_id), str(info.experiment_id)),
                    "experiment_id": str(info.experiment_id),
                    "status": info.status,
                    "start_time": info.start_time,
                    "duration": (end - info.start_time) / 1000 if end and info.start_time else None,
                    "data": data_summary(data.tags.get(TAG_DATA), datasets),
                    **{f"metrics.{k}": v for k, v in data.metrics.items()},
                    # every tag, as the full read has them (a verdict %reproduce wrote
                    # a moment ago is shown on this page too, not only after the re-read)
                    **{f"tags.{k}": v for k, v in data.tags.items()},
                }
            )
        token = None
        if len(found) > limit and records:
            token = encode_token(records[-1]["start_time"], records[-1]["run_id"])
        return RunPage(records, token, None, None)

    # -- one run -------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """A full run id from an id or an unambiguous prefix; NotFoundError otherwise."""
        if not is_id_prefix(ref):
            raise NotFoundError(f"No run {ref!r}: run ids are 32 hexadecimal characters")
        ref = ref.lower()
        if len(ref) == 32 or not self.store_exists():
            return ref
        ids = [str(i) for i in self.frame()["run_id"]]
        return ids[resolve_run_ref(ref, ids, ambiguous=RequestError)]

    def details(self, ref: str) -> RunDetails:
        """The run ``ref`` (an id or an unambiguous prefix) in full."""
        from mlflow.exceptions import MlflowException

        full_id = self.resolve(ref)
        if not self.store_exists():
            raise NotFoundError(f"No run {ref!r}: the store is empty")
        client = self.client()
        try:
            run = store.call(client.get_run, full_id)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                raise NotFoundError(f"No run {ref!r}") from None
            raise
        info = run.info
        experiment = store.call(client.get_experiment, info.experiment_id)
        versions = store.call(client.search_model_versions, f"run_id = '{info.run_id}'")
        return RunDetails(
            run,
            experiment.name if experiment else None,
            [(v.name, str(v.version)) for v in versions],
            run_source(info.artifact_uri, info.run_id, self.config),
        )


def _text_mask(frame: pd.DataFrame, text: str) -> np.ndarray:
    """Rows whose name, id, experiment, status, notebook or params hold every word."""
    import numpy as np

    columns = ["run_name", "run_id", "experiment", "status"]
    if f"tags.{TAG_NOTEBOOK}" in frame.columns:
        columns.append(f"tags.{TAG_NOTEBOOK}")
    columns += [c for c in frame.columns if c.startswith("params.")]
    haystack = np.full(len(frame), "", dtype=object)
    for column in columns:
        values = frame[column].to_numpy(dtype=object)
        haystack = (
            haystack + " " + np.where([v is None or v != v for v in values], "", values.astype(str))
        )
    lowered = np.char.lower(haystack.astype(str))
    mask = np.ones(len(frame), dtype=bool)
    for word in text.lower().split():
        mask &= np.char.find(lowered, word) >= 0
    return mask


def _after(frame: pd.DataFrame, start_ms: int | None, last_id: str) -> np.ndarray:
    """Rows that sort after (start_ms, last_id) in the newest-first order."""
    import numpy as np

    starts = frame["start_time"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    ids = frame["run_id"].to_numpy(dtype=object)
    if start_ms is None:
        return np.asarray(ids > last_id, dtype=bool)
    return np.asarray((starts < start_ms) | ((starts == start_ms) & (ids > last_id)), dtype=bool)
