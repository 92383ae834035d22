"""Run pipelines: once, as a sweep over a grid, or one step alone (what a DVC stage runs).

Every step is a papermill execution and every run is recorded in MLflow and on disk (see
:mod:`.records` for the run folder, :mod:`.mlflow_runs` for the MLflow runs and their
tags, :mod:`.coordinator` for the scheduling). A definition or parameters that cannot run
raise :class:`PipelineError` before anything starts; a step that fails does not raise,
it fails its run, whose record says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_mlops import values
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import PipelineError
from jupyter_mlops.pipelines import dvcrepro
from jupyter_mlops.pipelines.coordinator import ActiveRun, Coordinator, prepare_run
from jupyter_mlops.pipelines.export.dvc import params_from_file
from jupyter_mlops.pipelines.overrides import expand_grid, load_grid, parse_overrides
from jupyter_mlops.pipelines.records import PipelineRun, Sweep, new_run_id
from jupyter_mlops.pipelines.spec import Pipeline, load_pipeline, relative_path


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
    python: str | None = None,
) -> PipelineRun:
    """Run a pipeline once and return its record (check ``.ok``; failures do not raise).

    ``params`` override the defaults (``name`` or ``step.name``); ``steps`` runs a subset
    (their inputs from other steps must exist). Input data produced by no step is
    snapshotted with DVC first. ``python``: every step's kernel runs that interpreter (a
    reproduction's environment) instead of the notebook's kernelspec. Raises :class:`PipelineError` before anything runs if the
    definition or the parameters are invalid.
    """
    workers = None if workers is None else values.workers(workers)
    spec = load_pipeline(pipeline)
    config = config or load_config(spec.base)
    active = prepare_run(
        spec,
        config,
        dict(params or {}),
        steps=steps,
        executor=executor,
        run_dir=run_dir,
        experiment=experiment,
    )
    _execute(config, [active], scheduler, workers, snapshot=snapshot, tags=tags, python=python)
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
    workers = None if workers is None else values.workers(workers)
    spec = load_pipeline(pipeline)
    config = config or load_config(spec.base)
    variants = expand_grid(grid)
    sweep_id = new_run_id()
    actives = [
        prepare_run(
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
    _execute(config, actives, scheduler, workers, snapshot=snapshot, tags=tags)
    return Sweep(sweep_id, [a.record for a in actives], variants)


def launch(
    pipeline: str | os.PathLike[str] | Pipeline,
    params: Iterable[str] = (),
    *,
    grid: str | os.PathLike[str] | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    steps: Iterable[str] | None = None,
) -> PipelineRun | Sweep:
    """What ``pipeline run`` does from ``-p name=value`` items: one run, or a sweep.

    A comma-separated value (``-p n_estimators=50,100,200``) or a ``grid`` file makes a
    sweep over every combination; otherwise the pipeline runs once.
    """
    fixed, swept = parse_overrides(params)
    variants: list[dict[str, Any]] = []
    if grid is not None:
        variants = load_grid(grid)
    if swept:
        extra = expand_grid(swept)
        variants = [{**v, **e} for v in variants for e in extra] if variants else extra
    if variants:
        if steps is not None:
            raise PipelineError("A sweep runs whole pipelines: drop --step")
        return sweep(
            pipeline, variants, fixed, executor=executor, scheduler=scheduler, workers=workers
        )
    return run(
        pipeline, fixed, steps=steps, executor=executor, scheduler=scheduler, workers=workers
    )


def run_step(
    pipeline: str | os.PathLike[str] | Pipeline,
    step: str,
    params: Iterable[str] = (),
    *,
    params_file: str | os.PathLike[str] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
) -> PipelineRun:
    """Run one step alone (what a DVC stage runs): its inputs must already exist.

    Overrides come from ``params_file`` (the ``params.yaml`` of the DVC export), then
    ``params``. No DVC snapshot is taken: ``dvc repro`` records the stage's deps itself.
    Under ``dvc repro`` the step joins the pipeline run of that repro (:mod:`.dvcrepro`):
    one pipeline run, one parent MLflow run, a child run per stage.
    """
    spec = load_pipeline(pipeline)
    overrides: dict[str, Any] = {}
    if params_file is not None:
        overrides.update(params_from_file(spec, step, params_file))
    fixed, swept = parse_overrides(params)
    if swept:
        raise PipelineError(f"step {step!r}: one step runs with one value per parameter")
    overrides.update(fixed)
    config = load_config(spec.base)
    with dvcrepro.joining(spec, config) as session:
        if session is None:
            return run(spec, overrides, steps=[step], snapshot=False, run_dir=run_dir)
        active = prepare_run(
            spec, config, overrides, steps=[step], executor=None, run_dir=run_dir,
            experiment=None, run_id=session.run_id,
        )  # fmt: skip
        if session.record is not None:
            before = session.record
            active.logged_params = frozenset({*spec.params, *before.params})
            active.record = dvcrepro.join(before, active.record)
        tags = {dvcrepro.TAG_REPRO: session.key}
        _execute(config, [active], None, None, snapshot=False, tags=tags)
        session.remember(active.record)
        return active.record


def _execute(
    config: Config,
    actives: list[ActiveRun],
    scheduler: str | None,
    workers: int | None,
    *,
    snapshot: bool,
    tags: Mapping[str, Any] | None,
    python: str | None = None,
) -> None:
    coordinator = Coordinator(config, scheduler=scheduler, workers=workers, python=python)
    try:
        for active in actives:
            coordinator.open(active, snapshot=snapshot, tags=tags or {})
        coordinator.execute(actives)
    finally:
        coordinator.shutdown()


def _check_sweep_outputs(actives: Sequence[ActiveRun]) -> None:
    """Variants run at once: two writing the same file would overwrite each other."""
    seen: dict[Path, str] = {}
    for active in actives:
        for step in active.plan.values():
            for out in step.outputs:
                if out in seen and seen[out] != active.record.run_id:
                    raise PipelineError(
                        f"step {step.name!r}: every variant of the sweep would write "
                        f"{relative_path(out, active.spec.base)}; put ${{run_dir}} in the "
                        "output path so that each run writes into its own folder"
                    )
                seen[out] = active.record.run_id
