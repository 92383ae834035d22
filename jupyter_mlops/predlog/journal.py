"""The journal: per-process segment files that make a prediction durable before it is answered.

Each server process appends to ``<deployment>/journal/<pid>-<ns>-<n>.jsonl``, one line per
request, with one ``os.write`` *before* the responses are released. Once ``write`` returns the
bytes belong to the kernel's page cache, so a ``kill -9`` of the server cannot lose them. With
``durability="fsync"`` a committer thread also syncs them (``fdatasync``) first, which survives
a power cut; batches that queue during one sync share the next (group commit), so the
predicting thread never waits for the disk.

The writer holds an ``flock`` on its open segment. A segment nobody holds (closed, or left by
a killed server) is replayed into a store and deleted by whoever takes the lock first: the
server itself, its next start, or a reader. Stores ignore request ids they already hold, so
replaying twice is harmless; live segments are read but kept, so a reader sees every answered
request at once.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.errors import ServingError
from jupyter_mlops.predlog.base import PAYLOAD_COLUMNS, PredictionStore, dumps, loads

__all__ = ["Journal", "replay_journal"]

_log = safe_logger(__name__)


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
        """Records as lines ``<meta JSON> TAB <inputs JSON> TAB <outputs JSON>``, plus
        ``TAB <proba JSON>`` for a record with class probabilities.

        JSON never holds a raw tab, so ingestion splits a line without parsing the (large)
        inputs and outputs, and stores their JSON text as it is.
        """
        lines = []
        for rec in records:
            meta = {k: v for k, v in rec.items() if k not in PAYLOAD_COLUMNS}
            parts = [dumps(meta), dumps(rec.get("inputs")), dumps(rec.get("outputs"))]
            proba = rec.get("proba")
            if proba is not None:
                parts.append(dumps(proba))
            lines.append(b"\t".join(parts))
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

    def append_each(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[list[Exception | None], Future[None] | None]:
        """Journal ``records`` as :meth:`append` (or :meth:`append_synced` in fsync mode)
        does, but one record's failure fails that record alone: when the batch cannot be
        encoded or written, each record is tried by itself. Returns one error (None:
        journalled) per record, and the group commit's future in fsync mode."""
        try:
            lines = [self.encode(records)]
            errors: list[Exception | None] = [None] * len(records)
        except Exception:  # a record orjson cannot write: find it
            lines, errors = self._encode_each(records)
        data = b"".join(lines)
        if self.fsync:
            return errors, self._queue(data)
        try:
            if data:
                self._write(data, sync=False)
        except Exception:  # try the records one by one: what the disk takes is journalled
            if len(lines) == 1:
                lines, errors = self._encode_each(records)
            good = iter(lines)
            for i, error in enumerate(errors):
                if error is None:
                    try:  # the newline ends a line the failed write may have left partial
                        self._write(b"\n" + next(good), sync=False)
                    except Exception as exc:
                        errors[i] = exc
        return errors, None

    def _encode_each(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[list[bytes], list[Exception | None]]:
        """Each record's line (those that encode) and each record's error (or None)."""
        lines: list[bytes] = []
        errors: list[Exception | None] = []
        for record in records:
            try:
                lines.append(self.encode([record]))
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        return lines, errors

    def _queue(self, data: bytes) -> Future[None]:
        done: Future[None] = Future()
        if data:
            self._pending.put((data, done))
        else:
            done.set_result(None)
        return done

    def append_synced(self, records: Iterable[Mapping[str, Any]]) -> Future[None]:
        """Queue ``records`` for the next group commit; the future completes once synced."""
        if not self.fsync:
            done: Future[None] = Future()
            try:
                self.append(records)
                done.set_result(None)
            except Exception as exc:
                done.set_exception(exc)
            return done
        return self._queue(self.encode(records))

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
                if len(group) == 1:
                    group[0][1].set_exception(exc)
                else:  # what the disk takes is answered; the rest fails alone
                    for data, done in group:
                        self._commit_one(data, done)
            else:
                for _, done in group:
                    done.set_result(None)
            if stop:
                return

    def _commit_one(self, data: bytes, done: Future[None]) -> None:
        try:
            self._write(data, sync=True)
        except Exception as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)

    def rotate(self) -> bool:
        """Close the current segment (for ingestion) if it holds anything; start a new one."""
        with self._lock:
            if self._fd is None or self._bytes == 0:
                return False
            os.close(self._fd)  # releases the flock: the segment is now free to ingest
            self._open()
            return True

    def close(self) -> None:
        """Stop the committer (after what it holds) and close the open segment."""
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
            if len(parts) in (3, 4):
                record = loads(parts[0])
                record["inputs"], record["outputs"] = parts[1].decode(), parts[2].decode()
                if len(parts) == 4:
                    record["proba"] = parts[3].decode()
            else:  # a record written as one JSON object
                record = loads(line)
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
