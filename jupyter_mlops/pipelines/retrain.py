"""Continuous training: drift (or a forced check) -> pipeline -> challenger -> gate -> champion.

:func:`retrain` reads the deployment's monitoring figures, evaluates the trigger condition
(``drift_share > 0.3``), and when it holds runs the pipeline and offers the model of its
result as ``challenger`` (:mod:`.challenger`: compared with ``champion`` on the same
holdout, promoted or sent to a canary only if it wins). :func:`watch` repeats the check on
a schedule; :func:`run_alert_action` is the check an alert rule's ``pipeline:`` action
starts. Every decision, including "not triggered", is recorded (:mod:`.decisions`) and,
when a pipeline ran, written as tags of its MLflow run.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jupyter_mlops.conditions import Condition
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import ConditionError, MlopsError, PipelineError
from jupyter_mlops.pipelines.challenger import CHAMPION, champion_exists, offer
from jupyter_mlops.pipelines.decisions import RetrainDecision
from jupyter_mlops.pipelines.runner import run as run_pipeline
from jupyter_mlops.pipelines.spec import Pipeline, load_pipeline

FiguresSource = Mapping[str, float] | Callable[..., Mapping[str, float]]


def retrain(
    model: str,
    pipeline: str | Path | Pipeline,
    *,
    when: str | None = None,
    deployment: str | None = None,
    force: bool = False,
    canary_weight: float | None = None,
    metric: str | None = None,
    params: Mapping[str, Any] | None = None,
    figures: FiguresSource | None = None,
    last: str = "1h",
    executor: str | None = None,
    scheduler: str | None = None,
    config: Config | None = None,
) -> RetrainDecision:
    """Check the trigger; if it holds (or ``force``), retrain, gate and maybe promote.

    ``when`` is a condition over the deployment's monitoring figures (``drift_share > 0.3``),
    read through ``jupyter_mlops.monitoring.figures(deployment, last=last)`` unless
    ``figures`` (a mapping, or a function with that signature) is given. The model is
    registered as ``challenger`` only if it beats ``champion`` on ``metric``; it then
    becomes ``champion``, or with ``canary_weight`` gets that share of the deployment's
    traffic as a canary first. Returns the decision, which is also recorded; a failed
    pipeline or a losing challenger leaves the registry as it was.
    """
    import jupyter_mlops.registry as registry

    spec = load_pipeline(pipeline)
    config = config or load_config(spec.base)
    registry.check_model_name(model)
    condition = Condition(when) if when else None
    if canary_weight is not None and not deployment:
        raise PipelineError("A canary needs the deployment to send traffic to: give deployment")
    decision = RetrainDecision.new(
        model=model,
        pipeline=str(spec.path or spec.name),
        when=when,
        deployment=deployment,
        forced=force,
        metric=metric or spec.metric or "accuracy",
    )
    _check_trigger(decision, condition, figures, last=last, config=config)
    if not decision.triggered:
        decision.save(config)
        return decision

    overrides = dict(params or {})
    if (
        "champion" in spec.parameter_names()
        and "champion" not in overrides
        and champion_exists(model, config)
    ):
        overrides["champion"] = f"models:/{model}@{CHAMPION}"
    record = run_pipeline(
        spec,
        overrides,
        executor=executor,
        scheduler=scheduler,
        tags={
            "mlops.retrain.id": decision.decision_id,
            "mlops.retrain.model": model,
            "mlops.retrain.reason": decision.reason,
        },
        config=config,
    )
    decision.pipeline_run, decision.pipeline_status = record.run_id, record.status
    decision.data = record.data
    if record.ok:
        offer(decision, spec, record, canary_weight=canary_weight, config=config)
    else:
        decision.action = "pipeline-failed"
        failed = [s.error for s in record.failed_steps if s.error]
        decision.reason += "; pipeline failed, nothing registered: " + ("; ".join(failed) or "")
    decision.save(config)
    _tag_run(config, record.mlflow_run_id, decision)
    return decision


def _check_trigger(
    decision: RetrainDecision,
    condition: Condition | None,
    figures: FiguresSource | None,
    *,
    last: str,
    config: Config,
) -> None:
    """Read the figures and evaluate the condition into ``decision`` (``triggered``, why).

    Without ``force``, figures that cannot be read or a condition that cannot be evaluated
    are recorded and raised; with it they become notes and the retraining goes on.
    """
    force, target = decision.forced, decision.deployment or decision.model
    figures_seen: Mapping[str, float] = {}
    try:
        if callable(figures):
            figures_seen = figures(target, last=last)
        elif figures is not None:
            figures_seen = figures
        elif condition is not None or decision.deployment:
            from jupyter_mlops.monitoring import figures as monitoring_figures

            estimated = condition is not None and any(
                name.startswith("estimated_") for name in condition.metrics
            )
            figures_seen = monitoring_figures(target, last=last, estimate=estimated)
    except MlopsError as exc:
        if not force:
            decision.reason = f"cannot read monitoring figures: {exc}"
            decision.save(config)
            raise
        decision.notes.append(f"no monitoring figures ({exc})")
    decision.figures = {
        str(k): float(v) for k, v in figures_seen.items() if isinstance(v, int | float)
    }
    explain = None
    if condition is not None:
        try:
            result = condition.evaluate(decision.figures)
        except ConditionError as exc:
            notes = getattr(figures_seen, "notes", None) or {}
            # monitoring says why a figure is missing (no traffic, no reference...)
            why = "; ".join(f"{k}: {v}" for k, v in notes.items() if k in condition.metrics)
            message = f"{exc} ({why})" if why else str(exc)
            if not force:
                decision.reason = message
                decision.save(config)
                raise ConditionError(message) from None
            decision.notes.append(message)
        else:
            explain = result.explain()
            decision.condition = {
                "expression": result.expression,
                "passed": result.passed,
                "explain": explain,
            }
    held = bool(decision.condition and decision.condition["passed"])
    decision.triggered = force or held
    if held:
        decision.reason = f"{decision.when}: {explain}"
    elif force:
        unmet = f" (condition not met: {explain})" if decision.condition else ""
        decision.reason = "forced" + unmet
    else:
        decision.action = "not-triggered"
        why_not = explain if decision.condition else "no condition given"
        decision.reason = f"{decision.when or 'no condition'} does not hold: {why_not}"


def _tag_run(config: Config, run_id: str | None, decision: RetrainDecision) -> None:
    if not run_id:
        return
    from jupyter_mlops.client import client
    from jupyter_mlops.pipelines.mlflow_runs import set_tags

    tags = {
        "mlops.retrain.id": decision.decision_id,
        "mlops.retrain.action": decision.action,
        "mlops.retrain.reason": decision.reason,
        "mlops.retrain.promoted": str(decision.promoted).lower(),
        "mlops.retrain.figures": json.dumps(decision.figures),
    }
    if decision.version:
        tags["mlops.retrain.version"] = decision.version
    with contextlib.suppress(Exception):  # the file record is the primary one
        set_tags(client(config), run_id, tags)


def watch(
    interval: float,
    *,
    max_checks: int | None = None,
    on_decision: Callable[[RetrainDecision], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **retrain_args: Any,
) -> list[RetrainDecision]:
    """Call :func:`retrain` every ``interval`` seconds (``max_checks`` times, or until ^C).

    A failing check is reported and the loop goes on; an invalid setup (bad pipeline,
    malformed condition) raises on the first check.
    """
    decisions: list[RetrainDecision] = []
    checks = 0
    with contextlib.suppress(KeyboardInterrupt):
        while max_checks is None or checks < max_checks:
            started = time.monotonic()
            try:
                decision = retrain(**retrain_args)
            except MlopsError as exc:
                if checks == 0 and not isinstance(exc, ConditionError):
                    raise
                decision = RetrainDecision.new(
                    model=str(retrain_args.get("model")),
                    pipeline=str(retrain_args.get("pipeline")),
                    when=retrain_args.get("when"),
                    deployment=retrain_args.get("deployment"),
                    forced=bool(retrain_args.get("force")),
                    reason=str(exc),
                )
            decisions.append(decision)
            if on_decision is not None:
                on_decision(decision)
            checks += 1
            if max_checks is not None and checks >= max_checks:
                break
            sleep(max(0.0, interval - (time.monotonic() - started)))
    return decisions


def run_alert_action(
    target: str, event: Mapping[str, Any] | None = None, **more: Any
) -> dict[str, Any]:
    """An alert rule's ``pipeline:<path>`` action: retrain with the figures that fired it.

    ``event`` (from monitoring's alert check) may carry ``deployment``, ``figures``,
    ``rule`` and ``model``; the model defaults to the pipeline's ``model:`` and then to
    the deployment's model. Returns the decision as a dict (recorded with the firing).
    """
    context = {**(event or {}), **more}
    pipeline = target.removeprefix("pipeline:")
    spec = load_pipeline(pipeline)
    deployment = context.get("deployment")
    model = context.get("model") or spec.model
    if not model and deployment:
        from jupyter_mlops.serving import get_deployment

        model = get_deployment(str(deployment)).primary.name
    if not model:
        raise PipelineError(
            f"Alert action pipeline:{pipeline}: which model? Set 'model:' in the pipeline"
        )
    rule = context.get("rule")
    decision = retrain(
        str(model),
        spec,
        deployment=str(deployment) if deployment else None,
        force=True,
        figures=dict(context.get("figures") or {}),
    )
    if rule is not None:
        decision.notes.append(f"started by alert rule {rule}")
        decision.save(load_config(spec.base))
    return decision.to_dict()
