"""What a run recorded that its reproduction needs, read once from the tracking store.

A reference is resolved here too: a run id, an unambiguous prefix of one, a run name, or a
registered model version (``name@alias``, ``name/3``) standing for the run that logged it.
Runs recorded before reproduction existed lack some records (the ``%%track`` line, the
context cells, the risks); each is then None or empty and the caller falls back.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.client import client as project_client
from jupyter_mlops.config import Config
from jupyter_mlops.errors import NotFoundError, TrackingError
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.run import TAG_DATA, TAG_MODELS, TAG_NOTEBOOK

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from jupyter_mlops.data import DataSnapshot

TAG_ARGS = "mlops.track.args"
TAG_RISKS = "mlops.risks"
TAG_COMMIT = "mlflow.source.git.commit"
TAG_DIRTY = "mlops.git.dirty"
TAG_ROOT = "mlops.project_root"
TAG_PARENT = "mlflow.parentRunId"
CELL = "mlops/cell.py"
CONTEXT = "mlops/context.py"
NOTEBOOK_DIR = "mlops/notebook"
_VERSION_REF = re.compile(r"[^/\s]+/\d+")  # name/3: a registered model's version


@dataclass
class Recorded:
    """One run as the store holds it: values, tags and the code it recorded."""

    run_id: str
    run_name: str
    experiment: str  # the experiment's name
    experiment_id: str
    status: str
    start_ms: int
    end_ms: int | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    data: list[DataSnapshot] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)  # name -> model uri
    cell: str | None = None  # mlops/cell.py: the cell body the user wrote
    context: str | None = None  # mlops/context.py: the earlier cells it depends on
    notebook_copy: str | None = None  # mlops/notebook/<nb>.ipynb as text (old runs)

    @property
    def commit(self) -> str | None:
        return self.tags.get(TAG_COMMIT) or None

    @property
    def dirty(self) -> bool:
        return self.tags.get(TAG_DIRTY) == "true"

    @property
    def notebook(self) -> str | None:
        """The notebook's path relative to the project root, when it was known."""
        return self.tags.get(TAG_NOTEBOOK) or None

    @property
    def track_args(self) -> str | None:
        """The ``%%track`` line's arguments as typed (None: recorded before they were)."""
        return self.tags.get(TAG_ARGS)

    @property
    def project_root(self) -> str | None:
        return self.tags.get(TAG_ROOT) or None

    @property
    def risks(self) -> list[dict[str, str]]:
        """``mlops.risks``: what the record-time check found (unseeded, unsnapshotted)."""
        try:
            items = json.loads(self.tags.get(TAG_RISKS) or "[]")
        except ValueError:
            return []
        return [
            {k: str(item.get(k, "")) for k in ("kind", "subject", "message")}
            for item in items
            if isinstance(item, dict) and item.get("kind")
        ]

    @property
    def seconds(self) -> float | None:
        """How long the run was open (the cell's own time)."""
        return None if self.end_ms is None else (self.end_ms - self.start_ms) / 1000


def resolve_ref(ref: str, config: Config) -> str:
    """The run id ``ref`` names: a run id, a prefix of one, a run name, or a registered
    model version (``name@alias``, ``name/3``, ``models:/...``) standing for its run."""
    ref = ref.strip()
    if not ref:
        raise NotFoundError(
            "No run given: pass a run id, a prefix of one, a run name or name@alias"
        )
    if ref.startswith("models:/") or "@" in ref or _VERSION_REF.fullmatch(ref):
        return _model_run(ref, config)
    from jupyter_mlops.tracking.runs.refs import is_id_prefix, resolve_run_ref

    client = project_client(config)
    if len(ref) == 32 and is_id_prefix(ref):
        run = _get_run(client, ref.lower())
        if run is not None:
            return str(run.info.run_id)
    exps = [e.experiment_id for e in store.call(client.search_experiments)]
    runs = store.call(client.search_runs, exps, max_results=50000) if exps else []
    index = resolve_run_ref(
        ref,
        [r.info.run_id for r in runs],
        [r.info.run_name for r in runs],
        hint=" to reproduce (give a run id, a prefix of one, a run name, or name@alias)",
    )
    return str(runs[index].info.run_id)


def _model_run(ref: str, config: Config) -> str:
    from jupyter_mlops.registry.lookup import get_version
    from jupyter_mlops.registry.refs import ModelRef

    model = ModelRef.parse(ref)
    version = get_version(model, config)
    if not version.run_id:
        raise NotFoundError(
            f"Model version {model.name} v{version.version} was not logged by a run "
            "(registered from a file), so there is no run to reproduce"
        )
    return str(version.run_id)


def _get_run(client: MlflowClient, run_id: str) -> Run | None:
    from mlflow.exceptions import MlflowException

    try:
        return store.call(client.get_run, run_id)
    except MlflowException:
        return None


def read_run(run_id: str, config: Config, *, code: bool = True) -> Recorded:
    """The run ``run_id`` with what it recorded; ``code`` also reads its cell and context
    (and the notebook copy when there is no context: old runs)."""
    from jupyter_mlops.data import DataSnapshot

    client = project_client(config)
    run = _get_run(client, run_id)
    if run is None:
        raise NotFoundError(f"No run {run_id!r} in the tracking store")
    experiment = store.call(client.get_experiment, run.info.experiment_id)
    tags = dict(run.data.tags)
    try:
        data = [DataSnapshot.from_dict(d) for d in json.loads(tags.get(TAG_DATA) or "[]")]
        models = {str(k): str(v) for k, v in json.loads(tags.get(TAG_MODELS) or "{}").items()}
    except (ValueError, AttributeError) as exc:
        raise TrackingError(f"Run {run_id} has a damaged data or model record: {exc}") from exc
    recorded = Recorded(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        experiment=experiment.name,
        experiment_id=run.info.experiment_id,
        status=run.info.status,
        start_ms=int(run.info.start_time or 0),
        end_ms=int(run.info.end_time) if run.info.end_time else None,
        params=dict(run.data.params),
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        tags=tags,
        data=data,
        models={k: v for k, v in models.items() if v.startswith(("models:/", "runs:/"))},
    )
    if code:
        _read_code(client, recorded)
    return recorded


def _read_code(client: MlflowClient, recorded: Recorded) -> None:
    """Fill in the cell, the context and (without a context) the notebook copy."""
    listed = {a.path for a in store.call(client.list_artifacts, recorded.run_id, "mlops")}
    recorded.cell = _text(client, recorded.run_id, CELL) if CELL in listed else None
    if CONTEXT in listed:
        recorded.context = _text(client, recorded.run_id, CONTEXT)
    elif NOTEBOOK_DIR in listed:
        copies = store.call(client.list_artifacts, recorded.run_id, NOTEBOOK_DIR)
        names = [a.path for a in copies if a.path.endswith(".ipynb")]
        wanted = Path(recorded.notebook or "").name
        chosen = next((p for p in names if Path(p).name == wanted), names[0] if names else None)
        if chosen is not None:
            recorded.notebook_copy = _text(client, recorded.run_id, chosen)


def _text(client: MlflowClient, run_id: str, path: str) -> str | None:
    """A run artifact as text (None if it cannot be read)."""
    from mlflow.exceptions import MlflowException

    from jupyter_mlops.client import quiet_mlflow

    with tempfile.TemporaryDirectory(prefix="mlops-repro-") as tmp, quiet_mlflow():
        try:
            local = store.call(client.download_artifacts, run_id, path, tmp)
            return Path(local).read_text(encoding="utf-8")
        except (MlflowException, OSError, UnicodeDecodeError):
            return None


def find_reproduction(
    original: Recorded, project: Path, config: Config, since_ms: int
) -> str | None:
    """The run the re-execution recorded: the newest top-level run of the original's
    experiment started from the scratch copy (``mlops.project_root``) since ``since_ms``."""
    client = project_client(config)
    root = os.fspath(project).replace("'", "\\'")
    runs: list[Any] = store.call(
        client.search_runs,
        [original.experiment_id],
        filter_string=f"tags.`{TAG_ROOT}` = '{root}' and attributes.start_time >= {since_ms}",
        max_results=50,
        order_by=["attributes.start_time DESC"],
    )
    top = [r for r in runs if TAG_PARENT not in r.data.tags]
    return str(top[0].info.run_id) if top else None
