"""Micro-batching: concurrent requests to one model become one ``predict`` call.

A random forest takes about as long for 256 rows as for one, so under load the server
answers many requests for the price of one model call. Requests queue per model; one
coroutine drains the queue, running one batch at a time in a worker thread so the event loop
keeps reading requests meanwhile (those form the next batch).

A slow batch does not hold the queue: once it has run for ``stall_s`` (1 s) the next batch
starts beside it, in the other thread of ``executor``, up to ``max_running`` batches at once
(two model calls in one process, as two threads of a web framework would make them).

A deployment's request timeout bounds the wait for a batch too: a batch still running when
the last of its requests' deadlines passes is abandoned. Its requests are answered 504, its
thread finishes the model call in the background (a thread cannot be interrupted; the result
is dropped), and the drain goes on with the next batch in another thread of ``executor``.
Requests whose handler already gave up are skipped, not predicted.

The wait is adaptive: a lone request (nothing else in flight recently) is dispatched at once,
so batching costs nothing at concurrency 1. When recent batches held ``n`` requests, the next
one lingers at most ``max_wait_s`` for up to ``n`` to arrive, bounded by ``max_rows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from jupyter_mlops.serving.errors import PredictionError, log_failed
from jupyter_mlops.serving.scoring import EnforcedInput
from jupyter_mlops.serving.validation import RawInput, TableInput


@dataclass(eq=False)
class Pending:
    """One request waiting for its predictions."""

    input: TableInput | RawInput | EnforcedInput
    params: dict[str, Any] | None
    request_id: str
    started: float  # time.perf_counter() at arrival, for latency
    ts: float  # time.time() at arrival, for the log
    endpoint: str
    role: str
    output: str = "label"  # "label" (predict) or "proba" (predict_proba): never mixed in a batch
    future: asyncio.Future[Any] | None = field(default=None, repr=False)

    @property
    def joinable(self) -> bool:
        return getattr(self.input, "key", None) is not None and not self.params


#: ``run_batch(batch) -> (outcomes, durable)``: one outcome (a result or an exception) per
#: request, and None or a future that completes when the outcomes may be released.
RunBatch = Callable[[Sequence[Pending]], tuple[list[Any], "Future[None] | None"]]


#: How long a running batch holds the next one back before that one starts beside it.
STALL_S = 1.0
#: The most batches of one model predicted at once (the predict pool has two threads).
MAX_RUNNING = 2


class Batcher:
    """Queue + drain loop for one model, predicting one batch at a time in ``executor``
    (two at once when one is slow: see :data:`STALL_S`)."""

    def __init__(
        self,
        run_batch: RunBatch,
        executor: Executor,
        *,
        enabled: bool = True,
        max_wait_s: float = 0.002,
        max_rows: int = 256,
        timeout_s: float | None = None,
        stall_s: float = STALL_S,
        max_running: int = MAX_RUNNING,
    ) -> None:
        self.run_batch = run_batch
        self.timeout_s = timeout_s  # seconds from a request's arrival to its 504
        self.executor = executor
        self.enabled = enabled
        self.max_wait_s = max_wait_s
        self.max_rows = max(1, max_rows)
        self._queue: deque[Pending] = deque()
        self._rows = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._recent: deque[int] = deque([1], maxlen=8)
        self.stall_s = stall_s
        self.max_running = max(1, max_running)
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: Pending) -> Any:
        """Queue ``item`` and wait for its outcome (exceptions are raised here)."""
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        self._queue.append(item)
        self._rows += item.input.n_rows
        self._wake.set()
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await item.future

    async def _linger(self) -> None:
        loop = asyncio.get_running_loop()
        expected = max(self._recent)
        deadline = loop.time() + self.max_wait_s
        while len(self._queue) < expected and self._rows < self.max_rows:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[Pending]:
        while self._queue[0].future is not None and self._queue[0].future.done():
            gone = self._queue.popleft()  # its handler gave up (timeout, client gone)
            self._rows -= gone.input.n_rows
            if not self._queue:
                return []
        first = self._queue.popleft()
        batch, rows = [first], first.input.n_rows
        if self.enabled and first.joinable:
            key = first.input.key  # type: ignore[union-attr]
            while self._queue:
                nxt = self._queue[0]
                if (
                    not nxt.joinable
                    or nxt.input.key != key  # type: ignore[union-attr]
                    or nxt.output != first.output
                ):
                    break
                if rows + nxt.input.n_rows > self.max_rows:
                    break
                batch.append(self._queue.popleft())
                rows += nxt.input.n_rows
        self._rows -= rows
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if len(self._running) >= self.max_running:  # every slot taken by a slow batch
                    await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if self.enabled and self.max_wait_s > 0 and self._queue[0].joinable:
                    await self._linger()
                batch = self._take()
                if not batch:
                    continue
                self._recent.append(len(batch))
                task = loop.create_task(self._predict(batch))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                # The next batch waits for this one (it forms meanwhile), unless this one stalls.
                await asyncio.wait({task}, timeout=self.stall_s)
        finally:
            self._task = None

    async def _predict(self, batch: Sequence[Pending]) -> None:
        """Predict ``batch`` in the executor and answer its requests."""
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self.executor, self.run_batch, batch)
        try:
            outcomes, durable = await self._in_time(call, batch)
        except Exception as exc:  # run_batch reports per item; this is a safety net
            outcomes, durable = [exc] * len(batch), None
        if durable is None:
            _release(batch, outcomes)
        else:  # answer after the group commit; meanwhile predict the next batch
            durable.add_done_callback(functools.partial(_release_on_loop, loop, batch, outcomes))

    async def _in_time(self, call: asyncio.Future[Any], batch: Sequence[Pending]) -> Any:
        """``call``'s result, or 504 outcomes once the batch's last deadline has passed."""
        if self.timeout_s is None:
            return await call
        deadline = max(p.started for p in batch) + self.timeout_s
        done, _ = await asyncio.wait({call}, timeout=max(0.0, deadline - time.perf_counter()))
        if done:
            return call.result()
        call.add_done_callback(_dropped)  # the thread finishes the call; nobody waits for it
        return [timed_out(self.timeout_s)] * len(batch), None

    async def aclose(self) -> None:
        """Wait for queued requests to be answered (used at shutdown)."""
        task = self._task
        if task is not None:
            with contextlib.suppress(Exception):
                await task
        if self._running:
            await asyncio.wait(set(self._running))


def timed_out(seconds: float) -> PredictionError:
    """The answer to a request not predicted within the deployment's timeout: 504."""
    return PredictionError(
        f"The prediction did not finish within the deployment's timeout of {seconds:g} s; "
        "retry later, send fewer rows, or deploy with a longer --timeout.",
        status=504,
    )


def _dropped(call: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned batch's outcome (so asyncio does not report it as unhandled)."""
    if not call.cancelled():
        call.exception()


def _release(batch: Sequence[Pending], outcomes: Sequence[Any]) -> None:
    for item, outcome in zip(batch, outcomes, strict=True):
        assert item.future is not None
        if item.future.done():  # the client went away
            continue
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)


def _release_on_loop(
    loop: asyncio.AbstractEventLoop,
    batch: Sequence[Pending],
    outcomes: Sequence[Any],
    durable: Future[None],
) -> None:
    """Release the batch on the event loop's thread (the commit completes on another)."""
    loop.call_soon_threadsafe(_release_when_durable, batch, outcomes, durable)


def _release_when_durable(
    batch: Sequence[Pending], outcomes: Sequence[Any], durable: Future[None]
) -> None:
    error = durable.exception()
    if error is not None:
        outcomes = [log_failed(error)] * len(batch)
    _release(batch, outcomes)
