"""What a hyperparameter search adds to a run besides its best model.

A flavour unwraps a search (``Flavor.unwrap``) into the best estimator and what the search
found: the best candidate's params, the best cross-validated score, the table of all
candidates. ``TrackedRun.log_model`` logs the best estimator as the model and hands the
rest here; with ``search_runs`` on, each candidate also becomes a child run, so MLflow's
UI can chart the search.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from jupyter_mlops.client import client
from jupyter_mlops.tracking import store

if TYPE_CHECKING:
    from jupyter_mlops.tracking.flavors import Unwrapped
    from jupyter_mlops.tracking.run import TrackedRun

Candidate = tuple[dict[str, str], dict[str, float]]


def log_search(run: TrackedRun, name: str, unwrapped: Unwrapped) -> None:
    """Log the params, metrics and artifacts of the search ``name`` to ``run``.

    The cell's capture has usually logged the params already (as the search's
    hyperparameters, bare or prefixed with the model's name): those are not logged
    again. A metric or artifact another search of the same run already holds gets the
    model's name as a prefix.
    """
    run.log_params(
        {
            key: value
            for key, value in unwrapped.params.items()
            if key not in run.params and f"{name}.{key}" not in run.params
        }
    )
    metrics = {}
    for key, value in unwrapped.metrics.items():
        taken = key in run.metrics and run.metrics[key] != value
        metrics[f"{name}.{key}" if taken else key] = value
    run.log_metrics(metrics)
    for path, text in unwrapped.artifacts.items():
        if path in run.texts:
            folder, _, file = path.rpartition("/")
            path = f"{folder}/{name}/{file}" if folder else f"{name}/{file}"
        run.log_text(text, path)
    run.notes.append(
        f"{name}: best estimator of {unwrapped.kind} ({len(unwrapped.candidates)} candidates)"
    )
    if run.search_runs and unwrapped.candidates:
        log_candidates(run, name, unwrapped.candidates)


def log_candidates(run: TrackedRun, name: str, candidates: list[Candidate]) -> None:
    """One FINISHED child run of ``run`` per candidate, with its params and CV scores."""
    from mlflow.entities import Metric, Param, RunTag

    if run.offline is not None:
        run.notes.append(f"{name}: search child runs not logged (the store is unreachable)")
        return
    mlflow_client = client(run.config)
    now = int(time.time() * 1000)
    try:
        for i, (params, metrics) in enumerate(candidates):
            child = store.call(
                mlflow_client.create_run,
                run.experiment_id,
                tags={"mlflow.parentRunId": run.run_id, "mlops.search.candidate": str(i)},
                run_name=f"{run.run_name}-{name}-{i}",
            )
            store.call(
                mlflow_client.log_batch,
                child.info.run_id,
                params=[Param(k, v) for k, v in params.items()],
                metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                tags=[RunTag("mlops.search.model", name)],
            )
            store.call(mlflow_client.set_terminated, child.info.run_id, "FINISHED")
    except Exception as exc:
        if not store.is_unavailable(exc):
            raise
        run.go_offline(exc)
        run.notes.append(f"{name}: search child runs stopped (the store became unreachable)")
