"""The tracking store as a service: is it reachable, its experiments, calls that retry.

The client itself (one per tracking URI, its retry policy) is ``jupyter_mlops.client``;
this module holds what runs need on top of it: telling an unreachable store from one that
said no (a run is then buffered, not lost), experiment ids found once per process, and
``call`` for a client method with busy-store retries.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TypeVar

from jupyter_mlops._util.urls import redact, redact_text, safe_logger
from jupyter_mlops.client import client, retry_busy
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError, StoreUnavailableError, TrackingError

T = TypeVar("T")
_log = safe_logger(__name__)


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


def went_offline(uri: str, exc: BaseException | str) -> str:
    """Why ``uri`` cannot be reached: ``exc``'s first line, its secrets masked (MLflow quotes
    the request URL, password included). Logged as a warning; ``uri`` is remembered as down."""
    text = redact_text(str(exc)).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    mark_unavailable(uri)
    _log.warning("tracking store %s unreachable: %s", redact(uri), reason)
    return reason


def unavailable_error(exc: BaseException, config: Config | None = None) -> MlopsError | None:
    """``exc`` as a one-line error naming the store (its secrets masked) if it says the
    tracking store cannot be reached, else None: what the faces show instead of MLflow's
    traceback, which quotes the request URL with its password."""
    from_store = type(exc).__module__.startswith(("mlflow", "sqlalchemy", "requests"))
    if isinstance(exc, MlopsError) or not from_store or not is_unavailable(exc):
        return None  # a deployment or webhook refusing a connection is not the store
    try:
        where = f" {redact((config or load_config()).tracking_uri)}"
    except MlopsError:  # no project here: the error is about the store all the same
        where = ""
    root, seen = exc, {id(exc)}  # the socket's own words ("Connection refused"), not MLflow's
    while (cause := root.__cause__ or root.__context__) is not None and id(cause) not in seen:
        root = cause
        seen.add(id(cause))
    reason = (redact_text(str(root)).strip().splitlines() or [type(root).__name__])[0][:300]
    return StoreUnavailableError(
        f"The tracking store{where} is unreachable ({reason}). Start it, or point "
        "MLFLOW_TRACKING_URI (or tracking_uri in pyproject.toml) at one that runs."
    )


def user_error(exc: BaseException, config: Config | None = None) -> MlopsError | None:
    """What a face shows for ``exc`` in one line: the project's own error, a damaged SQLite
    file of the project (which, how to recover) or an unreachable store (its URL masked);
    None for anything else (a bug: shown as a traceback, secrets masked)."""
    from jupyter_mlops.client import explain_damage

    # damage first: a project error raised while reading a damaged file names no file
    damage = explain_damage(exc, config)
    if damage is not None:
        return damage
    if isinstance(exc, MlopsError):
        return exc
    return unavailable_error(exc, config)


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
