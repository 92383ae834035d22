"""The user's own MLflow code inside a tracked cell: it joins the tracked run.

A cell written for plain MLflow (``with mlflow.start_run(): ... mlflow.sklearn.log_model(...)``)
must run unchanged under ``%%track``. MLflow would refuse its ``start_run`` ("Run ... is
already active") and capture would log a second copy of the model it logged. For the
duration of the cell, ``joined()`` hooks MLflow's entry points:

- ``mlflow.start_run()`` returns the tracked run instead of failing (its ``with`` exit and
  ``mlflow.end_run()`` leave the tracked run open: how it ends is the cell's outcome).
  ``nested=True`` (or ``parent_run_id`` of the tracked run) still makes a real child run.
- ``mlflow.models.Model.log``, the one path every flavour's ``log_model`` (and autolog)
  takes, records the model objects the cell logged and what they were logged as, so the
  run card and the ``mlops.models`` tag list them and capture does not log them again.
- ``mlflow.sklearn.log_model`` without a serialization format uses cloudpickle, as
  ``mlflow.sklearn.autolog`` and ``%%track``'s own capture do: MLflow 3's default (skops)
  refuses common estimators such as RandomForest unless told which types to trust.

Every hook is restored when the cell ends, raised or not. Hooks act only when the
tracked run is MLflow's active run in the calling thread; anything else passes through.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jupyter_mlops.client import client
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.run import TAG_MODELS, ModelRecord, fluent_run_stack
from jupyter_mlops.tracking.signatures import signature_text

if TYPE_CHECKING:
    from jupyter_mlops.tracking.run import TrackedRun

_PYFUNC = "python_function"
_WRITES = ("log_param", "log_metric", "log_batch")  # MlflowClient's param/metric writes


@dataclass
class UserModel:
    """A model the cell's own MLflow code logged (``mlflow.<flavour>.log_model`` or autolog)."""

    name: str
    model_uri: str
    run_id: str | None
    model_id: str | None = None
    flavor: str = "unknown"
    signature: str | None = None


@dataclass
class UserLogged:
    """What the cell's own MLflow code did to the tracked run while it ran."""

    run_id: str
    models: list[UserModel] = field(default_factory=list)
    # The objects handed to log_model, held so that their id() stays unique until capture
    # has compared its candidates with them.
    objects: list[Any] = field(default_factory=list, repr=False)
    joined: int = 0  # start_run calls that returned the tracked run
    wrote: bool = False  # the cell logged params or metrics through MLflow's client
    run_name: str | None = None  # start_run(run_name=...) applied to the tracked run
    notes: list[str] = field(default_factory=list)

    def logged_object(self, obj: Any) -> bool:
        """True if the cell's own code logged ``obj`` itself as (part of) a model."""
        return any(obj is seen for seen in self.objects)

    def model_names(self) -> set[str]:
        return {m.name for m in self.models if m.run_id == self.run_id}


def _is_tracked_on_top(run_id: str) -> bool:
    stack = fluent_run_stack()
    return bool(stack) and stack[-1].info.run_id == run_id


@contextlib.contextmanager
def joined(run: TrackedRun, *, rename: bool = True) -> Iterator[UserLogged]:
    """Hook MLflow so the enclosed cell's own MLflow code joins ``run``; yields what it logged.

    ``rename`` lets ``start_run(run_name=...)`` rename the tracked run (``%%track`` passes
    False when the run was named with ``-n``). Child runs the cell left open are ended
    with the cell's outcome, so the tracked run can end after them.
    """
    import mlflow
    import mlflow.tracking.fluent as fluent
    from mlflow.models import Model

    logged = UserLogged(run_id=run.run_id)
    original_start = fluent.start_run
    original_end = fluent.end_run
    original_log = Model.__dict__["log"]  # a classmethod object, restored as it was
    start_signature = inspect.signature(original_start)

    def start_run(*args: Any, **kwargs: Any) -> Any:
        try:
            asked = start_signature.bind(*args, **kwargs).arguments
        except TypeError:
            return original_start(*args, **kwargs)  # MLflow says what is wrong
        if not _is_tracked_on_top(run.run_id):
            return original_start(*args, **kwargs)
        parent = asked.get("parent_run_id")
        if asked.get("nested") or parent == run.run_id:
            asked["nested"] = True  # a child of the tracked run, as MLflow makes it
            return original_start(**asked)
        if asked.get("run_id") not in (None, run.run_id) or parent is not None:
            return original_start(*args, **kwargs)
        return _join(asked)

    def _join(asked: dict[str, Any]) -> Any:
        logged.joined += 1
        tags = {str(k): str(v) for k, v in (asked.get("tags") or {}).items()}
        if asked.get("description"):
            tags["mlflow.note.content"] = str(asked["description"])
        if tags:
            mlflow.set_tags(tags)
            run.tags.update(tags)
        experiment = asked.get("experiment_id")
        if experiment is not None and str(experiment) != run.experiment_id:
            logged.notes.append(
                f"start_run(experiment_id={experiment!r}) joined the tracked run in experiment "
                f"{run.experiment_name!r}"
            )
        name = asked.get("run_name")
        if name and rename:
            mlflow.MlflowClient().update_run(run.run_id, name=str(name))
            logged.run_name = str(name)
        elif name:
            logged.notes.append(
                f"start_run(run_name={name!r}): the run keeps the name given with -n"
            )
        return fluent_run_stack()[-1]

    def end_run(*args: Any, **kwargs: Any) -> None:
        # The tracked run ends with the cell (FINISHED, FAILED or KILLED), not before it.
        if _is_tracked_on_top(run.run_id):
            return
        original_end(*args, **kwargs)

    def log(cls: Any, *args: Any, **kwargs: Any) -> Any:
        info = original_log.__func__(cls, *args, **kwargs)
        run_id = getattr(info, "run_id", None)
        if run_id != run.run_id and run_id not in {r.info.run_id for r in fluent_run_stack()}:
            return info  # another thread's or another run's model (or none): not this cell's
        logged.objects.extend(args)
        logged.objects.extend(kwargs.values())
        flavors = [f for f in (getattr(info, "flavors", None) or {}) if f != _PYFUNC]
        logged.models.append(
            UserModel(
                name=str(getattr(info, "name", None) or getattr(info, "artifact_path", "model")),
                model_uri=str(info.model_uri),
                run_id=run_id,
                model_id=getattr(info, "model_id", None),
                flavor=flavors[0] if flavors else _PYFUNC,
                signature=signature_text(getattr(info, "signature", None)),
            )
        )
        return info

    def noting(write: Any) -> Any:
        # Every fluent log_param/log_metric(s) and autolog write goes through one of these:
        # knowing the cell wrote saves the read of the run after a cell that did not.
        def hooked(*args: Any, **kwargs: Any) -> Any:
            logged.wrote = True
            return write(*args, **kwargs)

        return hooked

    restore: list[tuple[Any, str, Any]] = [
        (mlflow, "start_run", mlflow.start_run),
        (fluent, "start_run", original_start),
        (mlflow, "end_run", mlflow.end_run),
        (fluent, "end_run", original_end),
        (Model, "log", original_log),
        *((mlflow.MlflowClient, w, mlflow.MlflowClient.__dict__[w]) for w in _WRITES),
    ]
    sklearn_hook = _sklearn_hook()
    if sklearn_hook is not None:
        restore.append(sklearn_hook)
    failed = True
    try:
        hooks = {"start_run": start_run, "end_run": end_run, "log": classmethod(log)}
        for owner, attr, original in restore:
            if attr in _WRITES:
                hook = noting(original)
            else:
                hook = hooks.get(attr) or _default_cloudpickle(original)  # sklearn's log_model
            setattr(owner, attr, hook)
        yield logged
        failed = False
    finally:
        for owner, attr, original in reversed(restore):
            setattr(owner, attr, original)
        _end_children(run.run_id, failed, logged)


def _sklearn_hook() -> tuple[Any, str, Any] | None:
    """``(mlflow.sklearn, "log_model", original)`` when scikit-learn is in use, else None."""
    if "sklearn" not in sys.modules:
        return None  # no scikit-learn model can be logged without it being imported
    import mlflow.sklearn

    return mlflow.sklearn, "log_model", mlflow.sklearn.log_model


def _default_cloudpickle(original: Any) -> Any:
    """``original`` (``mlflow.sklearn.log_model``) with cloudpickle when no format is chosen."""
    signature = inspect.signature(original)

    def log_model(*args: Any, **kwargs: Any) -> Any:
        try:
            asked = signature.bind(*args, **kwargs).arguments
        except TypeError:
            return original(*args, **kwargs)
        if asked.get("serialization_format") is None and asked.get("skops_trusted_types") is None:
            kwargs["serialization_format"] = "cloudpickle"
        return original(*args, **kwargs)

    log_model.__doc__ = original.__doc__
    return log_model


def _end_children(run_id: str, failed: bool, logged: UserLogged) -> None:
    """End the child runs the cell started and left open, so the tracked run ends after them."""
    import mlflow

    stack = fluent_run_stack()
    if not any(r.info.run_id == run_id for r in stack):
        return
    while stack and stack[-1].info.run_id != run_id:
        child = stack[-1].info.run_id
        with contextlib.suppress(Exception):
            mlflow.end_run("FAILED" if failed else "FINISHED")
        if stack and stack[-1].info.run_id == child:
            stack.pop()  # the store refused: leave MLflow's stack consistent anyway
        logged.notes.append(f"child run {child} left open by the cell was ended with it")


def adopt(
    run: TrackedRun, user: UserLogged, params: dict[str, str], metrics: dict[str, float]
) -> None:
    """Take what the cell's own MLflow code logged into ``run``, out of ``params``/``metrics``.

    One read of the run finds the params and metrics the cell (or autolog) logged: those
    keys are not logged again by capture (a param with another value would be refused by
    MLflow, a metric would get a second point in its history), and the card shows them.
    The models it logged to the run join the run's models and its ``mlops.models`` tag.
    """
    run.notes.extend(user.notes)
    if user.run_name:
        run.run_name = user.run_name
    remote = None
    if run.offline is None and user.wrote:
        try:
            if user.wrote:
                import mlflow

                mlflow.flush_async_logging()  # what was queued must be read back
            remote = store.call(client(run.config).get_run, run.run_id)
        except Exception as exc:
            if not store.is_unavailable(exc):
                raise
            run.go_offline(exc)
    if remote is not None:
        for key, value in remote.data.params.items():
            if key in params and params.pop(key) != value:
                run.notes.append(f"param {key!r}: kept the value the cell logged ({value!r})")
            run.params.setdefault(key, value)
        for key, number in remote.data.metrics.items():
            metrics.pop(key, None)
            run.metrics.setdefault(key, float(number))
    adopted = False
    for model in user.models:
        if model.run_id != run.run_id:
            run.notes.append(f"model {model.name!r} was logged to child run {model.run_id}")
            continue
        if model.name in run.models:
            run.notes.append(f"model name {model.name!r} logged twice: the last one is listed")
        run.models[model.name] = ModelRecord(
            name=model.name,
            flavor=model.flavor,
            model_uri=model.model_uri,
            model_id=model.model_id,
            signature=model.signature,
            by_user=True,
        )
        adopted = True
    if adopted:
        run.set_tags({TAG_MODELS: json.dumps({k: v.model_uri for k, v in run.models.items()})})
