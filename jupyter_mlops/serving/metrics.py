"""Prometheus metrics of one server: requests, errors, latency, batch sizes, traffic split,
which models it serves, and the usual ``process_*`` metrics of its processes.

Series are labelled per deployment and model version (and role: primary or canary), so a
canary's error rate and latency can be compared with the primary's while it runs. The
traffic split is a 0-1 ratio (Prometheus' convention for shares), and
``jupyter_mlops_model_info`` (always 1) carries each served version's run id, for joins.
With several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` is set by the entry point and
``/metrics`` aggregates the workers' files; ``process_*`` then come once per live worker,
labelled with its ``pid`` (a worker reads its siblings' ``/proc`` entries).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_MODEL_LABELS = ("deployment", "model_name", "model_version", "role")
# A multiprocess value file: ``counter_1234.db``, ``gauge_mostrecent_1234.db``...
_WORKER_FILE = re.compile(r"_(\d+)\.db$")


class Metrics:
    """The server's metric families, with label children cached for the request path."""

    def __init__(self, deployment: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.deployment = deployment
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode values live in the shared folder, not in a registry.
        self.registry = None if self.multiprocess else CollectorRegistry()
        if self.registry is not None:
            from prometheus_client import ProcessCollector

            ProcessCollector(registry=self.registry)
        reg: Any = {"registry": self.registry}
        self.requests = Counter(
            "jupyter_mlops_requests",
            "Prediction requests answered, by endpoint, model version and HTTP status.",
            (*_MODEL_LABELS, "endpoint", "status"),
            **reg,
        )
        self.errors = Counter(
            "jupyter_mlops_request_errors",
            "Prediction requests answered with an error status (4xx or 5xx).",
            (*_MODEL_LABELS, "endpoint", "status"),
            **reg,
        )
        self.latency = Histogram(
            "jupyter_mlops_request_latency_seconds",
            "Time from receiving a prediction request to its answer.",
            (*_MODEL_LABELS, "endpoint"),
            buckets=LATENCY_BUCKETS,
            **reg,
        )
        self.rows = Counter(
            "jupyter_mlops_predicted_rows",
            "Input rows predicted.",
            _MODEL_LABELS,
            **reg,
        )
        self.batch_rows = Histogram(
            "jupyter_mlops_batch_rows",
            "Rows per model call after micro-batching.",
            ("deployment", "model_name", "model_version"),
            buckets=BATCH_BUCKETS,
            **reg,
        )
        self.weight = Gauge(
            "jupyter_mlops_traffic_weight_ratio",
            "Share of traffic routed to a model version (0-1).",
            _MODEL_LABELS,
            multiprocess_mode="mostrecent",
            **reg,
        )
        self.model_info = Gauge(
            "jupyter_mlops_model_info",
            "1 for each model version the deployment serves, with its run id (0: no longer).",
            (*_MODEL_LABELS, "run_id"),
            multiprocess_mode="mostrecent",
            **reg,
        )
        self.unauthorized = Counter(
            "jupyter_mlops_unauthorized_requests",
            "Requests refused for a missing or wrong bearer token.",
            ("deployment", "status"),
            **reg,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self.collectors: list[Any] = []  # computed series (the performance gauges)
        self._served: set[tuple[str, ...]] = set()  # label values of the traffic gauges

    def _child(self, family: Any, labels: tuple[str, ...]) -> Any:
        key = (id(family), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def observe(
        self,
        model: tuple[str, str],
        role: str,
        endpoint: str,
        status: int,
        seconds: float,
        rows: int = 0,
    ) -> None:
        """Count one answered prediction request."""
        labels = (self.deployment, model[0], model[1], role)
        code = str(status)
        self._child(self.requests, (*labels, endpoint, code)).inc()
        self._child(self.latency, (*labels, endpoint)).observe(seconds)
        if status >= 400:
            self._child(self.errors, (*labels, endpoint, code)).inc()
        elif rows:
            self._child(self.rows, labels).inc(rows)

    def refused(self, status: int) -> None:
        """Count a request refused for its token (401 or 403)."""
        self._child(self.unauthorized, (self.deployment, str(status))).inc()

    def observe_batch(self, model: tuple[str, str], rows: int) -> None:
        self._child(self.batch_rows, (self.deployment, *model)).observe(rows)

    def set_traffic(self, split: list[tuple[tuple[str, str], str, float, str | None]]) -> None:
        """Replace the traffic and model-info gauges: ``[((name, version), role, percent,
        run_id), ...]``. A version no longer served loses its series; in multiprocess mode
        (where series cannot be removed from the workers' files) it drops to 0 instead."""
        served = {(self.deployment, *model, role, run_id or ""): percent
                  for model, role, percent, run_id in split}  # fmt: skip
        for labels in self._served - served.keys():
            if self.multiprocess:
                self.weight.labels(*labels[:4]).set(0)
                self.model_info.labels(*labels).set(0)
            else:
                self.weight.remove(*labels[:4])
                self.model_info.remove(*labels)
        for labels, percent in served.items():
            self.weight.labels(*labels[:4]).set(percent / 100.0)
            self.model_info.labels(*labels).set(1)
        self._served = set(served)

    def add_collector(self, collector: Any) -> None:
        """Expose ``collector``'s families (computed by this process) on ``/metrics``."""
        self.collectors.append(collector)
        if self.registry is not None:
            self.registry.register(collector)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(WorkerProcesses(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
            for collector in self.collectors:  # this worker's own, not in the shared files
                registry.register(collector)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None  # one process: the registry made in __init__
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class WorkerProcesses:
    """``process_*`` metrics of every live worker, labelled ``pid``: the workers are the
    processes with a value file in the multiprocess folder (each sets its traffic gauges
    at start). A worker that died (a restart leaves its file) has no ``/proc`` entry and
    is skipped."""

    def __init__(self, folder: str, proc: str = "/proc") -> None:
        self.folder = Path(folder)
        self.proc = proc

    def collect(self) -> Iterator[Any]:
        from prometheus_client import ProcessCollector
        from prometheus_client.metrics_core import Metric

        pids = sorted(
            {m.group(1) for p in self.folder.glob("*.db") if (m := _WORKER_FILE.search(p.name))},
            key=int,
        )
        merged: dict[str, Metric] = {}
        for pid in pids:
            if not Path(self.proc, pid).is_dir():
                continue
            collector = ProcessCollector(pid=_constant(pid), proc=self.proc, registry=None)
            for family in collector.collect():
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    into.samples.append(sample._replace(labels={**sample.labels, "pid": pid}))
        yield from merged.values()


def _constant(value: str) -> Callable[[], str]:
    return lambda: value
