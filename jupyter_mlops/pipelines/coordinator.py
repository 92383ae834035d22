"""The run loop: schedule the steps of one or more pipeline runs on executors, in DAG order.

One coordinator (the calling process) snapshots each run's input data with DVC, opens its
parent MLflow run and a child run per step, and hands the notebook executions to
executors (:mod:`.executors`), starting each step once what it needs has succeeded. A
failed step fails its pipeline run and its dependants are SKIPPED; independent branches
go on. A sweep is several pipeline runs scheduled together on the same executors.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_mlops._util.urls import redact_text
from jupyter_mlops.client import client
from jupyter_mlops.config import Config
from jupyter_mlops.pipelines import mlflow_runs
from jupyter_mlops.pipelines.context import PIPELINE_RUN_ENV, STEP_RUN_ENV
from jupyter_mlops.pipelines.execute import StepOutcome, StepTask, run_step_task
from jupyter_mlops.pipelines.executors import ExecutorOptions, default_workers, make_executor
from jupyter_mlops.pipelines.mlflow_runs import MLFLOW_STATUS, call
from jupyter_mlops.pipelines.records import (
    FAILED,
    KILLED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    PipelineRun,
    StepRun,
    new_run_id,
    runs_root,
)
from jupyter_mlops.pipelines.spec import Pipeline, PlannedStep, relative_path

HASH_LIMIT = 256 * 2**20  # outputs larger than this are recorded by size only


@dataclass
class ActiveRun:
    """A pipeline run being executed: its record, its plan, its MLflow experiment."""

    record: PipelineRun
    spec: Pipeline
    plan: dict[str, PlannedStep]
    experiment_id: str = ""
    logged_params: frozenset[str] = frozenset()  # on the parent run already (a dvc repro's)


def prepare_run(
    spec: Pipeline,
    config: Config,
    overrides: Mapping[str, Any],
    *,
    steps: Iterable[str] | None,
    executor: str | None,
    run_dir: str | os.PathLike[str] | None,
    experiment: str | None,
    sweep: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> ActiveRun:
    """Plan one run (raising :class:`PipelineError` if it cannot run) and make its record.

    ``run_id``: the id of the pipeline run (new by default; a ``dvc repro`` stage gives
    the id of the run its repro opened, see :mod:`.dvcrepro`).
    """
    run_id = run_id or new_run_id()
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
            notebook=relative_path(p.notebook, config.root),
            executor=p.executor,
            needs=list(p.needs),
            params=dict(p.params),
            inputs=[relative_path(i, config.root) for i in p.inputs],
            outputs=[relative_path(o, config.root) for o in p.outputs],
        )
    return ActiveRun(record, spec, {p.name: p for p in plan})


class Coordinator:
    """Schedules the steps of one or more pipeline runs on executors, keeps the records."""

    def __init__(
        self,
        config: Config,
        *,
        scheduler: str | None,
        workers: int | None,
        python: str | None = None,
    ) -> None:
        self.config = config
        self.scheduler = scheduler
        self.workers = workers
        self.python = python  # the steps' interpreter (a reproduction's env); None: kernelspec
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
    def open(self, active: ActiveRun, *, snapshot: bool, tags: Mapping[str, Any]) -> None:
        """Snapshot the run's input data, open its parent MLflow run, write run.json.

        A record that already has a parent MLflow run (the next stage of a ``dvc repro``)
        sets that run RUNNING again and logs only the parameters it lacks.
        """
        from jupyter_mlops.tracking import store

        record, spec = active.record, active.spec
        if snapshot:
            external = sorted({p for s in active.plan.values() for p in s.external_inputs})
            if external:
                from jupyter_mlops.data import snapshot as snapshot_data

                snaps = snapshot_data(external, self.config.root)
                record.data = [s.to_dict() for s in snaps]
        self.client = self.client or client(self.config)
        experiment = record.experiment or spec.experiment or spec.name
        active.experiment_id = store.ensure_experiment(experiment, self.config)
        record.experiment = experiment
        params = {**spec.params, **record.params}
        if record.mlflow_run_id:
            call(self.client.update_run, record.mlflow_run_id, status="RUNNING")
            params = {k: v for k, v in params.items() if k not in active.logged_params}
        else:
            run_tags = mlflow_runs.pipeline_run_tags(self.config, spec, record, tags)
            if snapshot and record.data:  # the recorded commit may lack their .dvc files
                run_tags.update(mlflow_runs.pointer_tags(self.config, record, run_tags))
            record.tags = {k: v for k, v in run_tags.items() if k.startswith("mlops.retrain")}
            run = call(
                self.client.create_run, active.experiment_id, run_name=spec.name, tags=run_tags
            )
            record.mlflow_run_id = run.info.run_id
        mlflow_runs.log_params(self.client, record.mlflow_run_id, params)
        record.status = RUNNING
        record.save()

    def start_step(self, active: ActiveRun, name: str, width: int) -> cf.Future[StepOutcome]:
        """Open the step's MLflow run and submit its notebook to the step's executor."""
        record, planned = active.record, active.plan[name]
        step = record.steps[name]
        notebook = relative_path(planned.notebook, self.config.root)
        tags = mlflow_runs.step_run_tags(record, active.spec.name, name, notebook)
        run = call(self.client.create_run, active.experiment_id, run_name=name, tags=tags)
        step.mlflow_run_id = run.info.run_id
        mlflow_runs.log_params(self.client, step.mlflow_run_id, planned.params)
        output = Path(record.folder) / f"{name}.ipynb"
        for path in planned.outputs:  # notebooks write files, they rarely make folders
            path.parent.mkdir(parents=True, exist_ok=True)
        step.executed_notebook = relative_path(output, self.config.root)
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
            python=self.python,
        )
        executor = self._executor(planned.executor, width)
        return executor.submit(run_step_task, task)

    def finish_step(self, active: ActiveRun, name: str, outcome: StepOutcome) -> None:
        """Record how the step went: status, declared outputs, metrics; end its MLflow run."""
        record, planned = active.record, active.plan[name]
        step = record.steps[name]
        step.ended, step.seconds = time.time(), outcome.seconds
        error = None if outcome.ok else outcome.error
        if error is None:
            missing = [
                relative_path(p, active.spec.base) for p in planned.outputs if not p.exists()
            ]
            if missing:
                error = f"declared output(s) {', '.join(missing)} were not written"
        for path in planned.outputs:
            if path.exists():
                step.output_files[relative_path(path, self.config.root)] = _fingerprint(path)
        if step.mlflow_run_id:
            with contextlib.suppress(Exception):  # a lost metric read must not lose the record
                run = call(self.client.get_run, step.mlflow_run_id)
                step.metrics = dict(run.data.metrics)
        step.status = SUCCEEDED if error is None else FAILED
        # A step's error (a tag, the record, the sidebar) may quote the store's URL.
        step.error = None if error is None else redact_text(f"step {name!r}: {error}")
        if step.mlflow_run_id:
            if step.error:
                mlflow_runs.set_tags(
                    self.client, step.mlflow_run_id, {mlflow_runs.TAG_ERROR: step.error}
                )
            call(self.client.set_terminated, step.mlflow_run_id, MLFLOW_STATUS[step.status])
        record.save()

    def close(self, active: ActiveRun, status: str | None = None) -> None:
        """End the run: its status (from its steps unless given), metrics and MLflow run."""
        record = active.record
        states = {s.status for s in record.steps.values()}
        if status is None:
            status = SUCCEEDED if states <= {SUCCEEDED} else FAILED
        record.status, record.ended = status, time.time()
        if record.mlflow_run_id:
            with contextlib.suppress(Exception):
                mlflow_runs.log_metrics(self.client, record.mlflow_run_id, record.metrics)
            mlflow_runs.set_tags(
                self.client, record.mlflow_run_id, {mlflow_runs.TAG_STATUS: status}
            )
            call(self.client.set_terminated, record.mlflow_run_id, MLFLOW_STATUS[status])
        record.save()

    # -- the loop --------------------------------------------------------------------------
    def execute(self, runs: list[ActiveRun]) -> None:
        """Run every step of every run, each once what it needs has succeeded."""
        width = sum(_width(a.plan) for a in runs)
        running: dict[cf.Future[StepOutcome], tuple[ActiveRun, str]] = {}
        try:
            while True:
                for active in runs:
                    _skip_blocked(active.record)
                    for name in _ready(active.record):
                        running[self.start_step(active, name, width)] = (active, name)
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
                    self._kill(active)
            raise

    def _kill(self, active: ActiveRun) -> None:
        """Mark what had not finished KILLED (interrupted, or the loop itself failed)."""
        for step in active.record.steps.values():
            if step.status in (PENDING, RUNNING):
                step.status = KILLED
                if step.mlflow_run_id:
                    with contextlib.suppress(Exception):
                        call(self.client.set_terminated, step.mlflow_run_id, "KILLED")
        with contextlib.suppress(Exception):
            self.close(active, KILLED)


def _ready(record: PipelineRun) -> list[str]:
    steps = record.steps
    return [
        name
        for name, step in steps.items()
        if step.status == PENDING and all(steps[n].status == SUCCEEDED for n in step.needs)
    ]


def _skip_blocked(record: PipelineRun) -> None:
    steps = record.steps
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


def _fingerprint(path: Path) -> dict[str, Any]:
    """Size and md5 of an output file (size only past HASH_LIMIT; total size of a folder)."""
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return {"size": size, "folder": True}
    size = path.stat().st_size
    if size > HASH_LIMIT:
        return {"size": size}
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"size": size, "md5": digest.hexdigest()}
