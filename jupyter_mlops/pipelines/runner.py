"""Run pipelines: every step a papermill execution, every run recorded in MLflow and on disk.

One coordinator (the calling process) plans the runs, snapshots their input data with DVC,
opens a parent MLflow run per pipeline run and a child run per step, and hands the
notebook executions to executors (:mod:`.executors`), starting each step once what it
needs has succeeded. A failed step fails its pipeline run and its dependants are SKIPPED;
independent branches go on. Each pipeline run keeps its executed notebooks and a
``run.json`` (status per step, parameters, paths, MLflow run ids) under
``<project>/.mlops/pipelines/<run-id>/``. A sweep is several pipeline runs scheduled
together on the same executors.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import contextlib
import hashlib
import itertools
import json
import os
import secrets
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError
from jupyter_mlops.pipelines.context import PIPELINE_RUN_ENV, STEP_RUN_ENV
from jupyter_mlops.pipelines.execute import StepOutcome, StepTask, run_step_task
from jupyter_mlops.pipelines.executors import (
    ExecutorOptions,
    default_workers,
    make_executor,
)
from jupyter_mlops.pipelines.spec import Pipeline, PipelineError, PlannedStep, load_pipeline

RUNS_DIR = "pipelines"
RECORD = "run.json"
TAG_PIPELINE = "mlops.pipeline"
TAG_PIPELINE_RUN = "mlops.pipeline.run"
TAG_STEP = "mlops.pipeline.step"
TAG_SWEEP = "mlops.sweep.id"
TAG_VARIANT = "mlops.sweep.variant"
_HASH_LIMIT = 256 * 2**20  # outputs larger than this are recorded by size only

PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, KILLED = (
    "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED", "KILLED"
)  # fmt: skip
_MLFLOW_STATUS = {SUCCEEDED: "FINISHED", FAILED: "FAILED", KILLED: "KILLED"}


# -- records ------------------------------------------------------------------------------
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

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return "<pre>" + escape(str(self)) + "</pre>"


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

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return "<pre>" + escape(str(self)) + "</pre>"


def runs_root(config: Config) -> Path:
    """``<project>/.mlops/pipelines``: one folder per pipeline run."""
    return config.mlops_dir / RUNS_DIR


def new_run_id() -> str:
    """Sortable and unique without coordination: time (to the microsecond, so records made
    within one second keep their order) plus randomness."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}{int(now % 1 * 1e6):06d}-{secrets.token_hex(3)}"


def get_pipeline_run(run_id: str, *, config: Config | None = None) -> PipelineRun:
    """The recorded pipeline run ``run_id`` (or a unique prefix of it)."""
    config = config or load_config()
    root = runs_root(config)
    matches = sorted(p for p in root.glob(f"{run_id}*/{RECORD}")) if root.is_dir() else []
    if len(matches) != 1:
        what = "No" if not matches else "More than one"
        raise NotFoundError(f"{what} pipeline run {run_id!r} under {root}")
    return PipelineRun.from_dict(json.loads(matches[0].read_text(encoding="utf-8")))


def list_pipeline_runs(
    *, config: Config | None = None, pipeline: str | None = None, limit: int | None = None
) -> list[PipelineRun]:
    """Recorded pipeline runs, newest first (of one pipeline, if named)."""
    config = config or load_config()
    root = runs_root(config)
    out: list[PipelineRun] = []
    if not root.is_dir():
        return out
    for record in sorted(root.glob(f"*/{RECORD}"), reverse=True):
        try:
            run = PipelineRun.from_dict(json.loads(record.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue  # a record being written, or from an incompatible version
        if pipeline is None or run.pipeline == pipeline:
            out.append(run)
        if limit is not None and len(out) >= limit:
            break
    return out


# -- parameters of a run or a sweep -------------------------------------------------------
def _split_values(raw: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``50,100`` -> two, ``[1,2]`` -> one."""
    parts, depth, quote, current = [], 0, "", []
    for ch in raw:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _literal(raw: str) -> Any:
    try:
        return ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return raw.strip()


def parse_overrides(items: Iterable[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """``-p`` items -> (fixed values, swept values): ``n=50,100,200`` sweeps n over three.

    Values are Python literals or text; ``step.name=value`` targets one step.
    """
    fixed: dict[str, Any] = {}
    swept: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        name = key.strip()
        if not sep or not name or not all(p.isidentifier() for p in name.split(".")):
            raise PipelineError(f"Parameter must look like name=value, got {item!r}")
        parts = _split_values(raw)
        if len(parts) > 1 and all(p.strip() for p in parts):
            swept[name] = [_literal(p) for p in parts]
        else:
            fixed[name] = _literal(raw)
    return fixed, swept


def load_grid(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A grid file (YAML/JSON): ``{name: [values]}`` (all combinations) or a list of dicts."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise PipelineError(f"Grid file {path} does not exist")
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    return expand_grid(data)


def expand_grid(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict]:
    """All combinations of ``{name: [values]}``, or an explicit list of variants as is."""
    if isinstance(grid, Mapping):
        names = list(grid)
        values = []
        for name in names:
            options = grid[name]
            if isinstance(options, str) or not isinstance(options, Sequence) or not options:
                raise PipelineError(f"Grid entry {name!r} must be a non-empty list of values")
            values.append(list(options))
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    if isinstance(grid, Sequence) and grid and all(isinstance(v, Mapping) for v in grid):
        return [dict(v) for v in grid]
    raise PipelineError("A grid is {name: [values, ...]} or a list of {name: value} variants")


# -- MLflow -------------------------------------------------------------------------------
def _mlflow(config: Config) -> Any:
    from jupyter_mlops.tracking import store

    return store.client(config)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from jupyter_mlops.tracking import store

    return store.call(fn, *args, **kwargs)


def _log_params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    from jupyter_mlops.tracking.capture import MAX_PARAM_LENGTH

    batch = [Param(str(k), str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
    for start in range(0, len(batch), 100):  # MLflow's limit per batch
        _call(client.log_batch, run_id, params=batch[start : start + 100])


def _set_tags(client: Any, run_id: str, tags: Mapping[str, Any]) -> None:
    from mlflow.entities import RunTag

    batch = [RunTag(str(k), str(v)[:4900]) for k, v in tags.items()]
    if batch:
        _call(client.log_batch, run_id, tags=batch)


def _active_mlflow_run() -> str | None:
    if "mlflow" not in sys.modules:  # nothing can be active if MLflow was never imported
        return None
    import mlflow

    active = mlflow.active_run()
    return active.info.run_id if active else None


def _base_tags(config: Config, spec: Pipeline) -> dict[str, str]:
    from jupyter_mlops._version import __version__
    from jupyter_mlops.tracking.environment import git_state

    tags = {
        "mlops.version": __version__,
        "mlops.project_root": str(config.root),
        "mlflow.source.type": "PROJECT",
        "mlflow.source.name": _rel(spec.path, config.root) if spec.path else spec.name,
    }
    git = git_state(config.root)
    if git is not None:
        tags["mlflow.source.git.commit"] = git.commit
        tags["mlops.git.dirty"] = str(git.dirty).lower()
    return tags


def _rel(path: Path | str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _file_fingerprint(path: Path) -> dict[str, Any]:
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return {"size": size, "folder": True}
    size = path.stat().st_size
    if size > _HASH_LIMIT:
        return {"size": size}
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"size": size, "md5": digest.hexdigest()}


# -- the coordinator ----------------------------------------------------------------------
@dataclass
class _Active:
    """A pipeline run being executed: its record, its plan, its MLflow ids."""

    record: PipelineRun
    spec: Pipeline
    plan: dict[str, PlannedStep]
    experiment_id: str = ""


class _Coordinator:
    """Schedules the steps of one or more pipeline runs on executors, keeps the records."""

    def __init__(
        self,
        config: Config,
        *,
        executor: str | None,
        scheduler: str | None,
        workers: int | None,
    ) -> None:
        self.config = config
        self.default_executor = executor
        self.scheduler = scheduler
        self.workers = workers
        self.executors: dict[str, cf.Executor] = {}
        self.client: Any = None

    def _executor(self, name: str, width: int) -> cf.Executor:
        if name not in self.executors:
            workers = self.workers or default_workers(width)
            self.executors[name] = make_executor(name, ExecutorOptions(workers, self.scheduler))
        return self.executors[name]

    def shutdown(self) -> None:
        for executor in self.executors.values():
            with contextlib.suppress(Exception):
                executor.shutdown(wait=True, cancel_futures=True)
        self.executors.clear()

    # -- opening and closing runs ----------------------------------------------------------
    def open(self, active: _Active, *, snapshot: bool, tags: Mapping[str, Any]) -> None:
        """Snapshot the run's input data, open its parent MLflow run, write run.json."""
        from jupyter_mlops.tracking import store
        from jupyter_mlops.tracking.run import TAG_DATA

        record, spec = active.record, active.spec
        if snapshot:
            external = sorted({p for s in active.plan.values() for p in s.external_inputs})
            if external:
                from jupyter_mlops import data

                record.data = [s.to_dict() for s in data.snapshot(external, self.config.root)]
        self.client = self.client or _mlflow(self.config)
        experiment = record.experiment or spec.experiment or spec.name
        active.experiment_id = store.ensure_experiment(experiment, self.config)
        record.experiment = experiment
        run_tags = {
            **_base_tags(self.config, spec),
            TAG_PIPELINE: spec.name,
            TAG_PIPELINE_RUN: record.run_id,
            **{str(k): str(v) for k, v in tags.items()},
        }
        if record.data:
            run_tags[TAG_DATA] = json.dumps(record.data)
        if record.sweep:
            run_tags[TAG_SWEEP] = record.sweep["id"]
            run_tags[TAG_VARIANT] = str(record.sweep["variant"])
        parent = _active_mlflow_run()
        if parent:
            run_tags["mlflow.parentRunId"] = parent
        record.tags = {k: v for k, v in run_tags.items() if k.startswith("mlops.retrain")}
        run = _call(self.client.create_run, active.experiment_id, run_name=spec.name, tags=run_tags)
        record.mlflow_run_id = run.info.run_id
        _log_params(self.client, run.info.run_id, {**spec.params, **record.params})
        record.status = RUNNING
        record.save()

    def start_step(self, active: _Active, name: str, width: int) -> tuple[cf.Future, str]:
        from jupyter_mlops.tracking.run import TAG_DATA, TAG_NOTEBOOK

        record, planned = active.record, active.plan[name]
        step = record.steps[name]
        notebook_rel = _rel(planned.notebook, self.config.root)
        tags = {
            "mlflow.parentRunId": record.mlflow_run_id,
            "mlflow.source.name": notebook_rel,
            "mlflow.source.type": "NOTEBOOK",
            TAG_NOTEBOOK: notebook_rel,
            TAG_PIPELINE: active.spec.name,
            TAG_PIPELINE_RUN: record.run_id,
            TAG_STEP: name,
        }
        if record.sweep:
            tags[TAG_SWEEP] = record.sweep["id"]
            tags[TAG_VARIANT] = str(record.sweep["variant"])
        if record.data:  # lineage: whatever a step made derives from the run's input data
            tags[TAG_DATA] = json.dumps(record.data)
        run = _call(self.client.create_run, active.experiment_id, run_name=name, tags=tags)
        step.mlflow_run_id = run.info.run_id
        _log_params(self.client, step.mlflow_run_id, planned.params)
        output = Path(record.folder) / f"{name}.ipynb"
        for path in planned.outputs:  # notebooks write files, they rarely make folders
            path.parent.mkdir(parents=True, exist_ok=True)
        step.executed_notebook = _rel(output, self.config.root)
        step.status, step.started = RUNNING, time.time()
        record.save()
        task = StepTask(
            key=f"{record.run_id}/{name}",
            notebook=str(planned.notebook),
            output=str(output),
            parameters=dict(planned.params),
            cwd=str(active.spec.base),
            env={
                # This process's environment, not the (long-lived) worker's: what the caller
                # set before the run reaches the kernel wherever it executes.
                **os.environ,
                "MLFLOW_RUN_ID": step.mlflow_run_id,
                STEP_RUN_ENV: step.mlflow_run_id,
                PIPELINE_RUN_ENV: record.run_id,
                "MLFLOW_TRACKING_URI": self.config.tracking_uri,
            },
            kernel_name=planned.kernel,
            timeout=planned.timeout,
        )
        executor = self._executor(planned.executor, width)
        return executor.submit(run_step_task, task), name

    def finish_step(self, active: _Active, name: str, outcome: StepOutcome) -> None:
        record, planned = active.record, active.plan[name]
        step = record.steps[name]
        step.ended, step.seconds = time.time(), outcome.seconds
        error = None if outcome.ok else outcome.error
        if error is None:
            missing = [_rel(p, active.spec.base) for p in planned.outputs if not p.exists()]
            if missing:
                error = f"declared output(s) {', '.join(missing)} were not written"
        for path in planned.outputs:
            if path.exists():
                step.output_files[_rel(path, self.config.root)] = _file_fingerprint(path)
        if step.mlflow_run_id:
            with contextlib.suppress(Exception):  # a lost metric read must not lose the record
                run = _call(self.client.get_run, step.mlflow_run_id)
                step.metrics = dict(run.data.metrics)
        step.status = SUCCEEDED if error is None else FAILED
        step.error = None if error is None else f"step {name!r}: {error}"
        if step.mlflow_run_id:
            if step.error:
                _set_tags(self.client, step.mlflow_run_id, {"mlops.pipeline.error": step.error})
            _call(self.client.set_terminated, step.mlflow_run_id, _MLFLOW_STATUS[step.status])
        record.save()

    def close(self, active: _Active, status: str | None = None) -> None:
        record = active.record
        states = {s.status for s in record.steps.values()}
        if status is None:
            status = SUCCEEDED if states <= {SUCCEEDED} else FAILED
        record.status, record.ended = status, time.time()
        if record.mlflow_run_id:
            with contextlib.suppress(Exception):
                from mlflow.entities import Metric

                now = int(time.time() * 1000)
                metrics = [Metric(k, v, now, 0) for k, v in record.metrics.items()]
                if metrics:
                    _call(self.client.log_batch, record.mlflow_run_id, metrics=metrics)
            _set_tags(self.client, record.mlflow_run_id, {"mlops.pipeline.status": status})
            _call(self.client.set_terminated, record.mlflow_run_id, _MLFLOW_STATUS[status])
        record.save()

    # -- the loop --------------------------------------------------------------------------
    def execute(self, runs: list[_Active]) -> None:
        """Run every step of every run, each once what it needs has succeeded."""
        width = sum(_width(a.plan) for a in runs)
        running: dict[cf.Future, tuple[_Active, str]] = {}
        try:
            while True:
                for active in runs:
                    self._skip_blocked(active)
                    for name in self._ready(active):
                        future, _ = self.start_step(active, name, width)
                        running[future] = (active, name)
                if not running:
                    break
                done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for future in done:
                    active, name = running.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as exc:  # the executor itself failed (worker lost...)
                        outcome = StepOutcome(
                            key=f"{active.record.run_id}/{name}",
                            ok=False,
                            output="",
                            seconds=0.0,
                            error=f"the {active.plan[name].executor} executor failed: "
                            f"{type(exc).__name__}: {exc}",
                        )
                    self.finish_step(active, name, outcome)
            for active in runs:
                self.close(active)
        except BaseException:
            for future in running:
                future.cancel()
            for active in runs:
                if active.record.status == RUNNING:
                    for step in active.record.steps.values():
                        if step.status in (PENDING, RUNNING):
                            step.status = KILLED
                            if step.mlflow_run_id:
                                with contextlib.suppress(Exception):
                                    _call(self.client.set_terminated, step.mlflow_run_id, "KILLED")
                    with contextlib.suppress(Exception):
                        self.close(active, KILLED)
            raise

    def _ready(self, active: _Active) -> list[str]:
        steps = active.record.steps
        return [
            name
            for name, step in steps.items()
            if step.status == PENDING and all(steps[n].status == SUCCEEDED for n in step.needs)
        ]

    def _skip_blocked(self, active: _Active) -> None:
        steps = active.record.steps
        changed = True
        while changed:
            changed = False
            for step in steps.values():
                if step.status != PENDING:
                    continue
                blocked = [n for n in step.needs if steps[n].status in (FAILED, SKIPPED, KILLED)]
                if blocked:
                    step.status = SKIPPED
                    step.error = (
                        f"step {step.name!r} skipped: it needs {blocked[0]!r}, which "
                        f"{'failed' if steps[blocked[0]].status == FAILED else 'did not run'}"
                    )
                    changed = True


def _width(plan: Mapping[str, PlannedStep]) -> int:
    """The most steps of one plan that can run at once (widest level of the DAG)."""
    level: dict[str, int] = {}
    for name, step in plan.items():  # plans are in topological order
        level[name] = 1 + max((level[n] for n in step.needs if n in level), default=0)
    counts: dict[int, int] = {}
    for value in level.values():
        counts[value] = counts.get(value, 0) + 1
    return max(counts.values(), default=1)


def _prepare(
    spec: Pipeline,
    config: Config,
    overrides: Mapping[str, Any],
    *,
    steps: Iterable[str] | None,
    executor: str | None,
    run_dir: str | os.PathLike[str] | None,
    experiment: str | None,
    sweep: dict[str, Any] | None = None,
) -> _Active:
    run_id = new_run_id()
    folder = runs_root(config) / run_id
    target = (spec.base / run_dir).resolve() if run_dir else folder
    plan = spec.plan(overrides, run_dir=target, run_id=run_id, steps=steps, executor=executor)
    record = PipelineRun(
        run_id=run_id,
        pipeline=spec.name,
        spec=str(spec.path) if spec.path else None,
        folder=str(folder),
        params=dict(overrides),
        experiment=experiment,
        sweep=sweep,
    )
    for p in plan:
        record.steps[p.name] = StepRun(
            name=p.name,
            notebook=_rel(p.notebook, config.root),
            executor=p.executor,
            needs=list(p.needs),
            params=dict(p.params),
            inputs=[_rel(i, config.root) for i in p.inputs],
            outputs=[_rel(o, config.root) for o in p.outputs],
        )
    return _Active(record, spec, {p.name: p for p in plan})


def run(
    pipeline: str | os.PathLike[str] | Pipeline,
    params: Mapping[str, Any] | None = None,
    *,
    executor: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    steps: Iterable[str] | None = None,
    experiment: str | None = None,
    snapshot: bool = True,
    run_dir: str | os.PathLike[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    config: Config | None = None,
) -> PipelineRun:
    """Run a pipeline once and return its record (check ``.ok``; failures do not raise).

    ``params`` override the defaults (``name`` or ``step.name``); ``steps`` runs a subset
    (their inputs from other steps must exist). Input data produced by no step is
    snapshotted with DVC first. Raises :class:`PipelineError` before anything runs if the
    definition or the parameters are invalid.
    """
    spec = load_pipeline(pipeline)
    config = config or load_config(spec.base)
    active = _prepare(
        spec,
        config,
        dict(params or {}),
        steps=steps,
        executor=executor,
        run_dir=run_dir,
        experiment=experiment,
    )
    coordinator = _Coordinator(config, executor=executor, scheduler=scheduler, workers=workers)
    try:
        coordinator.open(active, snapshot=snapshot, tags=tags or {})
        coordinator.execute([active])
    finally:
        coordinator.shutdown()
    return active.record


def sweep(
    pipeline: str | os.PathLike[str] | Pipeline,
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    params: Mapping[str, Any] | None = None,
    *,
    executor: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    experiment: str | None = None,
    snapshot: bool = True,
    tags: Mapping[str, Any] | None = None,
    config: Config | None = None,
) -> Sweep:
    """Run one pipeline per combination of ``grid`` (plus fixed ``params``) in parallel.

    All variants go to the same MLflow experiment, tagged with the sweep id and their
    variant number, and log the swept values as params: compare them with ``%compare``.
    Every variant is planned (and so validated) before any of them starts.
    """
    spec = load_pipeline(pipeline)
    config = config or load_config(spec.base)
    variants = expand_grid(grid)
    sweep_id = new_run_id()
    actives = [
        _prepare(
            spec,
            config,
            {**(params or {}), **variant},
            steps=None,
            executor=executor,
            run_dir=None,
            experiment=experiment,
            sweep={"id": sweep_id, "variant": i, "params": variant},
        )
        for i, variant in enumerate(variants)
    ]
    _check_sweep_outputs(actives)
    coordinator = _Coordinator(config, executor=executor, scheduler=scheduler, workers=workers)
    try:
        for active in actives:
            coordinator.open(active, snapshot=snapshot, tags=tags or {})
        coordinator.execute(actives)
    finally:
        coordinator.shutdown()
    return Sweep(sweep_id, [a.record for a in actives], variants)


def _check_sweep_outputs(actives: Sequence[_Active]) -> None:
    """Variants run at once: two writing the same file would overwrite each other."""
    seen: dict[Path, str] = {}
    for active in actives:
        for step in active.plan.values():
            for out in step.outputs:
                if out in seen and seen[out] != active.record.run_id:
                    raise PipelineError(
                        f"step {step.name!r}: every variant of the sweep would write "
                        f"{_rel(out, active.spec.base)}; put ${{run_dir}} in the output path "
                        "so that each run writes into its own folder"
                    )
                seen[out] = active.record.run_id
