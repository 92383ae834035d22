"""``reproduce(ref)``: rebuild a tracked run and show whether it gives the same results.

1. the reference is resolved to a run (a model version stands for the run that logged it);
2. a scratch copy of the project is made at the run's commit, its data restored from DVC
   (data that cannot be had fails the reproduction before anything runs);
3. the environment is chosen (the running one, or a fresh one from the run's pins);
4. the recorded cell, after the cells it depends on, is re-executed in a fresh kernel as
   a new run tagged ``mlops.reproduces``, in the original's store and experiment;
5. the runs are compared (params, metrics, data, the models' predictions) and the verdict,
   with its likely causes, is recorded on the original run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError, UsageError
from jupyter_mlops.reproduction import cellbook, pipeline, scratch, verdict
from jupyter_mlops.reproduction.compare import compare_runs
from jupyter_mlops.reproduction.result import (
    ENV_REPRODUCES,
    FAILED,
    Cause,
    Difference,
    EnvironmentReport,
    Reproduction,
)
from jupyter_mlops.reproduction.source import Recorded, find_reproduction, read_run, resolve_ref

ENV_MODES = ("current", "fresh")


def reproduce(
    ref: str,
    *,
    env: str | None = None,
    tolerance: float = 1e-9,
    workdir: str | os.PathLike[str] | None = None,
    config: Config | None = None,
) -> Reproduction:
    """Re-execute the run ``ref`` names and compare it with the original.

    ``ref``: a run id, a prefix of one, a run name, or a registered model version
    (``name@alias``, ``name/3``) standing for its run. ``env``: "current" (the running
    interpreter), "fresh" (a uv environment from the run's pinned packages) or None
    (fresh when the recorded packages differ from the running ones). ``tolerance``: how
    far a metric or a numeric prediction may move (relative and absolute). ``workdir``:
    the scratch copy's folder (default: a new one under ``.mlops/reproductions/``, kept).
    The verdict is REPRODUCED, DIFFERENT (with each difference and its likely causes) or
    FAILED (the run could not be re-executed: data missing, a cell raised); it is also
    recorded on the original run. A reference naming no run raises ``NotFoundError``.
    """
    started = time.perf_counter()
    if env is not None and env not in ENV_MODES:
        raise UsageError(f"env must be 'current' or 'fresh', not {env!r}")
    if not (tolerance >= 0):
        raise UsageError(f"tolerance must be a number >= 0, not {tolerance!r}")
    config = config or load_config()
    original = read_run(resolve_ref(ref, config), config)
    parent = pipeline.parent_of_step(original)
    if parent is not None:  # a step reproduces through its pipeline run
        original = read_run(parent, config)
    folder = scratch.new_folder(original.run_id, config, workdir)
    copy = scratch.make_scratch(original, config, folder)
    reads = scratch.copy_unsnapshotted(original, copy, config)

    def finish(result: Reproduction) -> Reproduction:
        result.seconds = time.perf_counter() - started
        verdict.record(result, config)
        return result

    missing = scratch.restore_data(original, copy.project, config)
    is_pipeline = pipeline.is_pipeline_run(original)
    if missing or (original.cell is None and not is_pipeline):
        causes = missing or [_no_cell(original)]
        environment = EnvironmentReport(mode=env or "current", python=sys.executable)
        return finish(_failed(original, environment, causes + copy.causes, folder))
    scratch.share_dvc(copy.project, config.root.resolve())
    try:
        environment = _environment(original, config, env)
    except MlopsError as exc:  # a fresh environment that cannot be built: one line says why
        cause = Cause("package", "environment", f"The environment could not be prepared: {exc}")
        environment = EnvironmentReport(mode=env or "fresh", python=sys.executable)
        return finish(_failed(original, environment, [cause, *copy.causes], folder))
    if is_pipeline:
        return finish(pipeline.reproduce_pipeline(original, config, copy, environment, tolerance))

    cwd = copy.project / Path(original.notebook or "x").parent
    cwd.mkdir(parents=True, exist_ok=True)
    since = int(time.time() * 1000) - 5000
    out = cwd / f".reproduce-{original.run_id[:8]}.predictions.json"
    spec = {
        "original": original.run_id,
        "experiment_id": original.experiment_id,
        "project": os.fspath(copy.project.resolve()),
        "since": since,
        "models": original.models,
        "cell": original.cell,
        "tolerance": tolerance,
        "out": os.fspath(out),
    }
    book = cellbook.build(original, cwd=cwd, project=copy.project, spec=spec)
    error = _execute(book.path, cwd, original, config, environment)
    found: dict[str, Any] | None = json.loads(out.read_text()) if out.is_file() else None
    new_id = (found or {}).get("run_id") or find_reproduction(
        original, copy.project.resolve(), config, since
    )
    new = read_run(new_id, config, code=False) if new_id else None

    differences: list[Difference] = []
    checked: dict[str, int] = {}
    if new is not None and error is None:  # a cell that raised: its run is no comparison
        differences, checked = compare_runs(original, new, found, tolerance)
    first = copy.causes + book.causes
    if error is not None:
        differences.insert(0, Difference("execution", "notebook", None, None, error))
        first = [Cause("execution", book.path.name, error), *_explained(error, reads), *first]
    elif new is None:
        why = "the re-executed cell recorded no run"
        differences.insert(0, Difference("execution", "run", None, None, why))
        first = [Cause("execution", "run", f"{why.capitalize()}; see {book.path}."), *first]
    elif found is not None and found.get("error"):
        detail = f"the models could not be compared: {found['error']}"
        differences.append(Difference("model", "comparison", None, None, detail))
    failed = error is not None or new is None
    result_verdict = verdict.verdict_of(differences, failed)
    causes = first
    if failed or differences:
        causes = verdict.order_causes(
            differences,
            first=first,
            unseeded=verdict.unseeded(original, new, found),
            packages=verdict.package_causes(environment),
            reads=reads,
            code=copy.if_different + book.if_different,
        )
    return finish(
        Reproduction(
            original_run_id=original.run_id,
            run_id=new.run_id if new is not None else None,
            verdict=result_verdict,
            environment=environment,
            differences=differences,
            causes=causes,
            checked=checked,
            workdir=folder,
        )
    )


def _execute(
    notebook: Path,
    cwd: Path,
    original: Recorded,
    config: Config,
    environment: EnvironmentReport,
) -> str | None:
    """Run the reproduction notebook in a fresh kernel; the error line if a cell raised."""
    from jupyter_mlops.pipelines.execute import NotebookExecutionError, execute_notebook

    env = {ENV_REPRODUCES: original.run_id, "MLFLOW_TRACKING_URI": config.tracking_uri}
    output = notebook.with_name(f"{notebook.stem}.out.ipynb")
    # The running interpreter's kernel keeps this process's environment (its PYTHONPATH);
    # another interpreter's gets a kernel of its own.
    python = environment.python if environment.mode == "fresh" else None
    try:
        execute_notebook(notebook, output, cwd=cwd, env=env, python=python)
    except NotebookExecutionError as exc:
        return str(exc)
    return None


def _environment(original: Recorded, config: Config, env: str | None) -> EnvironmentReport:
    """The interpreter the reproduction runs in: the running one, or a fresh environment
    built from the run's pinned packages (see :mod:`.environment`)."""
    from jupyter_mlops.client import quiet_mlflow
    from jupyter_mlops.reproduction.environment import prepare_environment, recorded_packages

    with quiet_mlflow():  # no artifact download bars
        if pipeline.is_pipeline_run(original):  # its steps' runs pinned what they used
            pins: dict[str, str] = {}
            for step in pipeline.step_run_ids(original, config).values():
                pins.update(recorded_packages(step, config))
        else:
            pins = recorded_packages(original.run_id, config)
    return prepare_environment(pins, mode=env, python_version=original.tags.get("mlops.python"))


def _explained(error: str, reads: list[Cause]) -> list[Cause]:
    """A cause read off the execution's error: a name nothing recorded defined, or a file
    the cell read that neither the commit nor a snapshot holds (unless a risk said so)."""
    undefined = re.search(r"NameError: name '(\w+)' is not defined", error)
    if undefined is not None:
        name = undefined.group(1)
        message = (
            f"The cell uses {name!r}, which none of the recorded earlier cells defines: "
            "define it in the tracked cell (or run the cell that does first) and track again."
        )
        return [Cause("code", name, message)]
    missing = re.search(r"No such file or directory: '([^']+)'", error)
    if missing is None or any(c.subject == missing.group(1) for c in reads):
        return []
    path = missing.group(1)
    message = (
        f"The cell read {path}, which is neither in the recorded commit nor snapshotted: "
        f"add --data {path} to the %%track line (or commit it) and track again."
    )
    return [Cause("unsnapshotted_read", path, message)]


def _no_cell(original: Recorded) -> Cause:
    return Cause(
        "code",
        "mlops/cell.py",
        f"Run {original.run_id} recorded no cell source (mlops/cell.py): it was not "
        "tracked with %%track, so there is nothing to re-execute.",
    )


def _failed(
    original: Recorded, environment: EnvironmentReport, causes: list[Cause], folder: Path
) -> Reproduction:
    missing = {c.subject for c in causes if c.kind == "data_missing"}
    differences = [
        Difference("data", snap.path, snap.md5, None, "cannot be restored")
        for snap in original.data
        if snap.path in missing
    ]
    return Reproduction(
        original_run_id=original.run_id,
        run_id=None,
        verdict=FAILED,
        environment=environment,
        differences=differences,
        causes=causes,
        checked={"data": len(original.data)},
        workdir=folder,
    )
