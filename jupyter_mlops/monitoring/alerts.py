"""Checking a deployment's alert rules: evaluated, recorded, notified.

:func:`check` evaluates the stored rules (:mod:`~jupyter_mlops.monitoring.rules`) over the
deployment's figures, records each firing in ``alerts.jsonl``, and notifies the webhook and
the rules' actions, at most once per rule's ``cooldown_s``. A rule whose figures are not
available (no traffic, server down, no reference) is ``unknown``, with the reason, never
silently quiet.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import ConditionError, MlopsError
from jupyter_mlops.monitoring import vitals
from jupyter_mlops.monitoring.actions import post_json, registered_actions
from jupyter_mlops.monitoring.rules import (
    ALERTS_FILE,
    STATE_FILE,
    AlertRule,
    RuleSet,
    alert_history,
    get_rules,
    read_json,
    remove_rules,
    set_rules,
    write_json,
)

if TYPE_CHECKING:
    from jupyter_mlops.config import Config

__all__ = [
    "FIRING",
    "QUIET",
    "UNKNOWN",
    "AlertRule",
    "CheckResult",
    "RuleResult",
    "RuleSet",
    "alert_history",
    "check",
    "evaluate",
    "get_rules",
    "remove_rules",
    "set_rules",
]

FIRING, QUIET, UNKNOWN = "firing", "quiet", "unknown"


# -- checking -----------------------------------------------------------------------------


@dataclass
class RuleResult:
    """One rule's outcome: firing, quiet or unknown, with the values it saw."""

    rule: AlertRule
    status: str
    explanation: str
    values: dict[str, float] = field(default_factory=dict)
    value: float | None = None  # the first figure the rule compares
    time: str = ""
    action: str | None = None
    action_result: Any = None
    action_error: str | None = None
    notified: bool = False
    suppressed: bool = False  # within the rule's cooldown: recorded, not notified

    @property
    def firing(self) -> bool:
        return self.status == FIRING

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rule"] = self.rule.expression
        out["action_result"] = _jsonable(self.action_result)
        return out


class CheckResult(list[RuleResult]):
    """The results of one check, with the figures and the webhook's outcome."""

    def __init__(
        self, results: Iterable[RuleResult] = (), *, deployment: str = "", figures: Any = None
    ) -> None:
        super().__init__(results)
        self.deployment = deployment
        self.figures = figures
        self.webhook: dict[str, Any] | None = None

    @property
    def firing(self) -> list[RuleResult]:
        return [r for r in self if r.firing]

    @property
    def unknown(self) -> list[RuleResult]:
        return [r for r in self if r.status == UNKNOWN]

    def __str__(self) -> str:
        if not self:
            return f"{self.deployment}: no alert rules (add some with %monitor --alert)"
        head = (
            f"{self.deployment}: {len(self.firing)} firing, "
            f"{len(self) - len(self.firing) - len(self.unknown)} quiet, "
            f"{len(self.unknown)} unknown"
        )
        lines = [head]
        for r in self:
            extra = ""
            if r.action:
                extra = f" -> {r.action}: " + (
                    f"error: {r.action_error}" if r.action_error else "done" if r.notified else ""
                )
            if r.suppressed:
                extra += " (cooldown: not notified)"
            lines.append(f"  [{r.status:>7}] {r.rule.expression}: {r.explanation}{extra}")
        if self.webhook:
            outcome = self.webhook.get("error") or f"HTTP {self.webhook.get('status')}"
            lines.append(f"  webhook {self.webhook['url']}: {outcome}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # IPython prints a list subclass item by item; the summary is what is meant.
        printer.text(str(self))

    def _repr_html_(self) -> str:
        colour = {FIRING: "#cf222e", QUIET: "#1a7f37", UNKNOWN: "#8c959f"}
        rows = "".join(
            f"<tr><td style='color:{colour[r.status]};font-weight:600'>{r.status}</td>"
            f"<td><code>{escape(r.rule.expression)}</code></td>"
            f"<td>{escape(r.explanation)}</td><td>{escape(r.action or '')}"
            f"{' error: ' + escape(r.action_error) if r.action_error else ''}</td></tr>"
            for r in self
        )
        return (
            f"<div><b>Alerts of {escape(self.deployment)}</b><table><tr><th>status</th>"
            f"<th>rule</th><th>values</th><th>action</th></tr>{rows}</table></div>"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "results": [r.to_dict() for r in self],
            "figures": dict(self.figures or {}),
            "webhook": self.webhook,
        }


def evaluate(rule: AlertRule, figures: Mapping[str, float], notes: Mapping[str, str]) -> RuleResult:
    """The outcome of one rule over ``figures`` (unknown when a figure is absent)."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    missing = [m for m in rule.metrics if m not in figures]
    if missing:
        why = "; ".join(f"{m}: {notes.get(m) or _closest_note(m, notes) or 'not measured'}"
                        for m in missing)  # fmt: skip
        return RuleResult(rule, UNKNOWN, f"unknown ({why})", time=now, action=rule.action)
    try:
        outcome = rule.evaluate(figures)
    except ConditionError as exc:  # pragma: no cover - missing names handled above
        return RuleResult(rule, UNKNOWN, str(exc), time=now, action=rule.action)
    values = {m: float(figures[m]) for m in rule.metrics}
    value = outcome.checks[0]["left"] if outcome.checks else None
    return RuleResult(
        rule,
        FIRING if outcome.passed else QUIET,
        outcome.explain(("true", "false")),  # "ok" would read as "all is well"
        values=values,
        value=value,
        time=now,
        action=rule.action,
    )


def _closest_note(name: str, notes: Mapping[str, str]) -> str | None:
    base = name.split("_v")[0].removesuffix("_primary").removesuffix("_canary")
    return notes.get(base)


def check(
    deployment: str,
    rules: Iterable[str | Mapping[str, Any] | AlertRule] | None = None,
    *,
    last: str | float | None = "1h",
    webhook: str | None = None,
    record: bool = True,
    notify: bool = True,
    figures: Mapping[str, float] | None = None,
    token: str | None = None,
    config: Config | None = None,
) -> CheckResult:
    """Evaluate alert rules over ``deployment``'s figures of the last ``last``.

    ``rules`` default to the stored ones (``%monitor --alert``). Each firing is recorded
    in ``alerts.jsonl``; with ``notify``, one JSON payload listing the firing rules is
    POSTed to ``webhook`` (default: the stored URL) and each firing rule's action runs
    (unless within its ``cooldown_s``). A failing webhook or action is reported in the
    result, not raised. ``figures`` can be given to skip computing them (tests, pipelines).
    """
    from jupyter_mlops.config import load_config

    config = config or load_config()
    stored = get_rules(deployment, config=config)
    chosen = [AlertRule.of(r) for r in rules] if rules is not None else stored.rules
    url = webhook if webhook is not None else stored.webhook
    if figures is None:
        needs_drift = any(
            m.startswith(("drift", "n_drifted", "prediction", "dataset", "n_features"))
            for r in chosen
            for m in r.metrics
        )
        estimate = any(m.startswith("estimated_") for r in chosen for m in r.metrics)
        figs = vitals.figures(
            deployment,
            last=last,
            config=config,
            drift=needs_drift,
            token=token,
            estimate=estimate,
        )
    else:
        figs = vitals.Figures(figures, deployment=deployment, window=str(last))
    notes = getattr(figs, "notes", {})
    result = CheckResult(
        [evaluate(rule, figs, notes) for rule in chosen], deployment=deployment, figures=figs
    )
    folder = vitals.monitoring_dir(deployment, config)
    firing = result.firing
    if not firing:
        return result
    state = read_json(folder / STATE_FILE, {}) if notify else {}
    now = time.time()
    due = []
    for r in firing:
        last_sent = float(state.get(r.rule.expression, 0.0))
        if notify and r.rule.cooldown_s and now - last_sent < r.rule.cooldown_s:
            r.suppressed = True
        else:
            due.append(r)
    if notify:
        for r in due:
            if r.action:
                _run_action(r, deployment, figs)
        if url and due:
            payload = {
                "deployment": deployment,
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "window": getattr(figs, "window", str(last)),
                "alerts": [
                    {
                        "rule": r.rule.expression,
                        "name": r.rule.name,
                        "value": r.value,
                        "values": r.values,
                        "explanation": r.explanation,
                    }
                    for r in due
                ],
                "figures": dict(figs),
            }
            result.webhook = {"url": url}
            try:
                result.webhook["status"] = post_json(url, payload)
            except MlopsError as exc:
                result.webhook["error"] = str(exc)
        for r in due:
            r.notified = True
            state[r.rule.expression] = now
        write_json(folder / STATE_FILE, state)
    if record:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ALERTS_FILE).open("a") as fh:
            for r in firing:
                entry = {
                    "time": r.time,
                    "deployment": deployment,
                    "rule": r.rule.expression,
                    "value": r.value,
                    "values": r.values,
                    "explanation": r.explanation,
                    "notified": r.notified,
                    "action": r.action,
                    "action_error": r.action_error,
                    "webhook": result.webhook if r.notified else None,
                }
                fh.write(json.dumps(entry, default=str) + "\n")
    return result


def _run_action(result: RuleResult, deployment: str, figs: Mapping[str, float]) -> None:
    assert result.action is not None
    kind, _, argument = result.action.partition(":")
    actions = registered_actions()
    fn = actions.get(kind)
    if fn is None:
        known = ", ".join(sorted(actions)) or "none"
        result.action_error = (
            f"no action {kind!r} is registered (known: {known}; "
            "jupyter_mlops.monitoring.register_action adds one)"
        )
        return
    event = {
        "deployment": deployment,
        "rule": result.rule.expression,
        "name": result.rule.name,
        "value": result.value,
        "values": result.values,
        "time": result.time,
        "figures": dict(figs),
    }
    try:
        result.action_result = fn(argument, event)
    except Exception as exc:
        result.action_error = f"{type(exc).__name__}: {exc}"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
