"""Versions: a tracked run's model becomes a governed version, if it clears its bars.

A version is created with the run's lineage as tags in one call (there is never a version
without its lineage), then its aliases are moved; if an alias move fails, the moves done
and the version itself are taken back, so no alias points at a version that disappears.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.reprs import shown_as_text
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError, RegistryError
from jupyter_mlops.registry.aliases import move_alias, undo_alias
from jupyter_mlops.registry.context import current_user, operation_context, utc_now
from jupyter_mlops.registry.gates import Comparison, Gate, GateFailed, GateResult, compare
from jupyter_mlops.registry.lookup import alias_holder, registry_client
from jupyter_mlops.registry.refs import check_alias, check_model_name, is_lock_model
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.run import TAG_DATA, TAG_MODELS, TAG_NOTEBOOK, TAG_SOURCE_HASH
from jupyter_mlops.tracking.runs.refs import find_run

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

# Run tags copied onto the version, so its lineage is readable without the run.
_LINEAGE_TAGS = (TAG_NOTEBOOK, TAG_SOURCE_HASH, "mlflow.source.git.commit")
# The run's source (its notebook), also given to its logged model.
_SOURCE_TAGS = ("mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit")
_TAG_LIMIT = 4900  # MLflow's tag values hold 5000 characters
TAG_SIGNATURE = "mlops.signature"  # "missing" on a version whose model has no signature
NO_SIGNATURE_WARNING = (
    "the model has no signature: a deployment will not check its inputs (track the cell "
    "that fits it on named training data, or log it with a signature)"
)


@shown_as_text
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
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"Registered {self.name} version {self.version} from run {self.run_id}"]
        lines.extend(f"  warning: {text}" for text in self.warnings)
        if self.aliases:
            lines.append(f"  aliases: {', '.join(self.aliases)}")
        if self.gate:
            lines.append(f"  gate {self.gate.expression!r}: {self.gate.explain()}")
        if self.comparison:
            lines.append(f"  {self.comparison['summary']}")
        lines.append(f"  load: mlflow.pyfunc.load_model('models:/{self.name}/{self.version}')")
        return "\n".join(lines)


@dataclass
class ModelSummary:
    """A registered model with its versions (newest first) and alias map."""

    name: str
    versions: list[dict[str, Any]]
    aliases: dict[str, str]
    problem: str | None = None  # why part of it cannot be used or read here (it is shown)


def run_model_uri(
    run: Run, model: str | None, client: MlflowClient | None = None
) -> tuple[str, str]:
    """``(name in the run, model URI)`` of the model to register (``model``, or the only one).

    A tracked run lists its models in its ``mlops.models`` tag; for a run logged with
    plain MLflow (no tag), ``client`` reads the models MLflow 3 recorded as its outputs.
    """
    models: dict[str, str] = json.loads(run.data.tags.get(TAG_MODELS) or "{}")
    if not models and client is not None:
        models = _output_models(run, client)
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


def _output_models(run: Run, client: MlflowClient) -> dict[str, str]:
    """Name -> URI of the logged models MLflow 3 recorded as ``run``'s outputs (newest wins)."""
    outputs = getattr(getattr(run, "outputs", None), "model_outputs", None) or []
    models: dict[str, str] = {}
    for output in outputs:
        logged = store.call(client.get_logged_model, output.model_id)
        if str(getattr(logged, "status", "")).upper().endswith("READY"):
            models[logged.name] = logged.model_uri
    return models


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
    aliases, gate_obj = _check_request(name, aliases, gate, against, metric)
    ctx = operation_context(context, config)
    client = registry_client(config)
    # What the decision is made against: an alias that moves meanwhile is not overwritten.
    expected = {alias: alias_holder(client, name, alias) for alias in aliases}
    found = find_run(run, notebook=ctx.get("notebook"), config=config)
    model_name, model_uri = run_model_uri(found, model, client)

    gate_result = gate_obj.evaluate(found.data.metrics) if gate_obj else None
    if gate_result is not None and not gate_result.passed:
        raise GateFailed(
            f"Not registered: run {found.info.run_id} fails gate {gate!r}: {gate_result.explain()}",
            gate_result,
        )
    comparison = None
    if against is not None and metric:
        comparison = _beat_holder(found, name, against, metric, min_delta, lower_is_better, config)
        if against in expected:
            expected[against] = comparison.incumbent_version

    tags = _version_tags(found, model_name, gate if gate_result is not None else None)
    warnings = []
    if _signature_missing(model_uri):
        tags[TAG_SIGNATURE] = "missing"
        warnings.append(NO_SIGNATURE_WARNING)
    version = _create_version(client, name, model_uri, found, tags)
    _set_aliases(
        client,
        version,
        aliases,
        expected,
        ctx,
        gate=asdict(gate_result) if gate_result else None,
        comparison=comparison.to_dict() if comparison else None,
    )
    return Registration(
        name,
        str(version.version),
        found.info.run_id,
        model_uri,
        list(aliases),
        gate_result,
        comparison.to_dict() if comparison else None,
        warnings,
    )


def _signature_missing(model_uri: str) -> bool:
    """True if the model at ``model_uri`` was logged without a signature.

    False when its metadata cannot be read: the warning is for a known gap, and the
    registration itself does not depend on it.
    """
    from mlflow.models import get_model_info

    try:
        return get_model_info(model_uri).signature is None
    except Exception:
        return False


def _check_request(
    name: str,
    aliases: Sequence[str],
    gate: str | None,
    against: str | None,
    metric: str | None,
) -> tuple[list[str], Gate | None]:
    """The checked aliases and the parsed gate: malformed input fails before any lookup."""
    check_model_name(name)
    checked = [check_alias(a) for a in aliases]
    gate_obj = Gate(gate) if gate else None
    if against is not None:
        check_alias(against)
        if not metric:
            raise RegistryError("--against needs --metric: which metric must be better?")
    return checked, gate_obj


def _beat_holder(
    run: Run,
    name: str,
    alias: str,
    metric: str,
    min_delta: float,
    lower_is_better: bool | None,
    config: Config,
) -> Comparison:
    """The comparison of ``run`` with ``name@alias``; ``GateFailed`` if it does not win."""
    comparison = compare(
        run,
        name,
        alias,
        metric,
        min_delta=min_delta,
        lower_is_better=lower_is_better,
        config=config,
    )
    if not comparison.passed:
        result = GateResult(f"{metric} vs {name}@{alias}", False, [comparison.to_dict()])
        raise GateFailed(f"Not registered: {comparison.summary}", result)
    return comparison


def _version_tags(run: Run, model_name: str, passed_gate: str | None) -> dict[str, str]:
    """The lineage a new version carries: run, model, who and when, metrics, code, data."""
    tags = {
        "mlops.run_id": run.info.run_id,
        "mlops.model_name_in_run": model_name,
        "mlops.registered_by": current_user(),
        "mlops.registered_at": utc_now(),
        "mlops.metrics": json.dumps(dict(run.data.metrics))[:_TAG_LIMIT],
    }
    for key in _LINEAGE_TAGS:
        if run.data.tags.get(key):
            tags[key] = run.data.tags[key]
    if run.data.tags.get(TAG_DATA):
        tags[TAG_DATA] = run.data.tags[TAG_DATA][:_TAG_LIMIT]
    if passed_gate is not None:
        tags["mlops.gate"] = json.dumps({"expression": passed_gate, "passed": True})
    return tags


def _create_version(
    client: MlflowClient, name: str, model_uri: str, run: Run, tags: dict[str, str]
) -> ModelVersion:
    """A new version of ``name`` (created with the model if it is the first)."""
    from mlflow.exceptions import MlflowException

    try:
        store.call(client.create_registered_model, name)
    except MlflowException as exc:
        if "ALREADY_EXISTS" not in str(exc.error_code):
            raise
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    # Version and tags in one call: there is never a version without its lineage.
    version: ModelVersion = store.call(
        client.create_model_version,
        name,
        model_uri,
        run_id=run.info.run_id,
        tags=tags,
        model_id=model_id,
        await_creation_for=0,
    )
    if model_id:
        source = {k: run.data.tags[k] for k in _SOURCE_TAGS if run.data.tags.get(k)}
        link_logged_model(client, model_id, version, source)
    return version


def link_logged_model(
    client: MlflowClient,
    model_id: str,
    version: ModelVersion,
    source: Mapping[str, str] | None = None,
) -> None:
    """Name ``version`` in its logged model's ``mlflow.modelVersions`` tag, as
    ``mlflow.register_model`` does: the MLflow UI's logged-model page lists its registered
    versions from that tag (``MlflowClient.create_model_version`` alone does not set it).

    ``source``: the run's source tags (its notebook), set on the logged model where MLflow
    wrote the kernel's ``ipykernel_launcher.py``. A logged model the store no longer has
    is skipped: the version itself is complete.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    try:
        logged = store.call(client.get_logged_model, model_id)
        links = json.loads(logged.tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
        entry = {"name": version.name, "version": version.version}
        update = {k: v for k, v in (source or {}).items() if logged.tags.get(k) != v}
        if entry not in links:
            update[MLFLOW_MODEL_VERSIONS] = json.dumps([*links, entry])
        if update:
            store.call(client.set_logged_model_tags, model_id, update)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code):
            raise


def _set_aliases(
    client: MlflowClient,
    version: ModelVersion,
    aliases: Sequence[str],
    expected: Mapping[str, str | None],
    ctx: Mapping[str, Any],
    **extra: Any,
) -> None:
    """Point ``aliases`` at the new version; on any failure undo them and the version."""
    name = version.name
    done: list[str] = []
    try:
        for alias in aliases:
            move_alias(
                client,
                name,
                alias,
                str(version.version),
                "register",
                ctx,
                expected=expected[alias],
                **extra,
            )
            done.append(alias)
    except Exception:
        # No alias may point at a version that is then taken away: undo in reverse.
        for alias in reversed(done):
            undo_alias(client, name, alias)
        store.call(client.delete_model_version, name, version.version)
        raise


def list_models(*, config: Config | None = None, metrics: int = 3) -> list[ModelSummary]:
    """Registered models with their versions, aliases and a few key metrics per version.

    Every model is listed: one this project cannot work with (a name MLflow allows but
    jupyter-mlops refuses, such as ``"my model"``) or whose records cannot all be read has
    a ``problem`` saying so and what to do."""
    client = registry_client(config)
    out = []
    for model in store.call(client.search_registered_models, max_results=1000):
        if is_lock_model(model.name):
            continue
        # Version search results carry no aliases; the registered model maps them.
        aliases = {str(k): str(v) for k, v in (getattr(model, "aliases", {}) or {}).items()}
        problems: list[str] = []
        try:
            check_model_name(model.name)
        except RegistryError:
            problems.append(
                "its name is valid in MLflow but not here (letters, digits, '_', '.' or "
                "'-'): rename it (MlflowClient().rename_registered_model) to register, "
                "promote or serve it with jupyter-mlops"
            )
        versions: Sequence[ModelVersion] = []
        try:
            quoted = model.name.replace("'", "\\'")
            versions = store.call(client.search_model_versions, f"name = '{quoted}'")
        except Exception as exc:  # one model's versions must not hide the other models
            problems.append(f"its versions cannot be read ({str(exc).splitlines()[0][:200]})")
        rows = [_version_row(v, aliases, metrics, problems) for v in _by_number(versions)]
        out.append(ModelSummary(model.name, rows, aliases, "; ".join(problems) or None))
    return out


def _by_number(versions: Sequence[ModelVersion]) -> list[ModelVersion]:
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def _version_row(
    v: ModelVersion, aliases: Mapping[str, str], metrics: int, problems: list[str]
) -> dict[str, Any]:
    """One version's row; a damaged ``mlops.metrics`` tag is left out and noted."""
    try:
        recorded = json.loads(v.tags.get("mlops.metrics") or "{}")
        items = sorted((str(k), float(x)) for k, x in recorded.items())
    except (ValueError, TypeError, AttributeError):
        problems.append(f"version {v.version}: its tag mlops.metrics is damaged (left out)")
        items = []
    return {
        "version": str(v.version),
        "run_id": v.run_id,
        "aliases": sorted(a for a, ver in aliases.items() if ver == str(v.version)),
        "metrics": dict(items[:metrics]),
        "created": v.creation_timestamp,
    }
