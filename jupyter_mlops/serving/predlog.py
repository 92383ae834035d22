"""The prediction log: what each deployment answered, durable before the answer leaves.

Two layers keep the request path cheap and still lose nothing a client saw:

* a **journal** per server process (``<deployment>/journal/<pid>-<n>.jsonl``, one line
  per request): after a micro-batch is predicted, its records are appended with one
  ``os.write`` *before* the responses are released. Once ``write`` returns the bytes belong
  to the kernel's page cache, so a ``kill -9`` of the server cannot lose them. With
  ``durability="fsync"`` a committer thread also syncs them (``fdatasync``) first, which survives
  a power cut; batches that queue during one sync share the next (group commit), so the
  predicting thread never waits for the disk.
* a **store** (SQLite by default, or PostgreSQL: :mod:`jupyter_mlops.serving.predlog_pg`,
  behind :class:`PredictionStore`) that a background thread fills from closed journal
  segments, off the request path. While the store cannot be written (a database restarting)
  the records stay in the journal and the thread retries every round.

The writer holds an ``flock`` on its open segment. A segment nobody holds (closed, or left by
a killed server) is replayed into the store and deleted by whoever takes the lock first: the
server itself, its next start, or a reader. Rows are keyed by request id and inserted with
``INSERT OR IGNORE``, so replaying twice is harmless. Readers also read the complete lines of
live segments, so :func:`read_predictions` sees every answered request at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jupyter_mlops._util.urls import redact
from jupyter_mlops.serving.errors import DeploymentNotFoundError, ServingError

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

_log = logging.getLogger(__name__)

#: The columns every stored prediction has (inputs and outputs are JSON text).
COLUMNS = (
    "request_id",
    "ts",
    "deployment",
    "model_name",
    "model_version",
    "run_id",
    "role",
    "endpoint",
    "n_rows",
    "latency_ms",
    "inputs",
    "outputs",
)
DEFAULT_DB = "predictions.db"
_PAYLOAD = ("inputs", "outputs")


# -- storage backends ---------------------------------------------------------------------


class PredictionStore(Protocol):
    """Where predictions end up. Implementations must make ``write`` idempotent per id."""

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Store journal records (dicts with the keys of ``COLUMNS``), ignoring known ids."""

    def read(
        self,
        deployment: str,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``deployment`` with ``since <= ts < until``, oldest first (latest ``limit``)."""

    def close(self) -> None:
        """Release connections."""


class SQLitePredictionStore:
    """The default store: one SQLite file (WAL mode) shared by the project's deployments."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS predictions ("
                " request_id TEXT PRIMARY KEY, ts REAL NOT NULL, deployment TEXT NOT NULL,"
                " model_name TEXT, model_version TEXT, run_id TEXT, role TEXT, endpoint TEXT,"
                " n_rows INTEGER, latency_ms REAL, inputs TEXT, outputs TEXT)"
            )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS predictions_deployment_ts"
                " ON predictions (deployment, ts)"
            )

    @classmethod
    def from_url(cls, url: str) -> SQLitePredictionStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
        return cls(url.removeprefix("sqlite:///"))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        rows = [
            tuple(
                _json_text(rec.get(col)) if col in ("inputs", "outputs") else rec.get(col)
                for col in COLUMNS
            )
            for rec in records
        ]
        conn = self._conn()
        placeholders = ",".join("?" * len(COLUMNS))
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                f"INSERT OR IGNORE INTO predictions ({','.join(COLUMNS)}) VALUES ({placeholders})",
                rows,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def read(
        self,
        deployment: str,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        where, args = window_condition(deployment, since, until, "?")
        sql = f"SELECT {','.join(COLUMNS)} FROM predictions WHERE {where}"
        if limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY ts DESC LIMIT {int(limit)})"
        cur = self._conn().execute(f"{sql} ORDER BY ts", args)
        return [dict(zip(COLUMNS, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def window_condition(
    deployment: str, since: float | None, until: float | None, mark: str
) -> tuple[str, list[Any]]:
    """The SQL condition (and its arguments) for ``deployment``'s rows with
    ``since <= ts < until``; ``mark`` is the driver's placeholder (``?`` or ``%s``)."""
    where = [f"deployment = {mark}"]
    args: list[Any] = [deployment]
    if since is not None:
        where.append(f"ts >= {mark}")
        args.append(since)
    if until is not None:
        where.append(f"ts < {mark}")
        args.append(until)
    return " AND ".join(where), args


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _dumps(value).decode()


def _postgres_store(url: str) -> PredictionStore:
    from jupyter_mlops.serving.predlog_pg import PostgresPredictionStore

    return PostgresPredictionStore.from_url(url)


_STORES: dict[str, Callable[[str], PredictionStore]] = {
    "sqlite": SQLitePredictionStore.from_url,
    # postgresql+psycopg:// (SQLAlchemy's spelling, as MLflow takes it) and postgres:// too.
    "postgresql": _postgres_store,
    "postgresql+psycopg": _postgres_store,
    "postgres": _postgres_store,
}


def register_prediction_store(scheme: str, factory: Callable[[str], PredictionStore]) -> None:
    """Make ``open_prediction_store`` handle URLs of ``scheme`` (e.g. ``postgresql``)."""
    _STORES[scheme] = factory


def open_prediction_store(url: str) -> PredictionStore:
    """The store behind ``url`` (``sqlite:///...``, ``postgresql://...``; more schemes via
    the registry)."""
    scheme = url.split(":", 1)[0]
    factory = _STORES.get(scheme) or _STORES.get(scheme.split("+", 1)[0])
    if factory is None:
        raise ServingError(
            f"No prediction store for {scheme!r} URLs (known: {', '.join(sorted(_STORES))})."
        )
    return factory(url)


def default_store_url(mlops_dir: Path) -> str:
    """``sqlite:///<project>/.mlops/predictions.db``."""
    return f"sqlite:///{mlops_dir.resolve() / DEFAULT_DB}"


# -- the journal --------------------------------------------------------------------------


try:  # several times faster than json on the journal's hot paths
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY)

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, default=str, separators=(",", ":")).encode()

    _loads = json.loads


class Journal:
    """Append-only segment files of one process; thread-safe.

    ``append`` writes at once (durable against a killed process when it returns). With
    ``durability="fsync"``, ``append_synced`` hands the records to a committer thread that
    writes everything queued meanwhile with one ``write`` and one ``fdatasync`` (group commit)
    and then completes the returned futures: the caller answers when its future is done,
    and does not wait for the disk itself.
    """

    def __init__(self, folder: str | os.PathLike[str], *, durability: str = "write") -> None:
        if durability not in ("write", "fsync"):
            raise ServingError(f"durability must be 'write' or 'fsync', not {durability!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fsync = durability == "fsync"
        self._lock = threading.Lock()
        self._seq = 0
        self._fd: int | None = None
        self._bytes = 0
        self._open()
        self._pending: queue.SimpleQueue[tuple[bytes, Future[None]] | None] = queue.SimpleQueue()
        self._committer: threading.Thread | None = None
        if self.fsync:
            self._committer = threading.Thread(
                target=self._commit_loop, daemon=True, name="journal-commit"
            )
            self._committer.start()

    def _open(self) -> None:
        self._seq += 1
        path = self.folder / f"{os.getpid()}-{time.time_ns()}-{self._seq:06d}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _flock(fd, blocking=True)
        self._fd, self._bytes = fd, 0

    @staticmethod
    def encode(records: Iterable[Mapping[str, Any]]) -> bytes:
        """Records as lines ``<meta JSON> TAB <inputs JSON> TAB <outputs JSON>``.

        JSON never holds a raw tab, so ingestion splits a line without parsing the (large)
        inputs and outputs, and stores their JSON text as it is.
        """
        lines = []
        for rec in records:
            meta = {k: v for k, v in rec.items() if k not in _PAYLOAD}
            lines.append(
                b"\t".join((_dumps(meta), _dumps(rec.get("inputs")), _dumps(rec.get("outputs"))))
            )
            lines.append(b"\n")
        return b"".join(lines)

    def _write(self, data: bytes, *, sync: bool) -> None:
        with self._lock:
            if self._fd is None:
                raise ServingError("the prediction journal is closed")
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if sync:
                os.fdatasync(self._fd)
            self._bytes += len(data)

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write ``records`` in one system call (plus ``fdatasync`` in fsync mode); durable
        when it returns."""
        data = self.encode(records)
        if data:
            self._write(data, sync=self.fsync)

    def append_synced(self, records: Iterable[Mapping[str, Any]]) -> Future[None]:
        """Queue ``records`` for the next group commit; the future completes once synced."""
        done: Future[None] = Future()
        if not self.fsync:
            try:
                self.append(records)
                done.set_result(None)
            except Exception as exc:
                done.set_exception(exc)
            return done
        self._pending.put((self.encode(records), done))
        return done

    def _commit_loop(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            group, stop = [first], False
            while True:  # everything that queued up while the last commit ran
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            try:
                self._write(b"".join(data for data, _ in group), sync=True)
            except Exception as exc:
                for _, done in group:
                    done.set_exception(exc)
            else:
                for _, done in group:
                    done.set_result(None)
            if stop:
                return

    def rotate(self) -> bool:
        """Close the current segment (for ingestion) if it holds anything; start a new one."""
        with self._lock:
            if self._fd is None or self._bytes == 0:
                return False
            os.close(self._fd)  # releases the flock: the segment is now free to ingest
            self._open()
            return True

    def close(self) -> None:
        if self._committer is not None:
            self._pending.put(None)
            self._committer.join(timeout=10)
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _flock(fd: int, *, blocking: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no concurrent ingestion protection
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _parse_lines(data: bytes, source: Path) -> list[dict[str, Any]]:
    records = []
    complete = data[: data.rfind(b"\n") + 1]  # a trailing partial line was never answered
    for line in complete.splitlines():
        if not line.strip():
            continue
        try:
            parts = line.split(b"\t")
            if len(parts) == 3:
                record = _loads(parts[0])
                record["inputs"], record["outputs"] = parts[1].decode(), parts[2].decode()
            else:  # a record written as one JSON object
                record = _loads(line)
            records.append(record)
        except ValueError:
            _log.warning("skipping a corrupt line in %s", source)
    return records


def replay_journal(folder: str | os.PathLike[str], store: PredictionStore) -> int:
    """Move journal records into ``store``; returns how many records were read.

    Segments no process holds are deleted once stored; live ones are read but kept.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for segment in sorted(folder.glob("*.jsonl")):
        try:
            fd = os.open(segment, os.O_RDONLY)
        except FileNotFoundError:
            continue  # another process ingested it meanwhile
        try:
            owned = _flock(fd, blocking=False)
            with os.fdopen(os.dup(fd), "rb") as fh:
                records = _parse_lines(fh.read(), segment)
            store.write(records)
            count += len(records)
            if owned:
                segment.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return count


class LogWriter:
    """The server side of the log: journal on the request path, store filled in background.

    The store may be unreachable (a database restarting, even when the server starts): the
    server answers all the same, its records wait in the journal, and each round of the
    background thread tries again; one warning when writing starts failing, one line when
    it works again.
    """

    def __init__(
        self,
        journal_dir: str | os.PathLike[str],
        store_url: str,
        *,
        durability: str = "write",
        interval: float = 1.0,
    ) -> None:
        self.journal_dir = Path(journal_dir)
        self.store_url = store_url
        self.interval = interval
        self._store: PredictionStore | None = None
        self._failing_since: float | None = None
        self._warned_at = 0.0
        # Whatever a killed predecessor left behind goes in first (or in a later round).
        self._replay()
        self.journal = Journal(self.journal_dir, durability=durability)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, records: Iterable[Mapping[str, Any]]) -> Future[None] | None:
        """Journal ``records`` before their responses are released: durable on return
        (``write``), or once the returned future completes (``fsync``, group commit)."""
        if self.journal.fsync:
            return self.journal.append_synced(records)
        self.journal.append(records)
        return None

    def _replay(self) -> bool:
        """Move unheld journal segments into the store; False (and the records stay in the
        journal for the next round) when the store cannot be opened or written."""
        try:
            if self._store is None:
                self._store = open_prediction_store(self.store_url)
            replay_journal(self.journal_dir, self._store)
        except Exception as exc:  # any store failure: the records stay, retry later
            now = time.time()
            if self._failing_since is None or now - self._warned_at >= 300:
                _log.warning(
                    "prediction log store %s cannot be written (records stay in %s; retrying "
                    "every %g s): %s",
                    redact(self.store_url), self.journal_dir, self.interval, exc,
                    exc_info=not isinstance(exc, ServingError),  # stores' own: clear enough
                )  # fmt: skip
                self._warned_at = now
            if self._failing_since is None:
                self._failing_since = now
            return False
        if self._failing_since is not None:
            _log.info(
                "prediction log store %s written again after %.0f s",
                redact(self.store_url), time.time() - self._failing_since,
            )  # fmt: skip
            self._failing_since = None
        return True

    def _ingest(self) -> None:
        self.journal.rotate()
        self._replay()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._ingest()

    def close(self) -> None:
        """Stop the background thread and ingest what is left."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._ingest()
        self.journal.close()
        self._replay()  # the last segment; if the store is down, the next start stores it
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()


# -- reading ------------------------------------------------------------------------------


def _epoch(value: float | str | dt.datetime | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if value.tzinfo is None:  # naive datetimes are taken as local time, like time.time()
        return time.mktime(value.timetuple()) + value.microsecond / 1e6
    return value.timestamp()


def read_predictions(
    deployment: str,
    *,
    since: float | str | dt.datetime | None = None,
    until: float | str | dt.datetime | None = None,
    limit: int | None = None,
    config: Config | None = None,
) -> pd.DataFrame:
    """The logged predictions of ``deployment``: one row per input row, oldest first.

    Columns: ``request_id``, ``row`` (position in its request), ``timestamp`` (UTC),
    ``deployment``, ``model_name``, ``model_version``, ``run_id``, ``role`` (primary or
    canary), ``endpoint``, ``latency_ms``, then the input columns (``input_<name>`` for one
    named like these), then ``prediction`` (or ``prediction_<name>`` for models answering
    several columns). ``since``/``until`` take
    datetimes, ISO strings or epoch seconds; ``limit`` keeps the latest that many requests.
    Journal records not yet stored (a running or killed server) are included.
    """
    import pandas as pd

    from jupyter_mlops.config import load_config
    from jupyter_mlops.serving.state import JOURNAL_DIR, deployments_root, read_state

    config = config or load_config()
    folder = deployments_root(config.mlops_dir) / deployment
    state = read_state(folder) or {}
    url = (
        state.get("prediction_log") or config.prediction_log or default_store_url(config.mlops_dir)
    )
    store = open_prediction_store(url)
    try:
        replay_journal(folder / JOURNAL_DIR, store)
        rows = store.read(deployment, since=_epoch(since), until=_epoch(until), limit=limit)
    finally:
        store.close()
    if not rows and not folder.is_dir():
        raise DeploymentNotFoundError(f"No deployment named {deployment!r} in {config.root}.")
    return _explode(rows, pd)


def _explode(rows: list[dict[str, Any]], pd: Any) -> pd.DataFrame:
    meta_cols = ["request_id", "row", "timestamp", "deployment", "model_name", "model_version"]
    meta_cols += ["run_id", "role", "endpoint", "latency_ms"]
    meta: dict[str, list[Any]] = {c: [] for c in meta_cols}
    inputs: dict[str, list[Any]] = {}
    outputs: dict[str, list[Any]] = {}
    total = 0
    for rec in rows:
        data = _loads(rec["inputs"]) if rec["inputs"] else {}
        preds = _loads(rec["outputs"]) if rec["outputs"] else []
        if not isinstance(data, dict):  # tensor input: one cell per request
            data = {"input": [data]}
        n = max((len(v) for v in data.values() if isinstance(v, list)), default=1)
        if not isinstance(preds, list) or len(preds) != n:
            preds = [preds] * n if n == 1 else [None] * n
        for key, values in data.items():
            if key in meta or key == "prediction" or key.startswith("prediction_"):
                key = f"input_{key}"  # an input named like a log column keeps both
            column = inputs.setdefault(key, [None] * total)
            column.extend(values if isinstance(values, list) else [values] * n)
        for i in range(n):
            pred = preds[i]
            keys = pred.items() if isinstance(pred, dict) else [(None, pred)]
            for key, value in keys:
                name = "prediction" if key is None else f"prediction_{key}"
                column = outputs.setdefault(name, [None] * total)
                column.extend([None] * (total + i - len(column)))
                column.append(value)
        for key in meta_cols:
            if key == "row":
                meta[key].extend(range(n))
            elif key == "timestamp":
                meta[key].extend([rec["ts"]] * n)
            else:
                meta[key].extend([rec[key]] * n)
        total += n
        for column in (*inputs.values(), *outputs.values()):
            column.extend([None] * (total - len(column)))
    frame = pd.DataFrame({**meta, **inputs, **outputs})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
    return frame
