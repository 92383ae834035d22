"""Prometheus metrics of one server: requests, errors, latency, batch sizes, traffic split.

Series are labelled per deployment and model version (and role: primary or canary), so a
canary's error rate and latency can be compared with the primary's while it runs. With
several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` is set by the entry point and
``/metrics`` aggregates the workers' files.
"""

from __future__ import annotations

import os
from typing import Any

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_MODEL_LABELS = ("deployment", "model_name", "model_version", "role")


class Metrics:
    """The server's metric families, with label children cached for the request path."""

    def __init__(self, deployment: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.deployment = deployment
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode values live in the shared folder, not in a registry.
        self.registry = None if self.multiprocess else CollectorRegistry()
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
            "jupyter_mlops_traffic_weight_percent",
            "Share of traffic routed to a model version.",
            _MODEL_LABELS,
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

    def set_traffic(self, split: list[tuple[tuple[str, str], str, float]]) -> None:
        """Replace the traffic gauges: ``[((name, version), role, percent), ...]``."""
        self.weight.clear()
        self._children = {k: v for k, v in self._children.items() if k[0] != id(self.weight)}
        for model, role, percent in split:
            self.weight.labels(self.deployment, model[0], model[1], role).set(percent)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None  # one process: the registry made in __init__
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
