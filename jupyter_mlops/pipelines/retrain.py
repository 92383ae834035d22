"""Continuous training: drift (or a forced check) -> pipeline -> challenger -> gate -> champion.

:func:`retrain` reads the deployment's monitoring figures, evaluates the trigger condition
(``drift_share > 0.3``), and when it holds runs the pipeline, registers the model of its
result as ``challenger`` behind a comparison with ``champion`` on the same holdout, and
moves ``champion`` to it only if it wins (or starts a canary on the deployment first).
Every decision, including "not triggered", is written to
``<project>/.mlops/pipelines/retrain/<id>.json`` and, when a pipeline ran, as tags of its
MLflow run; :func:`jupyter_mlops.pipelines.history` lists them.

Same holdout: if the pipeline declares a ``champion`` parameter, it is given the current
champion's model URI, and a result run that logs ``champion_<metric>`` beside ``<metric>``
(both scored on this run's holdout) is gated on ``<metric> > champion_<metric>``. Otherwise
the registry compares with the metric recorded on the champion's own run.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from jupyter_mlops.conditions import Condition, ConditionError
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.pipelines.runner import runs_root
from jupyter_mlops.pipelines.spec import Pipeline, PipelineError, load_pipeline

RETRAIN_DIR = "retrain"
CHAMPION, CHALLENGER = "champion", "challenger"
FiguresSource = Mapping[str, float] | Callable[..., Mapping[str, float]]


@dataclass
class RetrainDecision:
    """One check of the retraining loop: why, what ran, what was compared, what changed."""

    decision_id: str
    time: str
    model: str
    pipeline: str
    when: str | None
    deployment: str | None
    forced: bool
    figures: dict[str, float] = field(default_factory=dict)
    condition: dict[str, Any] | None = None
    triggered: bool = False
    # not-triggered | pipeline-failed | no-model | kept-champion | promoted | canary | error
    action: str = "error"
    reason: str = ""
    pipeline_run: str | None = None
    pipeline_status: str | None = None
    source_run: str | None = None  # the MLflow run whose model was offered
    metric: str | None = None
    candidate: float | None = None
    incumbent: float | None = None
    incumbent_version: str | None = None
    same_holdout: bool = False
    version: str | None = None
    promoted: bool = False
    canary: dict[str, Any] | None = None
    data: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, config: Config) -> Path:
        folder = runs_root(config) / RETRAIN_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.decision_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str), encoding="utf-8")
        tmp.replace(path)
        return path

    def __str__(self) -> str:
        lines = [f"Retrain {self.model} [{self.decision_id}]: {self.action}"]
        if self.reason:
            lines.append(f"  why: {self.reason}")
        if self.figures:
            figs = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.figures.items()))
            lines.append(f"  figures: {figs}")
        if self.pipeline_run:
            lines.append(f"  pipeline run: {self.pipeline_run} ({self.pipeline_status})")
        if self.metric and self.candidate is not None:
            vs = (
                f" vs champion {self.incumbent:.6g}"
                + (f" (version {self.incumbent_version})" if self.incumbent_version else "")
                if self.incumbent is not None
                else " (no champion yet)"
            )
            where = ", same holdout" if self.same_holdout else ""
            lines.append(f"  {self.metric}: challenger {self.candidate:.6g}{vs}{where}")
        if self.version:
            lines.append(f"  registered {self.model} version {self.version}")
        if self.canary:
            lines.append(f"  canary: {self.canary}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return "<pre>" + escape(str(self)) + "</pre>"


def _new_id() -> str:
    from jupyter_mlops.pipelines.runner import new_run_id

    return new_run_id()


def _monitoring_figures(deployment: str, last: str) -> Mapping[str, float]:
    try:
        from jupyter_mlops import monitoring  # built by another team; may not be there yet
    except ImportError:
        raise PipelineError(
            "Monitoring is not available (jupyter_mlops.monitoring cannot be imported), so "
            "the trigger cannot be checked: pass figures, or force the retraining"
        ) from None
    return monitoring.figures(deployment, last=last)


def _champion_exists(model: str, config: Config) -> bool:
    import jupyter_mlops.registry as registry
    from jupyter_mlops.errors import NotFoundError

    try:
        registry.get_version(f"{model}@{CHAMPION}", config)
    except (NotFoundError, registry.RegistryError):
        return False
    return True


def _result_run(spec: Pipeline, record: Any, config: Config) -> Any:
    """The MLflow run of the step whose model is offered: ``register:`` or the last with one."""
    from jupyter_mlops.tracking import store
    from jupyter_mlops.tracking.run import TAG_MODELS

    client = store.client(config)
    names = [spec.register] if spec.register else list(reversed(record.steps))
    for name in names:
        step = record.steps.get(name)
        if step is None or not step.mlflow_run_id:
            continue
        run = store.call(client.get_run, step.mlflow_run_id)
        if run.data.tags.get(TAG_MODELS):
            return run
    return None


def _tag_run(config: Config, run_id: str | None, decision: RetrainDecision) -> None:
    if not run_id:
        return
    from jupyter_mlops.pipelines.runner import _set_tags
    from jupyter_mlops.tracking import store

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
        _set_tags(store.client(config), run_id, tags)


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
    decision = RetrainDecision(
        decision_id=_new_id(),
        time=datetime.now(UTC).isoformat(timespec="seconds"),
        model=model,
        pipeline=str(spec.path or spec.name),
        when=when,
        deployment=deployment,
        forced=force,
        metric=metric or spec.metric or "accuracy",
    )

    # 1. the figures and the trigger
    figures_seen: Mapping[str, float] = {}
    try:
        if callable(figures):
            figures_seen = figures(deployment or model, last=last)
        elif figures is not None:
            figures_seen = figures
        elif condition is not None or deployment:
            figures_seen = _monitoring_figures(deployment or model, last)
    except MlopsError as exc:
        if not force:
            decision.reason = f"cannot read monitoring figures: {exc}"
            decision.save(config)
            raise
        decision.notes.append(f"no monitoring figures ({exc})")
    decision.figures = {
        str(k): float(v) for k, v in figures_seen.items() if isinstance(v, int | float)
    }
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
            decision.condition = {
                "expression": result.expression,
                "passed": result.passed,
                "explain": result.explain(),
            }
    held = bool(decision.condition and decision.condition["passed"])
    decision.triggered = force or held
    if held:
        decision.reason = f"{when}: {decision.condition['explain']}"  # type: ignore[index]
    elif force:
        decision.reason = "forced" + (
            f" (condition not met: {decision.condition['explain']})" if decision.condition else ""
        )
    if not decision.triggered:
        decision.action = "not-triggered"
        explain = decision.condition["explain"] if decision.condition else "no condition given"
        decision.reason = f"{when or 'no condition'} does not hold: {explain}"
        decision.save(config)
        return decision

    # 2. the pipeline
    overrides = dict(params or {})
    if (
        "champion" in spec.parameter_names()
        and "champion" not in overrides
        and _champion_exists(model, config)
    ):
        overrides["champion"] = f"models:/{model}@{CHAMPION}"
    from jupyter_mlops.pipelines.runner import run

    record = run(
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
    if not record.ok:
        decision.action = "pipeline-failed"
        failed = [s.error for s in record.failed_steps if s.error]
        decision.reason += "; pipeline failed, nothing registered: " + ("; ".join(failed) or "")
        return _finish(decision, config, record.mlflow_run_id)

    # 3. challenger against champion
    source = _result_run(spec, record, config)
    if source is None:
        decision.action = "no-model"
        decision.reason += "; no step of the pipeline logged a model (use %%track in a step)"
        return _finish(decision, config, record.mlflow_run_id)
    decision.source_run = source.info.run_id
    name = decision.metric
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
    context = {"notebook": decision.pipeline}
    try:
        registration = registry.register(
            source.info.run_id,
            name=model,
            aliases=[CHALLENGER],
            gate=gate,
            against=against,
            metric=name if against else None,
            context=context,
            config=config,
        )
    except registry.GateFailed as exc:
        decision.action = "kept-champion"
        decision.reason += f"; challenger lost: {exc}"
        for check in exc.result.checks:
            if check.get("incumbent") is not None:
                decision.incumbent = check["incumbent"]
                decision.incumbent_version = check.get("incumbent_version")
        return _finish(decision, config, record.mlflow_run_id)
    decision.version = registration.version
    if registration.comparison:
        decision.incumbent = registration.comparison.get("incumbent")
        decision.incumbent_version = registration.comparison.get("incumbent_version")

    # 4. promotion
    ref = f"{model}/{registration.version}"
    if canary_weight is not None:
        from jupyter_mlops import serving

        assert deployment is not None
        serving.canary(deployment, ref, canary_weight, config=config)
        decision.action = "canary"
        decision.canary = {"deployment": deployment, "target": ref, "weight": canary_weight}
        decision.reason += (
            f"; challenger won, serving {canary_weight:g}% of {deployment!r} as a canary "
            f"(finish with serving.promote({deployment!r}) and "
            f"registry.promote({ref!r}, 'champion'))"
        )
    else:
        try:
            # Only over the champion it was evaluated against: a champion promoted by
            # someone else meanwhile is not overwritten.
            registry.promote(
                ref,
                CHAMPION,
                expected=decision.incumbent_version,
                context=context,
                config=config,
            )
        except registry.PromotionConflict as exc:
            decision.action = "lost-race"
            decision.reason += f"; challenger won but was not promoted: {exc}"
            return _finish(decision, config, record.mlflow_run_id)
        decision.action, decision.promoted = "promoted", True
        decision.reason += f"; challenger won and is now {model}@{CHAMPION} (version {ref})"
    return _finish(decision, config, record.mlflow_run_id)


def _finish(decision: RetrainDecision, config: Config, run_id: str | None) -> RetrainDecision:
    decision.save(config)
    _tag_run(config, run_id, decision)
    return decision


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
                decision = RetrainDecision(
                    decision_id=_new_id(),
                    time=datetime.now(UTC).isoformat(timespec="seconds"),
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


def list_decisions(
    *, config: Config | None = None, model: str | None = None, limit: int | None = None
) -> list[RetrainDecision]:
    """Recorded retraining decisions, newest first (of one model, if named)."""
    config = config or load_config()
    folder = runs_root(config) / RETRAIN_DIR
    out: list[RetrainDecision] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            decision = RetrainDecision(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
        if model is None or decision.model == model:
            out.append(decision)
        if limit is not None and len(out) >= limit:
            break
    return out


# -- alert actions ----------------------------------------------------------------------------
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
        from jupyter_mlops import serving

        model = serving.get_deployment(str(deployment)).primary.name
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


def install_alert_action() -> bool:
    """Register the ``pipeline`` action kind with monitoring's alert rules, if it exists."""
    try:
        from jupyter_mlops import monitoring
    except ImportError:
        return False
    register = getattr(monitoring, "register_action", None)
    if register is None:
        return False
    register("pipeline", run_alert_action)
    return True
