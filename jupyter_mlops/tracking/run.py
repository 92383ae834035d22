"""The run object: what a tracked piece of work logs, and where it goes when the store is gone.

``TrackedRun`` writes params, metrics, tags, artifacts, models and data snapshots to the
tracking store through the shared client, and keeps a copy of everything it sends, so a
run whose store becomes unreachable half-way can be buffered whole and re-logged later
(``tracking/buffer.py``). Opening and ending runs is ``tracking/lifecycle.py``; how a
model is written is its flavour's (``tracking/flavors/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.client import client, quiet_mlflow
from jupyter_mlops.config import Config
from jupyter_mlops.errors import TrackingError
from jupyter_mlops.tracking import flavors, signatures, store
from jupyter_mlops.tracking.datasets import (
    DatasetRecord,
    fingerprint_data,
    training_dataset,
    training_input,
)
from jupyter_mlops.tracking.models import head, signature_sample

if TYPE_CHECKING:
    from jupyter_mlops.data import DataSnapshot
    from jupyter_mlops.tracking.capture import Captured
    from jupyter_mlops.tracking.card import RunCard
    from jupyter_mlops.tracking.usermlflow import UserLogged

# Tags a run carries that other parts read back (registry lineage, run tables, sidebar).
TAG_DATA = "mlops.data"
TAG_SOURCE_HASH = "mlops.source.sha256"
TAG_NOTEBOOK = "mlops.notebook"
TAG_MODELS = "mlops.models"
PENDING_PREFIX = "pending-"  # run id of a run that never reached the store
INPUT_EXAMPLE_ROWS = 5
_OFFLINE: Any = object()
_log = safe_logger(__name__)


@dataclass
class ModelRecord:
    """A model logged with a run (or the reason it could not be)."""

    name: str
    flavor: str = flavors.FALLBACK
    model_uri: str | None = None
    model_id: str | None = None
    signature: str | None = None
    error: str | None = None
    by_user: bool = False  # logged by the cell's own MLflow code, not by capture

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class TrackedRun:
    """An open (or just closed) run, with what has been logged to it."""

    run_id: str
    experiment_id: str
    experiment_name: str
    run_name: str
    config: Config
    status: str = "RUNNING"
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    step_metrics: dict[str, list[float]] = field(default_factory=dict, repr=False)  # histories
    models: dict[str, ModelRecord] = field(default_factory=dict)
    data: list[DataSnapshot] = field(default_factory=list)
    datasets: list[DatasetRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what went wrong or was left out, and why
    skipped: dict[str, str] = field(default_factory=dict)  # cell variable -> why not logged
    notebook: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    error: str | None = None
    # Everything sent to the store is also kept here, so a run whose store becomes
    # unreachable can be buffered whole and re-logged later (see tracking/buffer.py).
    tags: dict[str, str] = field(default_factory=dict, repr=False)
    texts: dict[str, str] = field(default_factory=dict, repr=False)
    files: list[tuple[str, str]] = field(default_factory=list, repr=False)
    model_inputs: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict, repr=False)
    search_runs: bool = False  # log one child run per candidate of a hyperparameter search
    offline: str | None = None  # why the store could not be reached, once it could not
    orphan_run_id: str | None = None  # the run left RUNNING on the store when it went away
    pending_id: str | None = None  # where the run was buffered

    # -- the store, or the buffer when the store is gone ---------------------------------
    def _remote(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` against the store; ``_OFFLINE`` once the store is unreachable."""
        if self.offline is not None:
            return _OFFLINE
        try:
            return store.call(fn, *args, **kwargs)
        except Exception as exc:
            if not store.is_unavailable(exc):
                raise
            self.go_offline(exc)
            return _OFFLINE

    def go_offline(self, exc: BaseException | str) -> None:
        """Stop writing to the store: the rest of the run is kept for ``%mlops retry``."""
        if self.offline is not None:
            return
        self.offline = store.went_offline(self.config.tracking_uri, exc)[:300]  # redacted
        if not self.run_id.startswith(PENDING_PREFIX):
            self.orphan_run_id = self.run_id

    # -- logging -------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record parameters; a name already logged with another value is kept as first logged."""
        from mlflow.entities import Param

        fresh = {}
        for key, value in params.items():
            text = str(value)
            if key in self.params:
                if self.params[key] != text:
                    self.notes.append(f"param {key!r} already logged as {self.params[key]!r}")
                continue
            fresh[key] = text
        if not fresh:
            return
        from mlflow.exceptions import MlflowException

        batch = [Param(k, v) for k, v in fresh.items()]
        try:  # one round trip when nothing else logged these names (the usual case)
            self._remote(client(self.config).log_batch, self.run_id, params=batch)
            self.params.update(fresh)
            return
        except MlflowException as exc:
            if "INVALID_PARAMETER_VALUE" not in str(exc.error_code):
                raise
        # The user's own mlflow.log_param got there first with another value: keep theirs.
        remote = self._remote(client(self.config).get_run, self.run_id)
        existing = {} if remote is _OFFLINE else remote.data.params
        for key in [k for k in fresh if k in existing]:
            if existing[key] != fresh[key]:
                self.notes.append(f"param {key!r} already logged as {existing[key]!r}")
            self.params[key] = existing[key]
            del fresh[key]
        batch = [Param(k, v) for k, v in fresh.items()]
        self.params.update(fresh)
        self._remote(client(self.config).log_batch, self.run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record metric values (at ``step`` for learning curves)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if batch:
            self.metrics.update({k: float(v) for k, v in metrics.items()})
            self._remote(client(self.config).log_batch, self.run_id, metrics=batch)

    def log_step_metrics(self, histories: Mapping[str, Sequence[float]]) -> None:
        """Record metric histories (value ``i`` at step ``i``; thinned past
        ``steps.MAX_STEPS``) in batches of MLflow's 1,000-metric limit.

        A history already logged under the same name is not sent again, so a model's
        training curve logged by the cell capture and again by ``log_model`` appears once.
        The last value of each is the metric's value (``metrics``), as MLflow shows it.
        """
        from mlflow.entities import Metric

        from jupyter_mlops.tracking.steps import thin

        fresh: dict[str, list[float]] = {}
        for key, values in histories.items():
            series = [float(v) for v in values]
            if series and self.step_metrics.get(key) != series:
                fresh[key] = series
        if not fresh:
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, i) for k, series in fresh.items() for i, v in thin(series)]
        self.step_metrics.update(fresh)
        self.metrics.update({k: series[-1] for k, series in fresh.items()})
        for start in range(0, len(batch), 1000):
            self._remote(
                client(self.config).log_batch, self.run_id, metrics=batch[start : start + 1000]
            )

    def logged_metric_keys(self) -> set[str]:
        """The metric keys the store holds for this run (one call; empty when offline)."""
        remote = self._remote(client(self.config).get_run, self.run_id)
        return set() if remote is _OFFLINE else set(remote.data.metrics)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (strings in MLflow)."""
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        if batch:
            self.tags.update({k: str(v) for k, v in tags.items()})
            self._remote(client(self.config).log_batch, self.run_id, tags=batch)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as an artifact of the run."""
        self.texts[artifact_file] = text
        self._remote(client(self.config).log_text, self.run_id, text, artifact_file)

    def log_file(self, path: str | os.PathLike[str], artifact_path: str) -> None:
        """Store a copy of the file ``path`` under ``artifact_path`` of the run."""
        self.files.append((os.fspath(path), artifact_path))
        self._remote(client(self.config).log_artifact, self.run_id, os.fspath(path), artifact_path)

    def log_model(
        self,
        model: Any,
        name: str = "model",
        *,
        X: Any = None,
        y: Any = None,
        input_example: Any = None,
        step_metrics: Mapping[str, Sequence[float]] | None = None,
    ) -> ModelRecord:
        """Log a model in MLflow's format, with the native flavour of its framework.

        The signature and input example come from ``X`` (the data it was fitted on); the
        pip requirements come from the flavour, read from the running environment instead
        of MLflow's subprocess-based inference, which costs seconds per model. The metric
        histories of its training (``step_metrics``; by default what the flavour reads
        off the model, e.g. ``evals_result_``) are logged first, kept even if the model
        cannot be serialised. Raises ``TrackingError`` if the model cannot be serialised.
        """
        flavor = flavors.flavor_for(model)
        unwrapped = flavor.unwrap(model) if flavor is not None else flavors.Unwrapped(model)
        if unwrapped.wrapped:  # a search: its best estimator is the model
            from jupyter_mlops.tracking.searches import log_search

            log_search(self, name, unwrapped)
            model = unwrapped.model
            flavor = flavors.flavor_for(model)
        record = ModelRecord(name=name, flavor=flavor.name if flavor else flavors.FALLBACK)
        self.model_inputs[name] = (model, X, y)
        if step_metrics is None and flavor is not None:
            step_metrics = flavor.step_metrics(model)
        self.log_step_metrics(step_metrics or {})
        example = input_example if input_example is not None else head(X, INPUT_EXAMPLE_ROWS)
        sample = signature_sample(X) if X is not None else example
        notes_before = len(self.notes)
        signature = self._signature(model, name, sample, flavor)
        if self.offline is not None:
            return self._buffered_model(record, signature, X, y)
        try:
            flavor = flavor or flavors.get(flavors.FALLBACK)
            with quiet_mlflow(), _as_active_run(self.run_id):
                args = flavors.LogArgs(
                    name=name,
                    signature=signature,
                    input_example=example if signature is not None else None,
                    pip_requirements=flavor.requirements(model),
                )
                info = flavor.log(model, args)
        except Exception as exc:
            if store.is_unavailable(exc):
                self.go_offline(exc)
                return self._buffered_model(record, signature, X, y)
            record.error = f"{type(exc).__name__}: {exc}"
            self.models[name] = record
            raise TrackingError(f"Model {name!r} could not be logged: {record.error}") from exc
        if signature is None and getattr(info, "signature", None) is not None:
            # The flavour read one off the model itself (a booster's feature names).
            del self.notes[notes_before:]
            signature = info.signature
        record.model_uri = info.model_uri
        record.model_id = getattr(info, "model_id", None)
        record.signature = signatures.signature_text(signature)
        self.models[name] = record
        self.set_tags({TAG_MODELS: json.dumps({k: v.model_uri for k, v in self.models.items()})})
        if X is not None:
            self.log_dataset(X, name=f"{name}-training", targets=y)
        return record

    def _signature(self, model: Any, name: str, sample: Any, flavor: flavors.Flavor | None) -> Any:
        """MLflow's signature of ``model`` on ``sample``; None (and a note) when unknown."""
        if sample is None:
            self.notes.append(
                f"model {name!r}: training data unknown, no signature (a served model will "
                "not check its inputs)"
            )
            return None
        try:
            return signatures.infer(model, sample, flavor)
        except Exception as exc:  # a model that cannot predict on its own input
            self.notes.append(f"model {name!r}: no signature ({exc})")
            return None

    def _buffered_model(self, record: ModelRecord, signature: Any, X: Any, y: Any) -> ModelRecord:
        record.signature = signatures.signature_text(signature)
        record.model_uri = "(buffered: logged by %mlops retry)"
        self.models[record.name] = record
        if X is not None:
            self.log_dataset(X, name=f"{record.name}-training", targets=y)
        return record

    def log_dataset(self, obj: Any, name: str, *, targets: Any = None) -> DatasetRecord | None:
        """Fingerprint an in-memory DataFrame/array as an MLflow dataset input (training)."""
        fingerprint = fingerprint_data(obj)
        if fingerprint is None:
            return None
        content_hash, shape, schema = fingerprint
        try:
            dataset = training_dataset(obj, name, targets=targets)
        except Exception as exc:
            self.notes.append(f"dataset {name!r} not recorded: {exc}")
            return None
        entity = training_input(dataset, content_hash)
        self._remote(client(self.config).log_inputs, self.run_id, datasets=[entity])
        record = DatasetRecord(name, dataset.digest, content_hash, shape, schema)
        self.datasets.append(record)
        return record

    def log_data(self, paths: Iterable[str | os.PathLike[str]]) -> list[DataSnapshot]:
        """Snapshot files/folders with DVC and record their hashes on the run."""
        import jupyter_mlops.data as data

        try:
            snaps = data.snapshot(paths, self.config.root)
        except data.PushError as exc:
            # The data is safe in the local cache: the run records it and goes on, and says
            # that other machines cannot fetch it until it is pushed.
            snaps = exc.snapshots
            self.notes.append(str(exc))
            self.set_tags({"mlops.data.unpushed": exc.remote})
            _log.warning("%s", exc)
        known = {s.path for s in self.data}
        self.data.extend(s for s in snaps if s.path not in known)
        self.set_tags({TAG_DATA: json.dumps([s.to_dict() for s in self.data])})
        loose = data.pointers.check(self.config.root, self.data) if self.git_commit else None
        if loose is not None:  # the recorded commit lacks the .dvc files: say so
            loose.apply(self)
        from jupyter_mlops.tracking.file_datasets import log_data_inputs

        log_data_inputs(self, snaps)  # "Datasets used" in the MLflow UI
        return snaps

    def log_captured(
        self, captured: Captured, *, with_models: bool = True, user: UserLogged | None = None
    ) -> None:
        """Log what was read off a cell; a model that fails to log is noted, not raised.

        ``user`` is what the cell's own MLflow code logged (``tracking/usermlflow.py``):
        its models are adopted as the run's, and nothing it logged is logged again (a
        param, metric or model object it logged; a model name it used).
        """
        self.skipped.update(captured.skipped)
        params, metrics = dict(captured.params), dict(captured.metrics)
        if user is not None:
            from jupyter_mlops.tracking.usermlflow import adopt

            adopt(self, user, params, metrics)
        self.log_params(params)
        self.log_metrics(metrics)
        self.log_step_metrics(captured.histories)
        if not with_models:
            return
        several = len(captured.models) > 1
        taken = user.model_names() if user is not None else set()
        for name, model in captured.models.items():
            if user is not None and user.logged_object(model):
                continue  # the cell logged this very object itself
            if name in taken:
                self.notes.append(f"model {name!r}: not captured, the cell logged its own {name!r}")
                continue
            X, y = captured.training_data.get(name, (None, None))
            # Histories named like the params: prefixed by the model when there are several.
            histories = {
                f"{name}.{k}" if several else k: v
                for k, v in captured.step_metrics.get(name, {}).items()
            }
            # A model that cannot be serialised must not cost the run its params and
            # metrics: the record keeps the reason and the card shows it.
            with contextlib.suppress(TrackingError):
                self.log_model(model, name=name, X=X, y=y, step_metrics=histories)

    def log_source(self, code: str, *, filename: str = "cell.py") -> str:
        """Store the code that ran and tag its hash; returns the sha256."""
        digest = hashlib.sha256(code.encode()).hexdigest()
        self.log_text(code, f"mlops/{filename}")
        self.set_tags({TAG_SOURCE_HASH: digest})
        return digest

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    def card(self) -> RunCard:
        """The summary shown under a tracked cell."""
        from jupyter_mlops.tracking.card import RunCard

        return RunCard(self)


def fluent_run_stack() -> list[Any]:
    """MLflow's stack of active runs (fluent API) in this thread, to push or pop a run
    without a round trip to the store."""
    from mlflow.tracking.fluent import _active_run_stack

    stack: list[Any] = _active_run_stack.get()  # type: ignore[no-untyped-call]
    return stack


@contextlib.contextmanager
def _as_active_run(run_id: str) -> Iterator[None]:
    """Make ``run_id`` MLflow's active run for a fluent call, if it is not already."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    stack = fluent_run_stack()
    stack.append(mlflow.get_run(run_id))
    try:
        yield
    finally:
        stack.pop()
