"""Opening and ending runs: ``track()``, the experiment a run goes to, the tags it starts with.

``track()`` mirrors ``mlflow.start_run()``: a context manager that ends the run FINISHED
or FAILED. While it is open the run is MLflow's active run, so the user's own
``mlflow.log_*`` calls land in it too. ``%%track``, papermill steps and scripts all go
through here. When the store cannot be reached the work still runs and its record is
buffered (``tracking/buffer.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from jupyter_mlops import values
from jupyter_mlops.client import client, quiet_mlflow, retry_busy
from jupyter_mlops.config import Config, load_config, notebook_project_start
from jupyter_mlops.tracking import buffer, store
from jupyter_mlops.tracking.environment import capture_environment, git_state
from jupyter_mlops.tracking.notebook import NotebookSource, find_notebook, tag_logged_models
from jupyter_mlops.tracking.run import PENDING_PREFIX, TAG_NOTEBOOK, TrackedRun, fluent_run_stack

# A reproduction's kernel runs with this variable set to the original run's id, so the run it
# records says what it reproduces. The same strings as ``reproduce.result`` (a layer above,
# which tracking cannot import); a test keeps them equal.
ENV_REPRODUCES = "JUPYTER_MLOPS_REPRODUCES"
TAG_REPRODUCES = "mlops.reproduces"
TAG_TRACK_ARGS = "mlops.track.args"  # the %%track line as typed


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
            return str(latest[0]["experiment"])
        return Path(notebook).stem
    return "Default"


def latest_runs(
    *, config: Config | None = None, notebook: str | None = None, limit: int = 10
) -> list[dict[str, Any]]:
    """The newest runs (of one notebook, if given), as plain dicts for display."""
    limit = values.runs_limit(limit)
    config = config or load_config()
    mlflow_client = client(config)
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
    source: NotebookSource | None = None,
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
    reproduces = os.environ.get(ENV_REPRODUCES, "").strip()
    if reproduces:
        run_tags[TAG_REPRODUCES] = reproduces
    if source is not None:
        run_tags.update(source.tags(config.root))
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
    search_runs: bool = False,
    config: Config | None = None,
    track_args: str | None = None,
) -> Iterator[TrackedRun]:
    """Record the enclosed work as an MLflow run and end it FINISHED or FAILED.

    ``data`` paths are checked before anything is written and snapshotted with DVC, so
    the run records exactly what the work read. If the body raises, the run is marked
    FAILED with the traceback as an artifact, what was logged is kept, and the exception
    propagates. ``namespace`` (e.g. a notebook's globals) is used to find the notebook
    and the package versions in use. ``search_runs`` logs one child run per candidate of
    each hyperparameter search logged as a model. ``track_args`` is the ``%%track`` line
    the run comes from, as typed (tag ``mlops.track.args``: a reproduction replays it).
    """
    import mlflow

    if experiment is not None:  # "" would fall back to MLflow's Default (and ./mlruns)
        values.experiment_name(experiment)
    tags = values.user_tags(tags)  # mlops.* and mlflow.* are the project's own
    namespace = namespace if namespace is not None else {}
    # The notebook first: its folder finds the project when the kernel runs elsewhere.
    source = None if notebook else find_notebook(namespace)
    config = config or load_config(notebook_project_start(source.local if source else None))
    data = list(data)
    data_paths = []
    if data:
        import jupyter_mlops.data as data_mod

        data_paths = data_mod.resolve_paths(data, config.root)  # fail before any write
    notebook = notebook or (source.relative(config.root) if source else None)
    client(config)  # also points MLflow's fluent API at the project's store
    run_tags, env, git = _run_tags(config, notebook, namespace, tags, source)
    if track_args is not None:
        run_tags[TAG_TRACK_ARGS] = track_args
    active = mlflow.active_run()
    try:
        down = store.still_unavailable(config.tracking_uri)
        if down is not None:
            raise ConnectionError(down)
        experiment_name = resolve_experiment(experiment, config, notebook)

        def start(cached: bool) -> Any:
            experiment_id = store.ensure_experiment(experiment_name, config, cached=cached)
            with quiet_mlflow():
                return retry_busy(
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
        search_runs=search_runs,
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
        if source is not None and source.parameters:
            run.log_params(source.parameter_values())  # papermill's injected cell
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
        if run.offline is None:  # the UI's model page names the notebook, not the kernel
            tag_logged_models(run.run_id, run.experiment_id, run_tags, client(config))
        _end_run(run, status)


def _end_run(run: TrackedRun, status: str) -> None:
    import mlflow

    run.status, run.ended = status, time.time()
    active = mlflow.active_run()
    if run.offline is None:
        try:
            if active is not None and active.info.run_id == run.run_id:
                with quiet_mlflow():
                    retry_busy(lambda: mlflow.end_run(status), what="end run")
            else:
                store.call(client(run.config).set_terminated, run.run_id, status)
            return
        except Exception as exc:
            if not store.is_unavailable(exc):
                raise
            run.go_offline(exc)
    # The store is unreachable: leave MLflow's fluent stack without asking the server (the
    # run there stays RUNNING, never FINISHED), and keep the whole record for a retry.
    stack = fluent_run_stack()
    if stack and stack[-1].info.run_id == run.run_id:
        stack.pop()
    buffer.save(run, status)
