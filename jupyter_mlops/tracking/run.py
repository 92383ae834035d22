"""Recording work as MLflow runs: ``track()`` and the run object it yields.

``track()`` mirrors ``mlflow.start_run()``: a context manager that ends the run FINISHED
or FAILED. While it is open the run is MLflow's active run, so the user's own
``mlflow.log_*`` calls land in it too. ``%%track``, papermill steps and scripts all go
through here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import TrackingError
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.environment import (
    capture_environment,
    git_state,
    model_requirements,
    notebook_path,
)

if TYPE_CHECKING:
    from jupyter_mlops.data import DataSnapshot
    from jupyter_mlops.tracking.capture import Captured

TAG_DATA = "mlops.data"
TAG_SOURCE_HASH = "mlops.source.sha256"
TAG_NOTEBOOK = "mlops.notebook"
TAG_MODELS = "mlops.models"
PENDING_PREFIX = "pending-"
_OFFLINE: Any = object()
INPUT_EXAMPLE_ROWS = 5
_log = logging.getLogger(__name__)


@dataclass
class ModelRecord:
    """A model logged with a run (or the reason it could not be)."""

    name: str
    flavor: str = "sklearn"
    model_uri: str | None = None
    model_id: str | None = None
    signature: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class DatasetRecord:
    """A fingerprint of an in-memory object a model was fitted on."""

    name: str
    digest: str
    content_hash: str
    shape: tuple[int, ...]
    schema: dict[str, str]


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
    models: dict[str, ModelRecord] = field(default_factory=dict)
    data: list[DataSnapshot] = field(default_factory=list)
    datasets: list[DatasetRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was skipped and why
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
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.offline = reason[:300]
        store.mark_unavailable(self.config.tracking_uri)
        if not self.run_id.startswith(PENDING_PREFIX):
            self.orphan_run_id = self.run_id
        _log.warning("tracking store %s unreachable: %s", self.config.tracking_uri, reason)

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
            self._remote(store.client(self.config).log_batch, self.run_id, params=batch)
            self.params.update(fresh)
            return
        except MlflowException as exc:
            if "INVALID_PARAMETER_VALUE" not in str(exc.error_code):
                raise
        # The user's own mlflow.log_param got there first with another value: keep theirs.
        remote = self._remote(store.client(self.config).get_run, self.run_id)
        existing = {} if remote is _OFFLINE else remote.data.params
        for key in [k for k in fresh if k in existing]:
            if existing[key] != fresh[key]:
                self.notes.append(f"param {key!r} already logged as {existing[key]!r}")
            self.params[key] = existing[key]
            del fresh[key]
        batch = [Param(k, v) for k, v in fresh.items()]
        self.params.update(fresh)
        self._remote(store.client(self.config).log_batch, self.run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record metric values (at ``step`` for learning curves)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if batch:
            self.metrics.update({k: float(v) for k, v in metrics.items()})
            self._remote(store.client(self.config).log_batch, self.run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (strings in MLflow)."""
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        if batch:
            self.tags.update({k: str(v) for k, v in tags.items()})
            self._remote(store.client(self.config).log_batch, self.run_id, tags=batch)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as an artifact of the run."""
        self.texts[artifact_file] = text
        self._remote(store.client(self.config).log_text, self.run_id, text, artifact_file)

    def log_file(self, path: str | os.PathLike[str], artifact_path: str) -> None:
        """Store a copy of the file ``path`` under ``artifact_path`` of the run."""
        self.files.append((os.fspath(path), artifact_path))
        self._remote(
            store.client(self.config).log_artifact, self.run_id, os.fspath(path), artifact_path
        )

    def log_model(
        self,
        model: Any,
        name: str = "model",
        *,
        X: Any = None,
        y: Any = None,
        input_example: Any = None,
    ) -> ModelRecord:
        """Log a scikit-learn compatible model in MLflow's format.

        The signature and input example come from ``X`` (the data it was fitted on); the
        pip requirements come from the running environment instead of MLflow's
        subprocess-based inference, which costs seconds per model.
        Raises ``TrackingError`` if the model cannot be serialised.
        """
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature

        record = ModelRecord(name=name)
        self.model_inputs[name] = (model, X, y)
        example = input_example if input_example is not None else _head(X, INPUT_EXAMPLE_ROWS)
        signature = None
        if example is not None and hasattr(model, "predict"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    signature = infer_signature(example, model.predict(example))
            except Exception as exc:  # a model that cannot predict on its own input
                self.notes.append(f"model {name!r}: no signature ({exc})")
        elif example is None:
            self.notes.append(f"model {name!r}: training data unknown, no signature")
        if self.offline is not None:
            return self._buffered_model(record, signature, X, y)
        try:
            with store.quiet_mlflow(), _as_active_run(self.run_id):
                info = mlflow.sklearn.log_model(
                    model,
                    name=name,
                    signature=signature,
                    input_example=example if signature is not None else None,
                    pip_requirements=model_requirements(model),
                    # skops (MLflow 3's default) refuses common estimators such as
                    # RandomForest without a list of trusted types.
                    serialization_format="cloudpickle",
                )
        except Exception as exc:
            if store.is_unavailable(exc):
                self.go_offline(exc)
                return self._buffered_model(record, signature, X, y)
            record.error = f"{type(exc).__name__}: {exc}"
            self.models[name] = record
            raise TrackingError(f"Model {name!r} could not be logged: {record.error}") from exc
        record.model_uri = info.model_uri
        record.model_id = getattr(info, "model_id", None)
        record.signature = _signature_text(signature)
        self.models[name] = record
        self.set_tags({TAG_MODELS: json.dumps({k: v.model_uri for k, v in self.models.items()})})
        if X is not None:
            self.log_dataset(X, name=f"{name}-training", targets=y)
        return record

    def _buffered_model(self, record: ModelRecord, signature: Any, X: Any, y: Any) -> ModelRecord:
        record.signature = _signature_text(signature)
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
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag

        try:
            with warnings.catch_warnings(), store.quiet_mlflow():
                warnings.simplefilter("ignore")
                frame = _as_frame(obj)
                target_name = getattr(targets, "name", None)
                if target_name is not None and target_name not in frame.columns:
                    frame = frame.assign(**{str(target_name): _values(targets)})
                dataset = mlflow.data.from_pandas(
                    frame, name=name, targets=str(target_name) if target_name else None
                )
        except Exception as exc:
            self.notes.append(f"dataset {name!r} not recorded: {exc}")
            return None
        tags = [
            InputTag("mlflow.data.context", "training"),
            InputTag("mlops.content_hash", content_hash),
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's integer-column schema hint
            entity = DatasetInput(dataset._to_mlflow_entity(), tags)
        self._remote(store.client(self.config).log_inputs, self.run_id, datasets=[entity])
        record = DatasetRecord(name, dataset.digest, content_hash, shape, schema)
        self.datasets.append(record)
        return record

    def log_data(self, paths: Iterable[str | os.PathLike[str]]) -> list[DataSnapshot]:
        """Snapshot files/folders with DVC and record their hashes on the run."""
        from jupyter_mlops import data

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
        return snaps

    def log_captured(self, captured: Captured, *, with_models: bool = True) -> None:
        """Log what was read off a cell; a model that fails to log is noted, not raised."""
        self.notes.extend(f"{k}: {why}" for k, why in captured.skipped.items())
        self.log_params(captured.params)
        self.log_metrics(captured.metrics)
        if not with_models:
            return
        for name, model in captured.models.items():
            X, y = captured.training_data.get(name, (None, None))
            # A model that cannot be serialised must not cost the run its params and
            # metrics: the record keeps the reason and the card shows it.
            with contextlib.suppress(TrackingError):
                self.log_model(model, name=name, X=X, y=y)

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


if TYPE_CHECKING:
    from jupyter_mlops.tracking.card import RunCard


@contextlib.contextmanager
def _as_active_run(run_id: str) -> Iterator[None]:
    """Make ``run_id`` MLflow's active run for a fluent call, if it is not already."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    from mlflow.tracking.fluent import _active_run_stack

    stack = _active_run_stack.get()
    stack.append(mlflow.get_run(run_id))
    try:
        yield
    finally:
        stack.pop()


def _head(X: Any, n: int) -> Any:
    if X is None:
        return None
    if hasattr(X, "iloc"):
        return X.iloc[:n]
    try:
        return X[:n]
    except Exception:
        return None


def _values(obj: Any) -> Any:
    return obj.to_numpy() if hasattr(obj, "to_numpy") else obj


def _as_frame(obj: Any) -> Any:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return obj
    if isinstance(obj, pd.Series):
        return obj.to_frame()
    import numpy as np

    arr = np.asarray(obj)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


def fingerprint_data(obj: Any) -> tuple[str, tuple[int, ...], dict[str, str]] | None:
    """(sha256 of the full content, shape, column -> dtype) of a DataFrame/Series/array."""
    if "pandas" in sys.modules:
        import pandas as pd

        if isinstance(obj, pd.DataFrame | pd.Series):
            hashed = pd.util.hash_pandas_object(obj, index=True).to_numpy()
            digest = hashlib.sha256(hashed.tobytes())
            if isinstance(obj, pd.DataFrame):
                schema = {str(c): str(t) for c, t in obj.dtypes.items()}
                digest.update(json.dumps(schema).encode())
            else:
                schema = {str(obj.name): str(obj.dtype)}
            return digest.hexdigest(), tuple(obj.shape), schema
    if "numpy" in sys.modules:
        import numpy as np

        if isinstance(obj, np.ndarray) and obj.dtype != object:
            data = np.ascontiguousarray(obj)
            digest = hashlib.sha256(data.tobytes())
            digest.update(f"{data.dtype}{data.shape}".encode())
            return digest.hexdigest(), tuple(obj.shape), {"array": str(obj.dtype)}
    return None


def _signature_text(signature: Any) -> str | None:
    if signature is None:
        return None
    try:
        return f"{signature.inputs.to_dict()} -> {signature.outputs.to_dict()}"
    except Exception:
        return str(signature)


def resolve_experiment(
    explicit: str | None, config: Config, notebook: str | None, *, offline: bool = False
) -> str:
    """The experiment a run goes to when none is named.

    Named > ``[tool.jupyter-mlops] experiment`` > the experiment of this notebook's latest
    run (not asked when ``offline``) > the notebook's file name > MLflow's ``Default``.
    """
    if explicit:
        return explicit
    if config.experiment:
        return str(config.experiment)
    if notebook:
        latest = [] if offline else latest_runs(config=config, notebook=notebook, limit=1)
        if latest:
            return latest[0]["experiment"]
        return Path(notebook).stem
    return "Default"


def latest_runs(
    *, config: Config | None = None, notebook: str | None = None, limit: int = 10
) -> list[dict[str, Any]]:
    """The newest runs (of one notebook, if given), as plain dicts for display."""
    config = config or load_config()
    mlflow_client = store.client(config)
    exps = store.call(mlflow_client.search_experiments)
    if not exps:
        return []
    names = {e.experiment_id: e.name for e in exps}
    flt = f"tags.`{TAG_NOTEBOOK}` = '{notebook}'" if notebook else ""
    runs = store.call(
        mlflow_client.search_runs,
        list(names),
        filter_string=flt,
        max_results=limit,
        order_by=["attributes.start_time DESC"],
    )
    return [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "experiment": names.get(r.info.experiment_id, r.info.experiment_id),
            "status": r.info.status,
            "start_time": r.info.start_time,
            "metrics": dict(r.data.metrics),
            "params": dict(r.data.params),
            "notebook": r.data.tags.get(TAG_NOTEBOOK),
        }
        for r in runs
    ]


def _run_tags(
    config: Config,
    notebook: str | None,
    namespace: Mapping[str, Any],
    tags: Mapping[str, Any] | None,
) -> tuple[dict[str, str], Any, Any]:
    """The tags a run starts with, the environment and the git state they came from."""
    from jupyter_mlops._version import __version__

    git = git_state(config.root)
    env = capture_environment(namespace)
    run_tags: dict[str, str] = {
        "mlflow.source.name": notebook or Path(sys.argv[0]).name,
        "mlflow.source.type": "NOTEBOOK" if notebook else "LOCAL",
        "mlops.version": __version__,
        "mlops.python": env.python,
        "mlops.project_root": str(config.root),
    }
    if notebook:
        run_tags[TAG_NOTEBOOK] = notebook
    if git is not None:
        run_tags["mlflow.source.git.commit"] = git.commit
        run_tags["mlops.git.dirty"] = str(git.dirty).lower()
        if git.branch:
            run_tags["mlflow.source.git.branch"] = git.branch
    run_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
    return run_tags, env, git


@contextlib.contextmanager
def track(
    experiment: str | None = None,
    *,
    name: str | None = None,
    data: Iterable[str | os.PathLike[str]] = (),
    tags: Mapping[str, Any] | None = None,
    notebook: str | None = None,
    namespace: Mapping[str, Any] | None = None,
    config: Config | None = None,
) -> Iterator[TrackedRun]:
    """Record the enclosed work as an MLflow run and end it FINISHED or FAILED.

    ``data`` paths are checked before anything is written and snapshotted with DVC, so
    the run records exactly what the work read. If the body raises, the run is marked
    FAILED with the traceback as an artifact, what was logged is kept, and the exception
    propagates. ``namespace`` (e.g. a notebook's globals) is used to find the notebook
    and the package versions in use.
    """
    import mlflow

    config = config or load_config()
    data = list(data)
    data_paths = []
    if data:
        from jupyter_mlops import data as data_mod

        data_paths = data_mod.resolve_paths(data, config.root)  # fail before any write
    namespace = namespace if namespace is not None else {}
    notebook = notebook or notebook_path(namespace, config.root)
    store.client(config)  # also points MLflow's fluent API at the project's store
    run_tags, env, git = _run_tags(config, notebook, namespace, tags)
    active = mlflow.active_run()
    try:
        down = store.still_unavailable(config.tracking_uri)
        if down is not None:
            raise ConnectionError(down)
        experiment_name = resolve_experiment(experiment, config, notebook)

        def start(cached: bool) -> Any:
            experiment_id = store.ensure_experiment(experiment_name, config, cached=cached)
            with store.quiet_mlflow():
                return store.retry_busy(
                    lambda: mlflow.start_run(
                        experiment_id=experiment_id,
                        run_name=name,
                        tags=run_tags,
                        nested=active is not None,
                    ),
                    what="start run",
                ).info

        try:
            info = start(cached=True)
        except Exception as exc:
            if store.is_unavailable(exc):
                raise
            # The remembered experiment was deleted or renamed meanwhile: look it up again
            # (which explains a deleted experiment) and retry once.
            store.forget_experiment(experiment_name, config)
            info = start(cached=False)
        experiment_id = info.experiment_id
        run_id, run_name = info.run_id, info.run_name or ""
        unreachable: BaseException | None = None
    except Exception as exc:
        if not store.is_unavailable(exc):
            raise
        # The store is gone: the work still runs, and its record waits in the buffer.
        import secrets

        unreachable = exc
        experiment_name = resolve_experiment(experiment, config, notebook, offline=True)
        experiment_id = ""
        run_id = f"{PENDING_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        run_name = name or run_id
    run = TrackedRun(
        run_id=run_id,
        experiment_id=experiment_id,
        experiment_name=experiment_name,
        run_name=run_name,
        config=config,
        notebook=notebook,
        git_commit=git.commit if git else None,
        git_dirty=git.dirty if git else None,
        tags=dict(run_tags),
    )
    if unreachable is not None:
        run.go_offline(unreachable)
    failure: BaseException | None = None
    try:
        run.log_text(json.dumps(env.to_dict(), indent=2), "mlops/environment.json")
        if notebook and (config.root / notebook).is_file():
            nb_file = config.root / notebook
            if nb_file.stat().st_size < 50 * 2**20:
                run.log_file(nb_file, "mlops/notebook")
        if data_paths:
            run.log_data(data_paths)
        yield run
    except BaseException as exc:
        failure = exc
        run.error = "".join(traceback.format_exception(exc))
        with contextlib.suppress(Exception):
            run.log_text(run.error, "mlops/traceback.txt")
        raise
    finally:
        status = "FAILED" if failure is not None else "FINISHED"
        if isinstance(failure, KeyboardInterrupt):
            status = "KILLED"
        _end_run(run, status)


def _end_run(run: TrackedRun, status: str) -> None:
    import mlflow

    run.status, run.ended = status, time.time()
    active = mlflow.active_run()
    if run.offline is None:
        try:
            if active is not None and active.info.run_id == run.run_id:
                with store.quiet_mlflow():
                    store.retry_busy(lambda: mlflow.end_run(status), what="end run")
            else:
                store.call(store.client(run.config).set_terminated, run.run_id, status)
            return
        except Exception as exc:
            if not store.is_unavailable(exc):
                raise
            run.go_offline(exc)
    # The store is unreachable: leave MLflow's fluent stack without asking the server (the
    # run there stays RUNNING, never FINISHED), and keep the whole record for a retry.
    from mlflow.tracking.fluent import _active_run_stack

    stack = _active_run_stack.get()
    if stack and stack[-1].info.run_id == run.run_id:
        stack.pop()
    from jupyter_mlops.tracking import buffer

    buffer.save(run, status)
