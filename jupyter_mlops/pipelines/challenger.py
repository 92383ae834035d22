"""Challenger against champion: offer a retrained model, and promote it only if it wins.

The model of the pipeline's result run is registered as ``challenger`` behind a gate.
Same holdout: a result run that logs ``champion_<metric>`` beside ``<metric>`` (the
pipeline was given the champion's model URI as its ``champion`` parameter and scored
both on this run's holdout) is gated on ``<metric> > champion_<metric>``; otherwise the
registry compares with the metric recorded on the champion's own run. A winner becomes
``champion``, or first serves a share of the deployment's traffic as a canary.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from jupyter_mlops.client import client
from jupyter_mlops.config import Config
from jupyter_mlops.errors import MlopsError, NotFoundError, RegistryError
from jupyter_mlops.pipelines.decisions import RetrainDecision
from jupyter_mlops.pipelines.mlflow_runs import call
from jupyter_mlops.pipelines.records import PipelineRun
from jupyter_mlops.pipelines.spec import Pipeline

if TYPE_CHECKING:
    from mlflow.entities import Run

CHAMPION, CHALLENGER = "champion", "challenger"


def champion_exists(model: str, config: Config) -> bool:
    """Whether ``model`` has a version with the ``champion`` alias."""
    import jupyter_mlops.registry as registry

    try:
        registry.get_version(f"{model}@{CHAMPION}", config)
    except (NotFoundError, RegistryError):
        return False
    return True


def result_run(spec: Pipeline, record: PipelineRun, config: Config) -> Run | None:
    """The MLflow run of the step whose model is offered: ``register:`` or the last with one."""
    from jupyter_mlops.tracking.run import TAG_MODELS

    mlflow = client(config)
    names = [spec.register] if spec.register else list(reversed(record.steps))
    for name in names:
        step = record.steps.get(name)
        if step is None or not step.mlflow_run_id:
            continue
        run = call(mlflow.get_run, step.mlflow_run_id)
        if run.data.tags.get(TAG_MODELS):
            return run
    return None


def offer(
    decision: RetrainDecision,
    spec: Pipeline,
    record: PipelineRun,
    *,
    canary_weight: float | None,
    config: Config,
) -> None:
    """Offer the model of a successful pipeline run; the outcome is written to ``decision``."""
    source = result_run(spec, record, config)
    if source is None:
        decision.action = "no-model"
        decision.reason += "; no step of the pipeline logged a model (use %%track in a step)"
        return
    version = _register_challenger(decision, source, config)
    if version is None:
        return
    ref = f"{decision.model}/{version}"
    if canary_weight is not None:
        _start_canary(decision, ref, canary_weight, config)
    else:
        _promote(decision, ref, config)


def _register_challenger(decision: RetrainDecision, source: Run, config: Config) -> str | None:
    """Register ``source``'s model as challenger if it beats champion; its version or None."""
    import jupyter_mlops.registry as registry

    decision.source_run = source.info.run_id
    name, model = decision.metric, decision.model
    assert name is not None
    lower = bool(registry.LOWER_IS_BETTER.search(name))
    metrics = source.data.metrics
    decision.candidate = metrics.get(name)
    champion_metric = f"champion_{name}"
    gate = against = None
    if champion_metric in metrics:
        decision.same_holdout = True
        decision.incumbent = metrics[champion_metric]
        gate = f"{name} {'<' if lower else '>'} {champion_metric}"
        with contextlib.suppress(MlopsError):
            decision.incumbent_version = str(
                registry.get_version(f"{model}@{CHAMPION}", config).version
            )
    else:
        against = CHAMPION
    try:
        registration = registry.register(
            source.info.run_id,
            name=model,
            aliases=[CHALLENGER],
            gate=gate,
            against=against,
            metric=name if against else None,
            context=_context(decision),
            config=config,
        )
    except registry.GateFailed as exc:
        decision.action = "kept-champion"
        decision.reason += f"; challenger lost: {exc}"
        for check in exc.result.checks:
            if check.get("incumbent") is not None:
                decision.incumbent = check["incumbent"]
                decision.incumbent_version = check.get("incumbent_version")
        return None
    decision.version = registration.version
    if registration.comparison:
        decision.incumbent = registration.comparison.get("incumbent")
        decision.incumbent_version = registration.comparison.get("incumbent_version")
    return str(registration.version)


def _start_canary(decision: RetrainDecision, ref: str, weight: float, config: Config) -> None:
    import jupyter_mlops.serving as serving

    deployment = decision.deployment
    assert deployment is not None
    serving.canary(deployment, ref, weight, config=config)
    decision.action = "canary"
    decision.canary = {"deployment": deployment, "target": ref, "weight": weight}
    decision.reason += (
        f"; challenger won, serving {weight:g}% of {deployment!r} as a canary "
        f"(finish with serving.promote({deployment!r}) and "
        f"registry.promote({ref!r}, 'champion'))"
    )


def _promote(decision: RetrainDecision, ref: str, config: Config) -> None:
    import jupyter_mlops.registry as registry

    try:
        # Only over the champion it was evaluated against: a champion promoted by
        # someone else meanwhile is not overwritten.
        registry.promote(
            ref,
            CHAMPION,
            expected=decision.incumbent_version,
            context=_context(decision),
            config=config,
        )
    except registry.PromotionConflict as exc:
        decision.action = "lost-race"
        decision.reason += f"; challenger won but was not promoted: {exc}"
        return
    decision.action, decision.promoted = "promoted", True
    decision.reason += f"; challenger won and is now {decision.model}@{CHAMPION} (version {ref})"


def _context(decision: RetrainDecision) -> dict[str, Any]:
    """What the registry records as the source of a registration or promotion."""
    return {"notebook": decision.pipeline}
