"""The model registry: tracked models become governed versions in MLflow's Model Registry.

Versions, aliases and tags live in MLflow, so plain MLflow clients and the UI see the same
state. What MLflow lacks, the history of who moved which alias when (and whether a gate
passed), is recorded as registered-model tags, one per event, readable by any client.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import random
import re
import secrets
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.conditions import Condition, ConditionResult
from jupyter_mlops.conditions import ConditionError as GateError
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import ConflictError, NotFoundError, RegistryError
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.run import TAG_DATA, TAG_MODELS, TAG_NOTEBOOK, TAG_SOURCE_HASH

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

HISTORY_PREFIX = "mlops.history."
# Alias moves of one model are serialised by a lock: a registered model of this name that
# exists while a move is under way. Creating a registered model is atomic in every MLflow
# store (a unique name), so it works the same on SQLite, PostgreSQL and behind a server.
LOCK_INFIX = ".mlops-lock."
LOCK_TIMEOUT = 30.0  # seconds to wait for another promotion of the same alias
LOCK_STALE = 120.0  # a lock older than this was left by a process that died mid-move
_CURRENT: Any = object()  # "the holder when the operation started"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
ALIAS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")
# Metrics where smaller is better, for --against comparisons.
LOWER_IS_BETTER = re.compile(r"(loss|error|rmse|mse|mae|mape|logloss)", re.IGNORECASE)


GateResult = ConditionResult


class Gate(Condition):
    """A bar over a run's metrics, e.g. ``accuracy >= 0.9 and f1 > 0.85``."""

    kind = "Gate"


class PromotionConflict(RegistryError, ConflictError):
    """Another promotion moved the alias first; this one changed nothing.

    ``current`` is the version that holds the alias now, ``expected`` the one this
    promotion was decided against. Re-check the new holder, then promote again.
    """

    def __init__(self, message: str, *, expected: str | None, current: str | None) -> None:
        super().__init__(message)
        self.expected = expected
        self.current = current


class GateFailed(RegistryError):
    """The candidate did not meet its bar; nothing was registered or promoted."""

    def __init__(self, message: str, result: GateResult) -> None:
        super().__init__(message)
        self.result = result

    def details(self) -> dict[str, Any]:
        return {
            "reason": "gate",
            "gate": {
                "expression": self.result.expression,
                "passed": self.result.passed,
                "explanation": self.result.explain(),
            },
        }


# -- names ------------------------------------------------------------------------------
def check_model_name(name: str) -> str:
    if not name or not MODEL_NAME.match(name) or LOCK_INFIX in name:
        raise RegistryError(
            f"Invalid model name {name!r}: use letters, digits, '_', '.' or '-' "
            "(it must not contain '/' or '@', which separate versions and aliases)"
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS_NAME.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise RegistryError(
            f"Invalid alias {alias!r}: start with a letter or '_', then letters, digits, "
            "'_' or '-'; 'latest' and 'v<number>' are reserved by MLflow"
        )
    return alias


@dataclass(frozen=True)
class ModelRef:
    """``name``, ``name/version`` or ``name@alias`` (optionally with ``models:/``)."""

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        raw = text.removeprefix("models:/").strip()
        if "@" in raw:
            name, alias = raw.split("@", 1)
            return cls(check_model_name(name), alias=check_alias(alias))
        if "/" in raw:
            name, version = raw.split("/", 1)
            if not version.isdigit():
                raise RegistryError(f"Invalid version {version!r} in {text!r}: use name/3")
            return cls(check_model_name(name), version=version)
        return cls(check_model_name(raw))

    @property
    def uri(self) -> str:
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        if self.version:
            return f"models:/{self.name}/{self.version}"
        return f"models:/{self.name}"

    def __str__(self) -> str:
        return self.uri.removeprefix("models:/")


# -- events -----------------------------------------------------------------------------
@dataclass
class AliasEvent:
    """One alias change, as recorded in the registered model's tags."""

    model: str
    alias: str
    version: str | None
    previous: str | None
    action: str  # register | promote | rollback
    time: str
    user: str
    notebook: str | None = None
    git_commit: str | None = None
    gate: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        # Unique without coordination: sortable time plus randomness.
        stamp = datetime.fromisoformat(self.time).strftime("%Y%m%dT%H%M%S%f")
        return f"{HISTORY_PREFIX}{stamp}.{secrets.token_hex(3)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _context(context: Mapping[str, Any] | None, config: Config) -> dict[str, Any]:
    from jupyter_mlops.tracking.environment import git_state, notebook_path

    ctx = dict(context or {})
    ctx.setdefault("notebook", notebook_path(None, config.root))
    if "git_commit" not in ctx:
        git = git_state(config.root)
        ctx["git_commit"] = git.commit if git else None
    return ctx


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


# -- results ----------------------------------------------------------------------------
@dataclass
class Registration:
    """A newly registered version (or the reason it was refused)."""

    name: str
    version: str
    run_id: str
    model_uri: str
    aliases: list[str]
    gate: GateResult | None = None
    comparison: dict[str, Any] | None = None

    def __str__(self) -> str:
        lines = [f"Registered {self.name} version {self.version} from run {self.run_id}"]
        if self.aliases:
            lines.append(f"  aliases: {', '.join(self.aliases)}")
        if self.gate:
            lines.append(f"  gate {self.gate.expression!r}: {self.gate.explain()}")
        if self.comparison:
            lines.append(f"  {self.comparison['summary']}")
        lines.append(f"  load: mlflow.pyfunc.load_model('models:/{self.name}/{self.version}')")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return "<pre>" + escape(str(self)) + "</pre>"


@dataclass
class Comparison:
    """A candidate's metric against the current alias holder's."""

    metric: str
    candidate: float
    incumbent: float | None
    incumbent_version: str | None
    min_delta: float
    lower_is_better: bool
    passed: bool

    @property
    def summary(self) -> str:
        if self.incumbent is None:
            return f"no current holder to compare {self.metric} with: candidate accepted"
        lower = ", lower is better" if self.lower_is_better else ""
        delta = self.candidate - self.incumbent
        gain = -delta if self.lower_is_better else delta
        verb = "beats" if gain > 0 else "does not beat" if gain < 0 else "ties"
        return (
            f"{self.metric}: candidate {self.candidate:.6g} {verb} version "
            f"{self.incumbent_version} ({self.incumbent:.6g}) by {gain:+.6g} "
            f"(required: {self.min_delta:+.6g}{lower})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary}


# -- operations -------------------------------------------------------------------------
def _client(config: Config | None) -> Any:
    return store.client(config or load_config())


def find_run(
    run: str = "last", *, notebook: str | None = None, config: Config | None = None
) -> Run:
    """The run to register: ``last`` (newest finished run with a model), an id or a prefix."""
    from jupyter_mlops.tracking.environment import notebook_path
    from jupyter_mlops.tracking.lineage import get_run

    config = config or load_config()
    if run != "last":
        return get_run(run, config)
    client = _client(config)
    notebook = notebook or notebook_path(None, config.root)
    exps = [e.experiment_id for e in store.call(client.search_experiments)]
    flt = "attributes.status = 'FINISHED'"
    if notebook:
        flt += f" and tags.`{TAG_NOTEBOOK}` = '{notebook}'"
    runs = (
        store.call(
            client.search_runs,
            exps,
            filter_string=flt,
            max_results=200,
            order_by=["attributes.start_time DESC"],
        )
        if exps
        else []
    )
    for candidate in runs:
        if candidate.data.tags.get(TAG_MODELS):
            return candidate
    where = f" of notebook {notebook}" if notebook else ""
    raise NotFoundError(
        f"No finished run with a model{where}. Train one under %%track first, or pass a run id."
    )


def _run_model_uri(run: Run, model: str | None) -> tuple[str, str]:
    models = json.loads(run.data.tags.get(TAG_MODELS) or "{}")
    if not models:
        raise NotFoundError(
            f"Run {run.info.run_id} has no logged model (was it tracked with --no-model, or "
            "did the model fail to serialise?)"
        )
    if model:
        if model not in models:
            raise NotFoundError(f"Run {run.info.run_id} has no model {model!r}: {sorted(models)}")
        return model, models[model]
    if len(models) > 1:
        raise RegistryError(
            f"Run {run.info.run_id} logged several models {sorted(models)}: pick one with "
            "--model NAME"
        )
    return next(iter(models.items()))


def _version(client: Any, ref: ModelRef) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return store.call(client.get_model_version_by_alias, ref.name, ref.alias)
        if ref.version:
            return store.call(client.get_model_version, ref.name, ref.version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise
    versions = store.call(client.search_model_versions, f"name = '{ref.name}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


def get_version(ref: str | ModelRef, config: Config | None = None) -> ModelVersion:
    """The model version ``ref`` names (an alias, a number, or the newest)."""
    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    client = _client(config)
    version = _version(client, ref)
    if version is None:
        known = [
            m.name for m in store.call(client.search_registered_models) if not is_lock_model(m.name)
        ]
        hint = f"registered models: {', '.join(known)}" if known else "no model is registered yet"
        raise NotFoundError(f"No model version {ref} ({hint})")
    return version


def compare(
    run: Run,
    name: str,
    alias: str,
    metric: str,
    *,
    min_delta: float = 0.0,
    lower_is_better: bool | None = None,
    config: Config | None = None,
) -> Comparison:
    """Compare ``run``'s ``metric`` with the run behind ``name@alias``."""
    client = _client(config)
    if metric not in run.data.metrics:
        raise GateError(
            f"Run {run.info.run_id} has no metric {metric!r} "
            f"(it has: {', '.join(sorted(run.data.metrics)) or 'none'})"
        )
    lower = bool(LOWER_IS_BETTER.search(metric)) if lower_is_better is None else lower_is_better
    incumbent = _version(client, ModelRef(name, alias=alias))
    candidate = run.data.metrics[metric]
    if incumbent is None or not incumbent.run_id:
        return Comparison(metric, candidate, None, None, min_delta, lower, True)
    inc_run = store.call(client.get_run, incumbent.run_id)
    if metric not in inc_run.data.metrics:
        raise GateError(
            f"The current {name}@{alias} (version {incumbent.version}) has no metric {metric!r}"
        )
    inc_value = inc_run.data.metrics[metric]
    gain = (inc_value - candidate) if lower else (candidate - inc_value)
    return Comparison(
        metric, candidate, inc_value, str(incumbent.version), min_delta, lower, gain >= min_delta
    )


def register(
    run: str = "last",
    *,
    name: str,
    aliases: Sequence[str] = (),
    gate: str | None = None,
    against: str | None = None,
    metric: str | None = None,
    min_delta: float = 0.0,
    lower_is_better: bool | None = None,
    model: str | None = None,
    context: Mapping[str, Any] | None = None,
    config: Config | None = None,
) -> Registration:
    """Register a tracked run's model as a new version of ``name``, if it meets its bars.

    ``gate`` is a bar over the run's own metrics; ``against`` an alias whose holder the
    candidate must beat on ``metric`` by ``min_delta``. A refused candidate raises
    ``GateFailed`` and registers nothing. The new version carries the run's lineage as
    tags; aliases are set after it exists and every change is recorded in the history.
    """
    config = config or load_config()
    check_model_name(name)
    aliases = [check_alias(a) for a in aliases]
    gate_obj = Gate(gate) if gate else None  # a malformed gate fails before any lookup
    if against is not None:
        check_alias(against)
        if not metric:
            raise RegistryError("--against needs --metric: which metric must be better?")
    ctx = _context(context, config)
    client = _client(config)
    # What the decision is made against: an alias that moves meanwhile is not overwritten.
    expected = {alias: _holder(client, name, alias) for alias in aliases}
    found = find_run(run, notebook=ctx.get("notebook"), config=config)
    model_name, model_uri = _run_model_uri(found, model)

    gate_result = gate_obj.evaluate(found.data.metrics) if gate_obj else None
    if gate_result is not None and not gate_result.passed:
        raise GateFailed(
            f"Not registered: run {found.info.run_id} fails gate {gate!r}: {gate_result.explain()}",
            gate_result,
        )
    comparison = None
    if against is not None and metric:
        comparison = compare(
            found,
            name,
            against,
            metric,
            min_delta=min_delta,
            lower_is_better=lower_is_better,
            config=config,
        )
        if not comparison.passed:
            result = GateResult(f"{metric} vs {name}@{against}", False, [comparison.to_dict()])
            raise GateFailed(f"Not registered: {comparison.summary}", result)
        if against in expected:
            expected[against] = comparison.incumbent_version

    from mlflow.exceptions import MlflowException

    try:
        store.call(client.create_registered_model, name)
    except MlflowException as exc:
        if "ALREADY_EXISTS" not in str(exc.error_code):
            raise
    tags = {
        "mlops.run_id": found.info.run_id,
        "mlops.model_name_in_run": model_name,
        "mlops.registered_by": _user(),
        "mlops.registered_at": _now(),
        "mlops.metrics": json.dumps(dict(found.data.metrics))[:4900],
    }
    for key in (TAG_NOTEBOOK, TAG_SOURCE_HASH, "mlflow.source.git.commit"):
        if found.data.tags.get(key):
            tags[key] = found.data.tags[key]
    if found.data.tags.get(TAG_DATA):
        tags[TAG_DATA] = found.data.tags[TAG_DATA][:4900]
    if gate_result is not None:
        tags["mlops.gate"] = json.dumps({"expression": gate, "passed": True})
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    # Version and tags in one call: there is never a version without its lineage.
    version = store.call(
        client.create_model_version,
        name,
        model_uri,
        run_id=found.info.run_id,
        tags=tags,
        model_id=model_id,
        await_creation_for=0,
    )
    done: list[str] = []
    try:
        for alias in aliases:
            _move_alias(
                client,
                name,
                alias,
                str(version.version),
                "register",
                ctx,
                expected=expected[alias],
                gate=asdict(gate_result) if gate_result else None,
                comparison=comparison.to_dict() if comparison else None,
            )
            done.append(alias)
    except Exception:
        # No alias may point at a version that is then taken away: undo in reverse.
        for alias in reversed(done):
            _undo_alias(client, name, alias)
        store.call(client.delete_model_version, name, version.version)
        raise
    return Registration(
        name,
        str(version.version),
        found.info.run_id,
        model_uri,
        list(aliases),
        gate_result,
        comparison.to_dict() if comparison else None,
    )


def is_lock_model(name: str) -> bool:
    """True for the transient registered models that serialise alias moves."""
    return LOCK_INFIX in name


def _lock_name(name: str, alias: str) -> str:
    return f"{name}{LOCK_INFIX}{alias}"


@contextlib.contextmanager
def _alias_lock(client: Any, name: str, alias: str) -> Iterator[None]:
    """Hold the lock on ``name@alias`` for one move (waits for another mover's release)."""
    from mlflow.exceptions import MlflowException

    lock = _lock_name(name, alias)
    owner = f"{_user()}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    deadline = time.monotonic() + LOCK_TIMEOUT
    delay = 0.02
    while True:
        try:
            store.call(
                client.create_registered_model,
                lock,
                tags={"mlops.lock.owner": owner, "mlops.lock.time": f"{time.time():.3f}"},
                description=f"Transient: a jupyter-mlops move of {name}@{alias} is under way.",
            )
            break
        except MlflowException as exc:
            # DOES_NOT_EXIST: the store created it and lost it to a concurrent delete
            # before adding its tags; try again like any contended lock.
            if not any(c in str(exc.error_code) for c in ("ALREADY_EXISTS", "DOES_NOT_EXIST")):
                raise
        held = _lock_holder(client, lock)
        if held is not None and time.time() - held[1] > LOCK_STALE:
            # Its owner died between taking and releasing it; delete only that lock.
            if _lock_holder(client, lock) == held:
                with contextlib.suppress(MlflowException):
                    store.call(client.delete_registered_model, lock)
            continue
        if time.monotonic() > deadline:
            who = held[0] if held else "another process"
            raise PromotionConflict(
                f"{name}@{alias} is being moved by {who} and was not released within "
                f"{LOCK_TIMEOUT:.0f} s; try again (a lock older than {LOCK_STALE:.0f} s is "
                f"cleared automatically, or delete the registered model {lock!r}).",
                expected=None,
                current=None,
            )
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.5)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            store.call(client.delete_registered_model, lock)


def _lock_holder(client: Any, lock: str) -> tuple[str, float] | None:
    from mlflow.exceptions import MlflowException

    try:
        model = store.call(client.get_registered_model, lock)
    except MlflowException:
        return None
    # Its tags may not be visible yet (a lock being created right now): then its creation
    # time on the store says how old it is. Never take a lock of unknown age for stale.
    owner = model.tags.get("mlops.lock.owner", "?")
    try:
        return owner, float(model.tags["mlops.lock.time"])
    except (KeyError, ValueError):
        created = getattr(model, "creation_timestamp", None)
        return owner, created / 1000 if created else time.time()


def _holder(client: Any, name: str, alias: str) -> str | None:
    current = _version(client, ModelRef(name, alias=alias))
    return str(current.version) if current else None


def _move_alias(
    client: Any,
    name: str,
    alias: str,
    version: str | None,
    action: str,
    ctx: Mapping[str, Any],
    *,
    expected: Any = _CURRENT,
    **extra: Any,
) -> AliasEvent:
    """Move ``alias`` to ``version`` (None: remove it) if it still points at ``expected``.

    Moves of one alias are serialised across processes and machines, and the holder is
    checked under the lock: a promotion decided against version 3 never overwrites a
    version 4 that another user promoted meanwhile (``PromotionConflict`` instead).
    """
    with _alias_lock(client, name, alias):
        previous = _holder(client, name, alias)
        if expected is not _CURRENT and previous != expected:
            last = next(
                (e for e in reversed(history(name, client=client)) if e.alias == alias), None
            )
            by = f" by {last.user} at {last.time[:19].replace('T', ' ')} UTC" if last else ""
            raise PromotionConflict(
                f"{name}@{alias} moved from version {expected or '(none)'} to "
                f"{previous or '(none)'}{by} while this {action} was decided; nothing was "
                f"changed. Check version {previous} and {action} again if it is still right.",
                expected=expected,
                current=previous,
            )
        event = AliasEvent(
            model=name,
            alias=alias,
            version=version,
            previous=previous,
            action=action,
            time=_now(),
            user=_user(),
            notebook=ctx.get("notebook"),
            git_commit=ctx.get("git_commit"),
            **extra,
        )
        if version is None:
            store.call(client.delete_registered_model_alias, name, alias)
        else:
            store.call(client.set_registered_model_alias, name, alias, version)
            store.call(
                client.set_model_version_tag, name, version, f"mlops.{action}.{alias}", event.time
            )
        store.call(client.set_registered_model_tag, name, event.key, json.dumps(asdict(event)))
    return event


def _undo_alias(client: Any, name: str, alias: str) -> None:
    events = [e for e in history(name, client=client) if e.alias == alias]
    if not events:
        return
    last = events[-1]
    if last.previous:
        store.call(client.set_registered_model_alias, name, alias, last.previous)
    else:
        store.call(client.delete_registered_model_alias, name, alias)
    tags = store.call(client.get_registered_model, name).tags
    for key, value in tags.items():
        if key.startswith(HISTORY_PREFIX) and json.loads(value) == asdict(last):
            store.call(client.delete_registered_model_tag, name, key)


def history(name: str, *, client: Any = None, config: Config | None = None) -> list[AliasEvent]:
    """Every recorded alias change of model ``name``, oldest first."""
    client = client or _client(config)
    check_model_name(name)
    from mlflow.exceptions import MlflowException

    try:
        model = store.call(client.get_registered_model, name)
    except MlflowException:
        raise NotFoundError(f"No registered model {name!r}") from None
    events = []
    for key in sorted(k for k in model.tags if k.startswith(HISTORY_PREFIX)):
        data = json.loads(model.tags[key])
        events.append(AliasEvent(**data))
    events.sort(key=lambda e: e.time)
    return events


def _holders(events: Sequence[AliasEvent], alias: str) -> list[str]:
    """The stack of versions that held ``alias``: promotions push, rollbacks pop."""
    stack: list[str] = []
    for event in events:
        if event.alias != alias:
            continue
        if event.action == "rollback":
            if stack:
                stack.pop()
        elif event.version is not None:
            stack.append(event.version)
    return stack


def expectation(text: str | None) -> dict[str, Any]:
    """``--expect VERSION`` as ``promote``'s keyword: ``none`` means the alias must be
    unset; no text means "the holder when the call starts" (the default)."""
    if text is None:
        return {}
    text = text.strip().strip("'\"")
    return {"expected": None if text.lower() == "none" else text}


def promote(
    ref: str,
    alias: str,
    *,
    gate: str | None = None,
    expected: str | Any | None = _CURRENT,
    force: bool = False,
    context: Mapping[str, Any] | None = None,
    config: Config | None = None,
) -> AliasEvent:
    """Point ``alias`` at the version ``ref`` names (``name/4`` or ``name@challenger``).

    ``expected`` is the version the decision was made against (None: no holder); by
    default the holder when the call starts. If another promotion moved the alias first,
    ``PromotionConflict`` is raised and nothing changes; ``force=True`` overwrites.
    """
    config = config or load_config()
    check_alias(alias)
    parsed = ModelRef.parse(ref)
    if not parsed.version and not parsed.alias:
        raise RegistryError(f"Say which version to promote: {parsed.name}/<version>")
    client = _client(config)
    if expected is _CURRENT and not force:
        expected = _holder(client, parsed.name, alias)
    version = get_version(parsed, config)
    gate_info = None
    if gate:
        run = store.call(client.get_run, version.run_id)
        result = Gate(gate).evaluate(run.data.metrics)
        if not result.passed:
            raise GateFailed(
                f"Not promoted: version {version.version} fails gate {gate!r}: {result.explain()}",
                result,
            )
        gate_info = asdict(result)
    return _move_alias(
        client,
        parsed.name,
        alias,
        str(version.version),
        "promote",
        _context(context, config),
        expected=_CURRENT if force else expected,
        gate=gate_info,
    )


def rollback(
    name: str,
    alias: str,
    *,
    context: Mapping[str, Any] | None = None,
    config: Config | None = None,
) -> AliasEvent:
    """Move ``alias`` back to the version that held it before the current one."""
    config = config or load_config()
    check_model_name(name)
    check_alias(alias)
    client = _client(config)
    current = _holder(client, name, alias)
    stack = _holders(history(name, client=client), alias)
    if len(stack) < 2:
        raise RegistryError(
            f"Nothing to roll back to: {name}@{alias} has no earlier holder in its history"
        )
    target = stack[-2]
    return _move_alias(
        client, name, alias, target, "rollback", _context(context, config), expected=current
    )


@dataclass
class ModelSummary:
    name: str
    versions: list[dict[str, Any]]
    aliases: dict[str, str]


def list_models(*, config: Config | None = None, metrics: int = 3) -> list[ModelSummary]:
    """Registered models with their versions, aliases and a few key metrics per version."""
    client = _client(config)
    out = []
    for model in store.call(client.search_registered_models, max_results=1000):
        if is_lock_model(model.name):
            continue
        versions = store.call(client.search_model_versions, f"name = '{model.name}'")
        # Version search results carry no aliases; the registered model maps them.
        aliases = {str(k): str(v) for k, v in (getattr(model, "aliases", {}) or {}).items()}
        rows = []
        for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
            recorded = json.loads(v.tags.get("mlops.metrics", "{}"))
            rows.append(
                {
                    "version": str(v.version),
                    "run_id": v.run_id,
                    "aliases": sorted(a for a, ver in aliases.items() if ver == str(v.version)),
                    "metrics": dict(sorted(recorded.items())[:metrics]),
                    "created": v.creation_timestamp,
                }
            )
        out.append(ModelSummary(model.name, rows, aliases))
    return out


# -- lineage ----------------------------------------------------------------------------
@dataclass
class Lineage:
    """Model version -> run -> notebook, cell source, git commit, environment, data."""

    model: str
    version: str
    aliases: list[str]
    run_id: str
    experiment_id: str
    run_status: str
    notebook: str | None
    git_commit: str | None
    git_dirty: bool | None
    source_sha256: str | None
    cell_source: str | None
    environment: dict[str, Any]
    data: list[Any]  # DataSnapshot
    datasets: list[dict[str, Any]]
    config: Config = field(repr=False)

    def restore_data(self, path: str | None, dest: str, *, overwrite: bool = False) -> Any:
        """Restore the training data ``path`` (the only one if None) from DVC to ``dest``."""
        from jupyter_mlops.tracking.lineage import restore_data

        if path is None:
            if len(self.data) != 1:
                known = ", ".join(s.path for s in self.data) or "none"
                raise RegistryError(f"Say which data path to restore (recorded: {known})")
            path = self.data[0].path
        return restore_data(self.run_id, path, dest, overwrite=overwrite, config=self.config)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("config")
        out["data"] = [s.to_dict() for s in self.data]
        return out

    def __str__(self) -> str:
        aliases = f" ({', '.join('@' + a for a in self.aliases)})" if self.aliases else ""
        lines = [
            f"{self.model} version {self.version}{aliases}",
            f"  <- run {self.run_id} ({self.run_status}, experiment {self.experiment_id})",
            f"  <- notebook {self.notebook or 'unknown'}"
            + (f", cell sha256 {self.source_sha256[:12]}" if self.source_sha256 else ""),
        ]
        if self.git_commit:
            lines.append(f"  <- git {self.git_commit[:10]}{' (dirty)' if self.git_dirty else ''}")
        if self.environment:
            pkgs = self.environment.get("packages", {})
            lines.append(
                f"  <- python {self.environment.get('python')}, "
                + ", ".join(f"{k}=={v}" for k, v in sorted(pkgs.items())[:6])
            )
        for snap in self.data:
            lines.append(f"  <- data {snap.path} md5={snap.md5} ({snap.size} bytes)")
        for ds in self.datasets:
            lines.append(f"  <- dataset {ds['name']} digest={ds['digest']}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return "<pre>" + escape(str(self)) + "</pre>"


def lineage(ref: str, *, config: Config | None = None) -> Lineage:
    """Trace a registered model version back to the code, environment and data behind it."""
    import mlflow

    from jupyter_mlops.tracking.lineage import run_data

    config = config or load_config()
    client = _client(config)
    version = get_version(ref, config)
    if not version.run_id:
        raise NotFoundError(f"{version.name}/{version.version} was not registered from a run")
    run = store.call(client.get_run, version.run_id)
    tags = run.data.tags

    def artifact_text(path: str) -> str | None:
        try:
            with store.quiet_mlflow():
                local = mlflow.artifacts.download_artifacts(
                    run_id=run.info.run_id, artifact_path=path, tracking_uri=config.tracking_uri
                )
        except Exception:  # older runs or runs not made by %%track
            return None
        return Path(local).read_text(encoding="utf-8")

    env_text = artifact_text("mlops/environment.json")
    datasets = [
        {
            "name": d.dataset.name,
            "digest": d.dataset.digest,
            "tags": {t.key: t.value for t in d.tags},
        }
        for d in (run.inputs.dataset_inputs if run.inputs else [])
    ]
    dirty = tags.get("mlops.git.dirty")
    return Lineage(
        model=version.name,
        version=str(version.version),
        aliases=list(getattr(version, "aliases", []) or []),
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        run_status=run.info.status,
        notebook=tags.get(TAG_NOTEBOOK) or tags.get("mlflow.source.name"),
        git_commit=tags.get("mlflow.source.git.commit"),
        git_dirty=None if dirty is None else dirty == "true",
        source_sha256=tags.get(TAG_SOURCE_HASH),
        cell_source=artifact_text("mlops/cell.py"),
        environment=json.loads(env_text) if env_text else {},
        data=run_data(run.info.run_id, config),
        datasets=datasets,
        config=config,
    )
