"""Where steps execute: a registry of ``concurrent.futures`` executors by name.

``local`` (the default) is a pool of worker processes, or the calling process itself when
only one step can run at a time (no pool to start); ``threads`` runs papermill in threads
(the notebooks still run in their own kernel processes); ``dask`` submits to a Dask
distributed scheduler (``scheduler="tcp://host:8786"``, or a local cluster when none is
given). Every executor returns ``concurrent.futures`` futures, so the runner schedules
the same way on all of them. Register more with :func:`register_executor`.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_mlops.errors import MlopsError


@dataclass(frozen=True)
class ExecutorOptions:
    """What a pipeline run asks of an executor."""

    workers: int  # tasks that may run at once
    scheduler: str | None = None  # e.g. a Dask scheduler address


ExecutorFactory = Callable[[ExecutorOptions], cf.Executor]
_EXECUTORS: dict[str, ExecutorFactory] = {}


def register_executor(name: str, factory: ExecutorFactory) -> None:
    """Make ``executor: name`` (and ``--executor name``) create executors with ``factory``."""
    _EXECUTORS[name] = factory


def known_executors() -> list[str]:
    """Names a pipeline or a step can ask for."""
    return sorted(_EXECUTORS)


def make_executor(name: str, options: ExecutorOptions) -> cf.Executor:
    """A new executor of kind ``name``; the caller shuts it down."""
    if name not in _EXECUTORS:
        raise MlopsError(f"Unknown executor {name!r} (known: {', '.join(known_executors())})")
    return _EXECUTORS[name](options)


class InlineExecutor(cf.Executor):
    """Runs each task in the calling thread at submit time: nothing to start for one task."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class _SharedPool(cf.Executor):
    """A view of a process pool kept for the life of this process (shutdown is a no-op).

    Starting worker processes and importing papermill in them costs a second or two; a
    notebook, a CLI sweep or a watch loop that runs several pipelines pays it once.
    """

    def __init__(self, pool: cf.ProcessPoolExecutor) -> None:
        self._pool = pool

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


_POOLS: dict[int, cf.ProcessPoolExecutor] = {}


def _warm() -> None:
    import signal

    # An interrupt of the kernel that owns the pool reaches its workers too (one process
    # group); the owner cancels what is queued, and a worker's traceback is only noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import papermill  # noqa: F401 - imported once per worker, before the first step


def _shutdown_pools() -> None:
    for pool in _POOLS.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()


def _local(options: ExecutorOptions) -> cf.Executor:
    if options.workers <= 1:
        return InlineExecutor()
    pool = _POOLS.get(options.workers)
    if pool is None or getattr(pool, "_broken", False):
        import atexit
        import multiprocessing

        # Not fork: the caller may be a Jupyter kernel with threads and open sockets. The
        # forkserver is a fresh process that imports the step runner once; workers fork
        # from it cheaply.
        method = (
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        )
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(["jupyter_mlops.pipelines.execute", "papermill"])
        pool = cf.ProcessPoolExecutor(
            max_workers=options.workers, mp_context=context, initializer=_warm
        )
        if not _POOLS:
            atexit.register(_shutdown_pools)
        _POOLS[options.workers] = pool
    return _SharedPool(pool)


def _threads(options: ExecutorOptions) -> cf.Executor:
    return cf.ThreadPoolExecutor(max_workers=max(1, options.workers))


class DaskExecutor(cf.Executor):
    """A Dask distributed client as a ``concurrent.futures`` executor.

    Connects to ``scheduler`` or, without one, starts a ``LocalCluster`` of process
    workers (closed again on shutdown). Workers need jupyter-mlops and the project folder
    at the same path (a shared file system), as the kernels read inputs and write outputs.
    """

    def __init__(self, options: ExecutorOptions) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise MlopsError(
                "The dask executor needs Dask distributed: pip install 'dask[distributed]'"
            ) from None
        # distributed's own annotations are partial: its objects are handled as Any.
        self._cluster: Any = None
        self.client: Any
        if options.scheduler:
            try:
                self.client = Client(options.scheduler, timeout="10s")  # type: ignore[no-untyped-call]
            except OSError as exc:
                raise MlopsError(
                    f"Cannot reach the Dask scheduler at {options.scheduler}: {exc}"
                ) from None
        else:
            self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=max(1, options.workers),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            self.client = Client(self._cluster)  # type: ignore[no-untyped-call]
        self._executor: cf.Executor = self.client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


register_executor("local", _local)
register_executor("threads", _threads)
register_executor("dask", DaskExecutor)


def default_workers(width: int) -> int:
    """Tasks to run at once: as many as can run, at most one per CPU."""
    return max(1, min(width, os.cpu_count() or 1))
