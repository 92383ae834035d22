"""The one MLflow client of a project, shared by every caller, with the retry policy inside.

``client(config)`` builds an ``MlflowClient`` once per tracking URI and points MLflow's
fluent API (``mlflow.start_run``, ``mlflow.<flavour>.log_model``) at the same store, so the
magics, the CLI, the server extension and serving all resolve the tracking URI the same
way. The retry policy lives here too: short HTTP retries against a server (a notebook
should learn within seconds that it is down), and ``retry_busy`` for a SQLite store that
another kernel is writing to. A damaged SQLite file (``mlflow.db``, ``predictions.db``) is
recognised here too: :func:`explain_damage` turns SQLite's and SQLAlchemy's errors into one
:class:`DamagedStoreError` naming the file, what ``PRAGMA quick_check`` finds and how to
recover, which every face reports instead of a traceback.
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
from typing import TYPE_CHECKING, TypeVar

from jupyter_mlops._util.locks import file_lock
from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")
_log = safe_logger(__name__)
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_PRINT_URL = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
_RETRYABLE = ("database is locked", "database table is locked", "TEMPORARILY_UNAVAILABLE")
# MLflow's HTTP client retries 7 times with backoff factor 2 (minutes against a dead
# server); a notebook should learn within seconds. Users' own settings win.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def is_busy(exc: BaseException) -> bool:
    """True if ``exc`` says the store is busy (locked by another writer): worth a retry."""
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
            if not is_busy(exc) or attempt == attempts - 1:
                raise
            _log.debug("%s: store busy (%s), retrying", what, exc)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _mlflow_loggers() -> list[logging.Logger]:
    # MLflow's own logger, and those of its modules (flavours among them) that set a level
    # of their own; the others inherit the silence.
    manager = logging.Logger.manager
    named = [
        logger
        for name, logger in list(manager.loggerDict.items())
        if name.startswith("mlflow.") and isinstance(logger, logging.Logger) and logger.level
    ]
    return [logging.getLogger("mlflow"), *named]


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's chatter (schema creation, pickle warnings, dataset hints, tqdm)
    during our own calls; the user's own MLflow calls keep MLflow's settings."""
    loggers = _mlflow_loggers()
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


@functools.cache
def _client_for(tracking_uri: str, artifact_root: Path | None = None) -> MlflowClient:
    from mlflow import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri)
    db_path = Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])  # not ?password=
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # Two kernels opening a new store at once would both run MLflow's schema migrations
    # (when the tracking and the registry stores are first built); the lock makes the
    # second wait and find the tables made.
    with file_lock(db_path.with_name(db_path.name + ".lock")), quiet_mlflow():
        if artifact_root is not None and (not db_path.exists() or not db_path.stat().st_size):
            _create_store(tracking_uri, artifact_root)
        mlflow_client = MlflowClient(tracking_uri)
        retry_busy(lambda: mlflow_client.search_experiments(max_results=1), what="open store")
        retry_busy(
            lambda: mlflow_client.search_registered_models(max_results=1), what="open registry"
        )
        _enable_wal(db_path)
    return mlflow_client


def _create_store(tracking_uri: str, artifact_root: Path) -> None:
    """Create a new SQLite store whose ``Default`` experiment keeps its artifacts under the
    project's artifact root: MLflow would put them in ``./mlruns`` of whatever folder the
    first run started in (a notebook's, under papermill ``--cwd``), outside ``.mlops/``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifact_root.mkdir(parents=True, exist_ok=True)
    store = SqlAlchemyStore(tracking_uri, artifact_root.as_uri())  # type: ignore[no-untyped-call]
    store.engine.dispose()  # MlflowClient opens its own; the schema and Default are made


def client(config: Config | None = None) -> MlflowClient:
    """The MLflow client of the project's tracking store (created once per process)."""
    with quiet_mlflow():  # tqdm warns at import time in kernels without ipywidgets
        import mlflow

    config = config or load_config()
    if config.is_local_store:
        config.ensure_dirs()
    elif config.tracking_uri.startswith(("http://", "https://")):
        for key, value in HTTP_RETRY_DEFAULTS.items():
            os.environ.setdefault(key, value)
    artifact_root = config.artifact_root if config.is_local_store else None
    mlflow_client = _client_for(config.tracking_uri, artifact_root)
    # The fluent API (mlflow.start_run, mlflow.<flavour>.log_model) reads the global URI.
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


# What SQLite says about a damaged file (through sqlite3 or SQLAlchemy), not a busy one.
_DAMAGE_SIGNS = (
    "database disk image is malformed",
    "file is not a database",
    "malformed database schema",
    "database corruption",
)


class DamagedStoreError(TrackingError):
    """A SQLite file of the project (the tracking store, a prediction log) is damaged."""

    http_status = 503


def sqlite_damage(path: Path, *, full: bool = False) -> str | None:
    """What SQLite finds wrong with the database file ``path`` (``PRAGMA quick_check``, or
    the slower ``integrity_check`` with ``full``), or None when it is sound."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            found = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}(20)")]
    except sqlite3.Error as exc:
        return str(exc)
    except UnicodeDecodeError:  # SQLite's message quotes garbage where its schema was
        return "malformed database schema (unreadable bytes where the table list is)"
    problems = [
        line.strip()
        for text in found
        for line in text.splitlines()
        if line.strip() and line.strip() != "ok" and not line.startswith("***")
    ]
    if not problems:
        return None
    more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
    return "; ".join(problems[:2]) + more


def recovery_hint(path: Path) -> str:
    """How to get a damaged SQLite file back, in one sentence."""
    return (
        f"stop what uses it, keep a copy, then recover what is readable with "
        f"`sqlite3 {path} .recover | sqlite3 {path}.recovered` and move {path.name}.recovered "
        f"over {path.name}, or restore {path.name} from a backup; `jupyter-mlops doctor` "
        "checks every store and file of the project"
    )


def project_databases(config: Config) -> list[Path]:
    """The SQLite files of the project: the tracking store (when local) and the ``*.db``
    files under ``.mlops/`` (the prediction log among them)."""
    found: list[Path] = []
    for url in (config.tracking_uri, config.prediction_log or ""):
        if url.startswith("sqlite:///"):
            found.append(Path(url.removeprefix("sqlite:///").split("?", 1)[0]))
    if config.mlops_dir.is_dir():
        found += sorted(config.mlops_dir.glob("*.db"))
    unique: dict[Path, None] = {}
    for path in found:
        with contextlib.suppress(OSError):
            unique.setdefault(path.resolve(), None)
    return [p for p in unique if p.is_file()]


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_damage(exc: BaseException) -> bool:
    """True if ``exc`` (or what caused it) is SQLite reporting a damaged file."""
    return any(any(sign in str(e) for sign in _DAMAGE_SIGNS) for e in _chain(exc))


def _may_be_damage(exc: BaseException) -> bool:
    """Errors a damaged file can also cause (garbage read back as text, a page SQLite
    cannot use): worth checking the project's databases for."""
    return any(
        isinstance(e, sqlite3.DatabaseError | UnicodeDecodeError)
        or type(e).__name__ == "DatabaseError"  # SQLAlchemy's wrapper
        for e in _chain(exc)
    )


def explain_damage(exc: BaseException, config: Config | None = None) -> DamagedStoreError | None:
    """The one-line error for ``exc`` when it comes from a damaged SQLite file of the
    project (which file, what is damaged, how to recover); None for any other error."""
    if isinstance(exc, DamagedStoreError):
        return exc
    sure = is_damage(exc)
    if not sure and not _may_be_damage(exc):
        return None
    try:
        config = config or load_config()
        damaged = [(p, what) for p in project_databases(config) if (what := sqlite_damage(p))]
    except Exception:  # the explanation must not fail in its turn
        damaged = []
    if not damaged and not sure:
        return None
    said = next(
        (line for line in str(exc).splitlines() if any(s in line for s in _DAMAGE_SIGNS)),
        "database disk image is malformed",
    )
    if not damaged:
        return DamagedStoreError(
            f"A SQLite database of the project is damaged ({said.strip()[:200]}); "
            "`jupyter-mlops doctor` finds which and says how to recover it"
        )
    path, what = damaged[0]
    others = "".join(f"; {p} is damaged too ({w[:120]})" for p, w in damaged[1:])
    return DamagedStoreError(f"{path} is damaged ({what[:200]}){others}: {recovery_hint(path)}")
