"""The MLflow side: one client per tracking URI, experiments, and retries on a busy store.

Every face (magics, CLI, server extension, serving) reaches MLflow through here, so the
tracking URI resolution of ``config`` is applied once and the same way everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")
_log = logging.getLogger(__name__)
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_PRINT_URL = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
_RETRYABLE = ("database is locked", "database table is locked", "TEMPORARILY_UNAVAILABLE")


# Signs that the tracking store (server or database) cannot be reached at all, as opposed
# to refusing a request: then a run's record is buffered locally instead of lost.
_UNAVAILABLE = (
    "Connection refused",
    "Failed to establish a new connection",
    "Max retries exceeded",
    "Connection aborted",
    "RemoteDisconnected",
    "Read timed out",
    "too many 50",  # urllib3: too many 500/502/503 error responses
    "could not connect to server",
    "connection is bad",
    "server closed the connection",
    "terminating connection",
    "the database system is",  # starting up / shutting down
    "Name or service not known",
)
# MLflow's HTTP client retries 7 times with backoff factor 2 (minutes against a dead
# server); a notebook should learn within seconds. Users' own settings win.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def is_unavailable(exc: BaseException) -> bool:
    """True if ``exc`` says the tracking store cannot be reached (not that it said no)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        name = type(current).__name__
        text = str(current)
        if name in ("ConnectionError", "MaxRetryError", "NewConnectionError"):
            return True
        # A database driver's connection-level errors; SQLite's (locked, corrupt) are not.
        sqlite = "sqlite" in text.lower() or "sqlite" in type(current).__module__
        if name in ("OperationalError", "InterfaceError") and not sqlite:
            return True
        if any(sign in text for sign in _UNAVAILABLE):
            return True
        current = current.__cause__ or current.__context__
    return False


_DOWN: set[str] = set()  # tracking URIs found unreachable by this process


def mark_unavailable(uri: str) -> None:
    """Remember that ``uri`` did not answer, so the next run asks quickly first."""
    _DOWN.add(uri)


def still_unavailable(uri: str) -> str | None:
    """Why ``uri`` is still unreachable, or None. Only stores that failed before in this
    process are probed (a 2 s ``/health`` check instead of MLflow's retries, seconds per
    call), so a kernel working on while the server is down does not wait at every cell."""
    if uri not in _DOWN:
        return None
    from jupyter_mlops.tracking.server import probe

    reach = probe(uri, timeout=2.0)
    if reach.ok:
        _DOWN.discard(uri)
        return None
    return f"still unreachable: {reach.detail}"


def _is_retryable(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    code = getattr(exc, "error_code", "")
    return code == "TEMPORARILY_UNAVAILABLE" or any(s in text for s in _RETRYABLE)


def retry_busy(fn: Callable[[], T], *, attempts: int = 8, what: str = "MLflow call") -> T:
    """Run ``fn``, retrying with jittered backoff while the store reports it is busy.

    SQLite allows one writer at a time; MLflow waits 20 s for the lock but a write that
    upgrades a stale read transaction fails at once, so two kernels need this.
    """
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if not _is_retryable(exc) or attempt == attempts - 1:
                raise
            _log.debug("%s: store busy (%s), retrying", what, exc)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's chatter (schema creation, pickle warnings, dataset hints, tqdm)
    during our own calls; the user's own MLflow calls keep MLflow's settings."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "mlflow.sklearn", "mlflow.models")]
    levels = [lg.level for lg in loggers]
    # Read per call: artifact progress bars, and the "View run at <server>" line printed
    # when a run against a server ends (the run card says where the run is).
    saved = {k: os.environ.get(k) for k in (_PROGRESS_BAR, _PRINT_URL)}
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    os.environ[_PROGRESS_BAR] = "false"
    os.environ[_PRINT_URL] = "true"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _enable_wal(db_path: Path) -> None:
    # WAL lets readers and one writer work at once: two kernels tracking do not block.
    # The journal mode is stored in the database file, so once is enough.
    try:
        with sqlite3.connect(db_path, timeout=30) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        _log.debug("could not enable WAL on %s: %s", db_path, exc)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock across processes (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: MLflow's own retries have to do
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@functools.cache
def _client_for(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri)
    db_path = Path(tracking_uri.removeprefix("sqlite:///"))
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # Two kernels opening a new store at once would both run MLflow's schema migrations
    # (when the tracking and the registry stores are first built); the lock makes the
    # second wait and find the tables made.
    with _file_lock(db_path.with_name(db_path.name + ".lock")), quiet_mlflow():
        client = MlflowClient(tracking_uri)
        retry_busy(lambda: client.search_experiments(max_results=1), what="open store")
        retry_busy(lambda: client.search_registered_models(max_results=1), what="open registry")
        _enable_wal(db_path)
    return client


def client(config: Config | None = None) -> MlflowClient:
    """The MLflow client of the project's tracking store (created once per process)."""
    with quiet_mlflow():  # tqdm warns at import time in kernels without ipywidgets
        import mlflow

    config = config or load_config()
    if config.is_local_store:
        config.ensure_dirs()
    elif config.tracking_uri.startswith(("http://", "https://")):
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
    mlflow_client = _client_for(config.tracking_uri)
    # The fluent API (mlflow.start_run, mlflow.sklearn.log_model) reads the global URI.
    if mlflow.get_tracking_uri() != config.tracking_uri:
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(config.tracking_uri)
        # MLflow also exports the URI to the environment, where load_config would take our
        # choice for the user's and pin every later project to this store.
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return mlflow_client


_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}


def forget_experiment(name: str, config: Config) -> None:
    """Drop the remembered id of ``name`` (it was deleted or renamed meanwhile)."""
    _EXPERIMENT_IDS.pop((config.tracking_uri, name), None)


def ensure_experiment(name: str, config: Config | None = None, *, cached: bool = False) -> str:
    """The id of experiment ``name``, created if missing (artifacts under .mlops/ locally).

    ``cached``: reuse the id found earlier in this process (one round trip less per run
    against a server); callers that get an error for it call ``forget_experiment``.
    """
    config = config or load_config()
    key = (config.tracking_uri, name)
    if cached and key in _EXPERIMENT_IDS:
        return _EXPERIMENT_IDS[key]
    mlflow_client = client(config)
    from mlflow.exceptions import MlflowException

    def get_or_create() -> str:
        exp = mlflow_client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"Experiment {name!r} is deleted. Restore it with "
                    f"`mlflow experiments restore --experiment-id {exp.experiment_id}` "
                    "or choose another name."
                )
            return str(exp.experiment_id)
        location = None
        if config.artifact_root is not None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            location = (config.artifact_root / f"{safe}-{random.randrange(16**6):06x}").as_uri()
        try:
            return str(mlflow_client.create_experiment(name, artifact_location=location))
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" in str(exc.error_code) or "already exists" in str(exc):
                exp = mlflow_client.get_experiment_by_name(name)  # another kernel won the race
                if exp is not None:
                    return str(exp.experiment_id)
            raise

    experiment_id = retry_busy(get_or_create, what=f"experiment {name!r}")
    _EXPERIMENT_IDS[key] = experiment_id
    return experiment_id


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` with busy-store retries."""
    return retry_busy(lambda: fn(*args, **kwargs), what=getattr(fn, "__name__", "MLflow call"))
