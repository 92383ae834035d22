"""The server side of the prediction log: the journal on the request path, a store behind it.

A background thread closes the journal's segment every ``interval`` seconds and replays the
closed segments into the store, off the request path. While the store cannot be written (a
database restarting, even when the server starts) the records stay in the journal and each
round tries again.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from jupyter_mlops._util.urls import redact, safe_logger
from jupyter_mlops.errors import ServingError
from jupyter_mlops.predlog.base import PredictionStore, open_prediction_store
from jupyter_mlops.predlog.journal import Journal, replay_journal

__all__ = ["LogWriter"]

_log = safe_logger(__name__)


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

    def append_each(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[list[Exception | None], Future[None] | None]:
        """Journal ``records`` as :meth:`append` does, failing only the records that cannot
        be journalled: one error (None: durable, or once the future completes) per record."""
        return self.journal.append_each(records)

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
