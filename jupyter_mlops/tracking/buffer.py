"""Runs that could not reach their tracking store, kept on disk until it is back.

When the tracking server (or its database) goes away while a cell runs, the cell's work
is not lost: ``TrackedRun`` stops writing to the store and keeps everything - params,
metrics, tags, texts, files and the model objects themselves - and ``save`` writes it to
``.mlops/pending/<id>/``. ``retry`` (``%mlops retry``, ``jupyter-mlops retry``) logs each
buffered run as a new MLflow run once the store answers, and marks the half-written run
left on the store (if any) FAILED with a pointer to its replacement, so no partial run
looks finished.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_mlops._util.damage import Damaged
from jupyter_mlops._util.urls import redact, redact_text
from jupyter_mlops.client import client, quiet_mlflow
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError, TrackingError
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.run import PENDING_PREFIX, TAG_DATA, TrackedRun

PENDING_DIR = "pending"
TAG_SUPERSEDED_BY = "mlops.superseded_by"
TAG_REPLAYED_FROM = "mlops.replayed_from"


@dataclass
class Pending:
    """One buffered run, as listed (without loading its models)."""

    id: str
    folder: Path
    experiment: str
    run_name: str
    status: str
    tracking_uri: str
    reason: str
    created: float
    orphan_run_id: str | None
    metrics: dict[str, float]

    def __str__(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        orphan = f", half-written run {self.orphan_run_id}" if self.orphan_run_id else ""
        return f"{self.id} ({self.run_name} in {self.experiment}, {self.status}, {when}{orphan})"


@dataclass
class Replayed:
    """A buffered run now in the store."""

    pending_id: str
    run_id: str
    orphan_run_id: str | None


def pending_dir(config: Config) -> Path:
    return config.mlops_dir / PENDING_DIR


def save(run: TrackedRun, status: str) -> Path:
    """Write ``run``'s whole record to the buffer; the run's status becomes BUFFERED.

    Models are pickled with cloudpickle (what MLflow's scikit-learn flavour uses), together
    with the data they were fitted on, so the retried run gets the same model, signature
    and dataset fingerprint.
    """
    import cloudpickle

    run.config.ensure_dirs()
    if run.run_id.startswith(PENDING_PREFIX):
        pending_id = run.run_id.removeprefix(PENDING_PREFIX)
    else:
        pending_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{run.run_id[:8]}"
    folder = pending_dir(run.config) / pending_id
    tmp = folder.with_name(f".{pending_id}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "files").mkdir(parents=True)
    files = []
    for i, (path, artifact_path) in enumerate(run.files):
        with contextlib.suppress(OSError):  # a notebook deleted meanwhile is not fatal
            copy = tmp / "files" / f"{i}-{Path(path).name}"
            shutil.copyfile(path, copy)
            files.append((copy.name, artifact_path))
    record = {
        "experiment": run.experiment_name,
        "run_name": run.run_name,
        "status": status,
        "tracking_uri": redact(run.config.tracking_uri),  # no password on disk
        "reason": redact_text(run.offline or ""),
        "created": time.time(),
        "started": run.started,
        "ended": run.ended or time.time(),
        "orphan_run_id": run.orphan_run_id,
        "params": run.params,
        "metrics": run.metrics,
        "tags": run.tags,
        "texts": run.texts,
        "files": files,
        "models": sorted(run.model_inputs),
        "notes": [redact_text(note) for note in run.notes],
    }
    with (tmp / "models.pkl").open("wb") as fh:
        cloudpickle.dump(run.model_inputs, fh)
    (tmp / "run.json").write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(folder)
    run.pending_id = pending_id
    run.status = "BUFFERED"
    run.notes.append(
        f"tracking store {redact(run.config.tracking_uri)} unreachable "
        f"({redact_text(run.offline or '')}): "
        f"the cell ran and its run ({status}) is buffered in {folder}; `%mlops retry` logs "
        "it when the store is back"
    )
    return folder


def _read(folder: Path) -> Pending:
    """The buffered run in ``folder``; ``ValueError`` saying what is wrong if its
    ``run.json`` cannot be read (truncated, not JSON, a field missing or mistyped)."""
    try:
        data = json.loads((folder / "run.json").read_text())
    except OSError as exc:
        raise ValueError(f"run.json cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"run.json is not valid JSON ({exc})") from None
    try:
        return _pending(folder, data)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"run.json lacks or mistypes a field ({type(exc).__name__}: {exc})"
        ) from None


def damaged_pending(folder: Path, problem: str) -> Damaged:
    """How a buffered run that cannot be read is listed (its run is not in MLflow)."""
    return Damaged(
        "buffered run",
        folder,
        problem,
        f"its run is not logged: restore {folder / 'run.json'} from a backup and run "
        f"`jupyter-mlops retry`, or delete {folder} and run the cell again",
    )


def _pending(folder: Path, data: dict[str, Any]) -> Pending:
    return Pending(
        id=folder.name,
        folder=folder,
        experiment=data["experiment"],
        run_name=data["run_name"],
        status=data["status"],
        tracking_uri=redact(data["tracking_uri"]),  # files written before it was redacted
        reason=redact_text(data.get("reason", "")),
        created=float(data["created"]),
        orphan_run_id=data.get("orphan_run_id"),
        metrics=data.get("metrics", {}),
    )


def pending(config: Config | None = None, damaged: list[Damaged] | None = None) -> list[Pending]:
    """Buffered runs of this project, oldest first; one that cannot be read is left out
    and described in ``damaged``."""
    config = config or load_config()
    folder = pending_dir(config)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            found.append(_read(path))
        except ValueError as exc:
            if damaged is not None:
                damaged.append(damaged_pending(path, str(exc)))
    return sorted(found, key=lambda p: p.created)


def _replay(item: Pending, config: Config) -> Replayed:
    import cloudpickle

    data = json.loads((item.folder / "run.json").read_text())
    with (item.folder / "models.pkl").open("rb") as fh:
        model_inputs = cloudpickle.load(fh)
    mlflow_client = client(config)
    experiment_id = store.ensure_experiment(data["experiment"], config)
    tags = {**data["tags"], TAG_REPLAYED_FROM: item.id}
    if data.get("orphan_run_id"):
        tags[TAG_REPLAYED_FROM] += f" (half-written run {data['orphan_run_id']})"
    created = store.call(
        mlflow_client.create_run,
        experiment_id,
        start_time=int(data["started"] * 1000),
        tags=tags,
        run_name=data["run_name"] if not data["run_name"].startswith(PENDING_PREFIX) else None,
    )
    run = TrackedRun(
        run_id=created.info.run_id,
        experiment_id=experiment_id,
        experiment_name=data["experiment"],
        run_name=created.info.run_name or "",
        config=config,
    )
    try:
        run.log_params(data["params"])
        run.log_metrics(data["metrics"])
        _log_data_inputs(run, data["tags"])
        for artifact_file, text in data["texts"].items():
            run.log_text(text, artifact_file)
        for name, artifact_path in data["files"]:
            run.log_file(item.folder / "files" / name, artifact_path)
        for name, (model, X, y) in model_inputs.items():
            with contextlib.suppress(TrackingError):  # noted on the run, as in %%track
                run.log_model(model, name=name, X=X, y=y)
        if run.offline is not None:
            raise ConnectionError(f"The store went away again during the retry: {run.offline}")
        store.call(
            mlflow_client.set_terminated, run.run_id, data["status"], int(data["ended"] * 1000)
        )
    except BaseException:
        # Never leave a replay looking finished when it is not; the buffer stays, and
        # remembers the attempt so the next successful retry marks it FAILED.
        data.setdefault("abandoned", []).append(run.run_id)
        (item.folder / "run.json").write_text(json.dumps(data, indent=2, default=str))
        with contextlib.suppress(Exception):
            store.call(mlflow_client.set_terminated, run.run_id, "FAILED")
        raise
    for orphan in [data.get("orphan_run_id"), *data.get("abandoned", [])]:
        if not orphan:
            continue
        with contextlib.suppress(Exception):  # deleted meanwhile: nothing to mark
            store.call(mlflow_client.set_tag, orphan, TAG_SUPERSEDED_BY, run.run_id)
            store.call(mlflow_client.set_terminated, orphan, "FAILED")
    orphan = data.get("orphan_run_id")
    return Replayed(item.id, run.run_id, orphan)


def _log_data_inputs(run: TrackedRun, tags: dict[str, str]) -> None:
    """The data files the buffered run snapshotted, as the replayed run's dataset inputs
    (as ``log_data`` records them online; the snapshots themselves were taken then)."""
    from jupyter_mlops.data import DataSnapshot
    from jupyter_mlops.tracking.file_datasets import log_data_inputs

    records = json.loads(tags.get(TAG_DATA) or "[]")
    log_data_inputs(run, [DataSnapshot.from_dict(r) for r in records])


def retry(ids: list[str] | None = None, config: Config | None = None) -> list[Replayed]:
    """Log buffered runs (all, or those ``ids``) to the store; each is removed once logged.

    Raises ``TrackingError`` naming the store if it is still unreachable; runs logged
    before that stay logged and the rest stay buffered.
    """
    config = config or load_config()
    items = pending(config)
    if ids:
        unknown = set(ids) - {p.id for p in items}
        if unknown:
            known = ", ".join(p.id for p in items) or "none"
            raise NotFoundError(f"No buffered run {sorted(unknown)} (buffered: {known})")
        items = [p for p in items if p.id in ids]
    done = []
    for item in items:
        if item.tracking_uri != redact(config.tracking_uri):
            # Buffered against another store: replay it there, not into this one.
            continue
        try:
            with quiet_mlflow():
                done.append(_replay(item, config))
        except Exception as exc:
            if store.is_unavailable(exc):
                raise TrackingError(
                    f"The tracking store {redact(config.tracking_uri)} is still unreachable "
                    f"({(redact_text(str(exc)).splitlines() or [''])[0][:200]}); "
                    f"{len(items) - len(done)} run(s) "
                    "stay buffered. Try again when it is back."
                ) from None
            raise
        shutil.rmtree(item.folder, ignore_errors=True)
    return done
