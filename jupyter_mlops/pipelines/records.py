"""Pipeline runs on disk: the ``run.json`` record of each run, and the folder that holds it.

Each pipeline run keeps its executed notebooks and a ``run.json`` (status per step,
parameters, paths, MLflow run ids) under ``<project>/.mlops/pipelines/<run-id>/``. The
record is the primary account of a run: it is written before anything executes and after
every step, so a killed or failed run can still be read back.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops._util.damage import Damaged, type_problem
from jupyter_mlops._util.reprs import shown_as_text
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError, PipelineError

RUNS_DIR = "pipelines"
RECORD = "run.json"

PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, KILLED = (
    "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED", "KILLED"
)  # fmt: skip


@dataclass
class StepRun:
    """One step of one pipeline run, as recorded in ``run.json``."""

    name: str
    notebook: str
    executor: str
    needs: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    status: str = PENDING
    executed_notebook: str | None = None
    mlflow_run_id: str | None = None
    started: float | None = None
    ended: float | None = None
    seconds: float | None = None  # the notebook execution, kernel start included
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    output_files: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> md5, size


@shown_as_text
@dataclass
class PipelineRun:
    """One run of a pipeline: what ran, how it went, and where everything is."""

    run_id: str
    pipeline: str
    spec: str | None
    folder: str
    status: str = PENDING
    params: dict[str, Any] = field(default_factory=dict)  # the overrides asked for
    steps: dict[str, StepRun] = field(default_factory=dict)
    experiment: str | None = None
    mlflow_run_id: str | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    data: list[dict[str, Any]] = field(default_factory=list)  # DVC snapshots of inputs
    sweep: dict[str, Any] | None = None  # {"id": ..., "variant": i, "params": {...}}
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def metrics(self) -> dict[str, float]:
        """Every step's metrics, later steps winning on a shared name."""
        merged: dict[str, float] = {}
        for step in self.steps.values():
            merged.update(step.metrics)
        return merged

    @property
    def failed_steps(self) -> list[StepRun]:
        return [s for s in self.steps.values() if s.status == FAILED]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineRun:
        values = dict(data)
        values["steps"] = {k: StepRun(**v) for k, v in (data.get("steps") or {}).items()}
        return cls(**values)

    def save(self) -> Path:
        """Write ``run.json`` atomically (readers never see half a file)."""
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{RECORD}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str), encoding="utf-8")
        tmp.replace(folder / RECORD)
        return folder / RECORD

    def raise_for_status(self) -> None:
        """Raise :class:`PipelineError` naming the failed steps, if any."""
        if self.ok:
            return
        failed = self.failed_steps
        detail = "; ".join(f"step {s.name!r}: {s.error}" for s in failed) or self.status
        raise PipelineError(f"Pipeline {self.pipeline!r} run {self.run_id} failed: {detail}")

    def __str__(self) -> str:
        took = f" in {self.ended - self.started:.1f} s" if self.ended else ""
        lines = [f"Pipeline {self.pipeline} run {self.run_id}: {self.status}{took}"]
        if self.sweep:
            lines[0] += f" (sweep {self.sweep['id']} variant {self.sweep['variant']})"
        for step in self.steps.values():
            secs = f" {step.seconds:.1f} s" if step.seconds is not None else ""
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(step.metrics.items())[:4])
            line = f"  {step.status:<9} {step.name}{secs}"
            if metrics:
                line += f"  [{metrics}]"
            lines.append(line)
            if step.error:
                lines.append(f"            {step.error}")
            if step.status == FAILED and step.executed_notebook:
                lines.append(f"            executed notebook: {step.executed_notebook}")
        lines.append(f"  record: {Path(self.folder) / RECORD}")
        if self.mlflow_run_id:
            lines.append(f"  MLflow run: {self.mlflow_run_id} (experiment {self.experiment})")
        return "\n".join(lines)


@shown_as_text
@dataclass
class Sweep:
    """Pipeline runs over a grid of parameters, comparable in one MLflow experiment."""

    sweep_id: str
    runs: list[PipelineRun]
    grid: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    def best(self, metric: str, *, lower_is_better: bool = False) -> PipelineRun:
        """The successful run with the best ``metric``."""
        scored = [r for r in self.runs if r.ok and metric in r.metrics]
        if not scored:
            raise NotFoundError(f"No successful run of sweep {self.sweep_id} has {metric!r}")
        pick = min if lower_is_better else max
        return pick(scored, key=lambda r: r.metrics[metric])

    def __str__(self) -> str:
        lines = [f"Sweep {self.sweep_id}: {len(self.runs)} variants"]
        for run, variant in zip(self.runs, self.grid, strict=True):
            params = ", ".join(f"{k}={v!r}" for k, v in variant.items())
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.metrics.items())[:4])
            lines.append(f"  {run.status:<9} {run.run_id}  {params}  {metrics}")
            for step in run.failed_steps:
                lines.append(f"            step {step.name!r}: {step.error}")
        if self.runs and self.runs[0].experiment:
            lines.append(f"  compare: %compare -e {self.runs[0].experiment}")
        return "\n".join(lines)


def runs_root(config: Config) -> Path:
    """``<project>/.mlops/pipelines``: one folder per pipeline run."""
    return config.mlops_dir / RUNS_DIR


def new_run_id() -> str:
    """Sortable and unique without coordination: time (to the microsecond, so records made
    within one second keep their order) plus randomness."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}{int(now % 1 * 1e6):06d}-{secrets.token_hex(3)}"


_NUMBER = (int, float)
_RUN_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "pipeline": (str,),
    "folder": (str,),
    "status": (str,),
    "started": _NUMBER,
    "ended": (*_NUMBER, type(None)),
    "params": (dict,),
    "steps": (dict,),
    "sweep": (dict, type(None)),
    "data": (list,),
    "tags": (dict,),
}
_STEP_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "status": (str,),
    "started": (*_NUMBER, type(None)),
    "ended": (*_NUMBER, type(None)),
    "seconds": (*_NUMBER, type(None)),
    "metrics": (dict,),
}


def read_record(path: Path) -> PipelineRun:
    """The pipeline run recorded in ``path``; ``ValueError`` saying what is wrong when the
    file is not such a record (truncated, not JSON, a field of the wrong type)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("it is empty" if not text.strip() else f"not valid JSON ({exc})") from None
    problem = type_problem(data, _RUN_TYPES, ("run_id", "pipeline", "folder"))
    if problem:
        raise ValueError(problem)
    for name, step in (data.get("steps") or {}).items():
        problem = type_problem(step, _STEP_TYPES, ("name", "notebook", "executor"))
        metrics = step.get("metrics") or {} if isinstance(step, dict) else {}
        if problem is None and not all(isinstance(v, _NUMBER) for v in metrics.values()):
            problem = "a metric is not a number"
        if problem:
            raise ValueError(f"step {name!r}: {problem}")
    try:
        return PipelineRun.from_dict(data)
    except TypeError as exc:  # a field this version does not know
        raise ValueError(str(exc)) from None


def damaged_record(path: Path, problem: str) -> Damaged:
    """How a pipeline run record that cannot be read is shown (and what to do)."""
    return Damaged(
        "pipeline run record",
        path,
        problem,
        f"restore it from a backup, or delete {path.parent} if the run is not needed "
        "(its executed notebooks are in that folder)",
    )


def get_pipeline_run(run_id: str, *, config: Config | None = None) -> PipelineRun:
    """The recorded pipeline run ``run_id`` (or a unique prefix of it)."""
    config = config or load_config()
    root = runs_root(config)
    matches = sorted(p for p in root.glob(f"{run_id}*/{RECORD}")) if root.is_dir() else []
    if len(matches) != 1:
        what = "No" if not matches else "More than one"
        raise NotFoundError(f"{what} pipeline run {run_id!r} under {root}")
    try:
        return read_record(matches[0])
    except (OSError, ValueError) as exc:
        raise PipelineError(str(damaged_record(matches[0], str(exc)))) from None


def list_pipeline_runs(
    *,
    config: Config | None = None,
    pipeline: str | None = None,
    limit: int | None = None,
    damaged: list[Damaged] | None = None,
) -> list[PipelineRun]:
    """Recorded pipeline runs, newest first (of one pipeline, if named). A record that
    cannot be read is left out of the list and described in ``damaged``."""
    config = config or load_config()
    root = runs_root(config)
    out: list[PipelineRun] = []
    if not root.is_dir():
        return out
    for record in sorted(root.glob(f"*/{RECORD}"), reverse=True):
        try:
            run = read_record(record)
        except (OSError, ValueError) as exc:  # records are written atomically: damage
            if damaged is not None:
                damaged.append(damaged_record(record, str(exc)))
            continue
        if pipeline is None or run.pipeline == pipeline:
            out.append(run)
        if limit is not None and len(out) >= limit:
            break
    return out
