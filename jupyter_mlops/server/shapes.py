"""The JSON shapes of the sidebar's answers (one run in the runs list, one run in full, one
pipeline run), JSON-safe values (JSON has no NaN, numpy scalars are not JSON), and the
text fields of request bodies.

Shapes only: the values come from the core (``tracking.runs``, ``pipelines``), and the
views decide what to fetch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from jupyter_mlops.errors import RequestError
from jupyter_mlops.reproduction.result import TAG_AT, TAG_BY, TAG_REPRODUCES, TAG_VERDICT
from jupyter_mlops.tracking.run import TAG_DATA, TAG_MODELS, TAG_NOTEBOOK, TAG_SOURCE_HASH
from jupyter_mlops.tracking.runs.catalog import RunDetails, epoch_ms

KEY_METRICS = 4
_HIDDEN_TAG_PREFIXES = ("mlflow.", "mlops.")


def jsonable(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, Mapping):
        return json_object(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return jsonable(value.item())
    return value


def json_object(value: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` with JSON-safe values (see ``jsonable``)."""
    return {str(k): jsonable(v) for k, v in value.items()}


def loads_or(raw: Any, default: str) -> Any:
    """The JSON text ``raw`` decoded; ``default`` decoded when it is empty or not JSON."""
    try:
        return json.loads(raw or default)
    except ValueError:
        return json.loads(default)


def text_field(data: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    """The text ``data[key]`` of a request body (a number is taken as its text)."""
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise RequestError(f"Missing {key!r} in the request body")
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise RequestError(f"{key!r} must be a string")
    return str(value).strip()


def run_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One run of a page, as the runs list shows it."""
    metrics = {
        k.removeprefix("metrics."): v
        for k, v in sorted(record.items())
        if k.startswith("metrics.") and v is not None and v == v
    }
    models_raw = record.get(f"tags.{TAG_MODELS}")
    models = sorted(loads_or(models_raw, "[]")) if isinstance(models_raw, str) else []
    duration = record.get("duration")
    return json_object(
        {
            "run_id": record["run_id"],
            "run_name": record.get("run_name") or "",
            "experiment": record.get("experiment"),
            "experiment_id": record.get("experiment_id"),
            "status": record.get("status"),
            "start_time": epoch_ms(record.get("start_time")),
            "duration": duration if duration == duration else None,
            "metrics": dict(list(metrics.items())[:KEY_METRICS]),
            "metric_count": len(metrics),
            "data": record.get("data"),
            "notebook": record.get(f"tags.{TAG_NOTEBOOK}"),
            "models": models,
            "reproduced": record.get(f"tags.{TAG_VERDICT}") or None,
        }
    )


def reproduction_json(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The verdict ``%reproduce`` recorded on a run: verdict, the reproducing run, when
    (ISO 8601, UTC); None when the run was never reproduced."""
    verdict = tags.get(TAG_VERDICT)
    if not verdict:
        return None
    return {"verdict": verdict, "run_id": tags.get(TAG_BY) or None, "at": tags.get(TAG_AT) or None}


def run_json(
    details: RunDetails, notebook_path: Callable[[str | None], str | None]
) -> dict[str, Any]:
    """Everything the detail view shows about one run; ``notebook_path`` turns the run's
    notebook into the path to open in JupyterLab (None if not served)."""
    info, data = details.run.info, details.run.data
    tags = dict(data.tags)
    datasets = [
        {
            "name": d.dataset.name,
            "digest": d.dataset.digest,
            "content_hash": {t.key: t.value for t in d.tags}.get("mlops.content_hash"),
        }
        for d in (details.run.inputs.dataset_inputs if details.run.inputs else [])
    ]
    notebook = tags.get(TAG_NOTEBOOK)
    models = loads_or(tags.get(TAG_MODELS), "{}")
    return json_object(
        {
            "run_id": info.run_id,
            "run_name": info.run_name or tags.get("mlflow.runName") or "",
            "experiment_id": info.experiment_id,
            "experiment": details.experiment,
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "user": info.user_id,
            "params": dict(sorted(data.params.items())),
            "metrics": dict(sorted(data.metrics.items())),
            "tags": {
                k: v for k, v in sorted(tags.items()) if not k.startswith(_HIDDEN_TAG_PREFIXES)
            },
            "models": [{"name": k, "uri": v} for k, v in sorted(models.items())],
            "registered_versions": [
                {"name": name, "version": version} for name, version in details.registered_versions
            ],
            "data": loads_or(tags.get(TAG_DATA), "[]"),
            "datasets": datasets,
            "source": details.source,
            "source_sha256": tags.get(TAG_SOURCE_HASH),
            "notebook": notebook,
            "notebook_path": notebook_path(notebook),
            "git_commit": tags.get("mlflow.source.git.commit"),
            "git_dirty": tags.get("mlops.git.dirty"),
            "reproduction": reproduction_json(tags),
            "reproduces": tags.get(TAG_REPRODUCES) or None,
        }
    )


def pipeline_json(
    run: Any, link: Callable[[str | None], tuple[str | None, bool]]
) -> dict[str, Any]:
    """One pipeline run with per-step status; ``link`` gives a notebook's path to open
    in JupyterLab and whether Jupyter hides it."""
    steps = []
    for step in run.steps.values():
        executed = link(step.executed_notebook)
        steps.append(
            {
                "name": step.name,
                "status": step.status,
                "started": _seconds_to_ms(step.started),
                "ended": _seconds_to_ms(step.ended),
                "seconds": step.seconds,
                "error": step.error,
                "mlflow_run_id": step.mlflow_run_id,
                "metrics": dict(step.metrics),
                "notebook": step.notebook,
                "notebook_path": link(step.notebook)[0],
                "executed": step.executed_notebook,
                "executed_path": executed[0],
                "executed_hidden": executed[1],
            }
        )
    return json_object(
        {
            "run_id": run.run_id,
            "pipeline": run.pipeline,
            "status": run.status,
            "started": _seconds_to_ms(run.started),
            "ended": _seconds_to_ms(run.ended),
            "params": dict(run.params),
            "mlflow_run_id": run.mlflow_run_id,
            "sweep": run.sweep,
            "steps": steps,
        }
    )


def _seconds_to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else float(seconds) * 1000
