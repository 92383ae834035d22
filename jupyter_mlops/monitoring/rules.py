"""Alert rules of a deployment: what they are and where they are stored.

A rule is a :class:`~jupyter_mlops.conditions.Condition` over the names of
:func:`~jupyter_mlops.monitoring.figures` (``drift_share > 0.3``, ``p99_ms > 50 and
requests > 100``), optionally with an action (``webhook:https://...``,
``pipeline:pipelines/retrain.yaml``, or a kind added with
:func:`~jupyter_mlops.monitoring.actions.register_action`).
Per deployment, under ``.mlops/monitoring/<deployment>/``:

* ``rules.json``: the rules and the webhook URL (written by ``%monitor --alert``), so
  ``jupyter-mlops monitor check DEPLOYMENT`` from cron evaluates the same rules;
* ``alerts.jsonl``: one line per firing (time, rule, value, the figures it saw), and per
  notification attempt its outcome (written by :mod:`~jupyter_mlops.monitoring.alerts`);
* ``alert-state.json``: when each rule last notified (for ``cooldown_s``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops import values
from jupyter_mlops._util.records import attributes
from jupyter_mlops.conditions import Condition
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.monitoring import vitals
from jupyter_mlops.monitoring.actions import check_action, check_url

if TYPE_CHECKING:
    from jupyter_mlops.config import Config

RULES_FILE = "rules.json"
ALERTS_FILE = "alerts.jsonl"
STATE_FILE = "alert-state.json"


class AlertRule(Condition):
    """A condition over monitored figures, with an optional action and cooldown."""

    kind = "Alert rule"

    def __init__(
        self,
        expression: str,
        *,
        action: str | None = None,
        name: str | None = None,
        cooldown_s: float = 0.0,
    ) -> None:
        super().__init__(expression)
        if action is not None:
            kind, sep, _ = action.partition(":")
            if not sep or not kind:
                raise MlopsError(
                    f"Action {action!r} must read kind:argument, e.g. webhook:https://... "
                    "or pipeline:pipelines/retrain.yaml"
                )
        self.action = action
        self.name = name or self.expression
        self.cooldown_s = values.non_negative(cooldown_s, "cooldown_s")

    def to_dict(self) -> dict[str, Any]:
        return attributes(self, "expression", "action", "name", "cooldown_s")

    @classmethod
    def of(cls, rule: str | Mapping[str, Any] | AlertRule) -> AlertRule:
        """A rule from its expression, its dict, or itself."""
        if isinstance(rule, AlertRule):
            return rule
        if isinstance(rule, str):
            return cls(rule)
        try:
            return cls(
                str(rule["expression"]),
                action=rule.get("action"),
                name=rule.get("name"),
                cooldown_s=float(rule.get("cooldown_s") or 0.0),
            )
        except KeyError:
            raise MlopsError(f"Not an alert rule: {dict(rule)!r}") from None

    def __repr__(self) -> str:
        action = f" -> {self.action}" if self.action else ""
        return f"AlertRule({self.expression!r}{action})"


# -- storage ------------------------------------------------------------------------------


def rules_folder(deployment: str, config: Config | None) -> Path:
    """The folder of ``deployment``'s rules, firings and notification state."""
    from jupyter_mlops.config import load_config

    return vitals.monitoring_dir(deployment, config or load_config())


def read_json(path: Path, default: Any) -> Any:
    """``path`` parsed, ``default`` when missing; a corrupt file is a clear error."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise MlopsError(f"{path} is not valid JSON ({exc}); fix or delete it") from None


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically with ``data`` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


@dataclass
class RuleSet:
    """The stored rules of a deployment and where firings are POSTed."""

    rules: list[AlertRule]
    webhook: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [r.to_dict() for r in self.rules], "webhook": self.webhook}


def get_rules(deployment: str, *, config: Config | None = None) -> RuleSet:
    """The alert rules stored for ``deployment`` (empty when none)."""
    path = rules_folder(deployment, config) / RULES_FILE
    data = read_json(path, {})
    try:
        rules = [AlertRule.of(r) for r in data.get("rules", [])]
    except MlopsError as exc:  # e.g. a NaN cooldown stored before values were checked
        raise MlopsError(f"{path}: {exc}; fix or remove that rule") from None
    return RuleSet(rules, data.get("webhook"))


def set_rules(
    deployment: str,
    rules: Iterable[str | Mapping[str, Any] | AlertRule] = (),
    *,
    webhook: str | None = None,
    replace: bool = False,
    config: Config | None = None,
) -> RuleSet:
    """Add (or with ``replace``, set) ``deployment``'s alert rules; returns what is stored.

    Each rule is parsed first, so a malformed one stores nothing. A rule with the same
    expression as a stored one replaces it. ``webhook`` sets the URL (``""`` removes it).
    """
    from jupyter_mlops.serving import get_deployment

    parsed = [AlertRule.of(r) for r in rules]
    for rule in parsed:  # checked when defined; a stored rule is judged when it fires
        if rule.action is not None:
            check_action(rule.action)
    if webhook:
        check_url(webhook)
    get_deployment(deployment, config=config)  # an unknown deployment is an error
    current = RuleSet([], None) if replace else get_rules(deployment, config=config)
    by_expr = {r.expression: r for r in current.rules}
    for rule in parsed:
        by_expr[rule.expression] = rule
    url = current.webhook if webhook is None else (webhook or None)
    stored = RuleSet(list(by_expr.values()), url)
    write_json(rules_folder(deployment, config) / RULES_FILE, stored.to_dict())
    return stored


def remove_rules(
    deployment: str, expressions: Iterable[str] | None = None, *, config: Config | None = None
) -> RuleSet:
    """Remove the given rules (all with None); returns what is left."""
    current = get_rules(deployment, config=config)
    if expressions is None:
        kept: list[AlertRule] = []
    else:
        drop = {Condition(e).expression for e in expressions}
        unknown = drop - {r.expression for r in current.rules}
        if unknown:
            raise MlopsError(f"No such rule(s) for {deployment}: {sorted(unknown)}")
        kept = [r for r in current.rules if r.expression not in drop]
    stored = RuleSet(kept, current.webhook)
    write_json(rules_folder(deployment, config) / RULES_FILE, stored.to_dict())
    return stored


def alert_history(
    deployment: str, *, limit: int | None = 100, config: Config | None = None
) -> list[dict[str, Any]]:
    """Recorded firings of ``deployment``, newest last (at most ``limit``)."""
    path = rules_folder(deployment, config) / ALERTS_FILE
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out[-limit:] if limit else out
