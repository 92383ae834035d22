"""A canary decided on live outcomes: promote only what the labels show to be better.

``promote("iris-prod", when="challenger.accuracy > primary.accuracy")`` scores the primary
and the canary over the same traffic window (from when the canary began to serve), on the
outcomes joined to their predictions (:func:`jupyter_mlops.predlog.read_outcomes`), and
promotes only when the condition holds AND each comparison it makes is significant at
``alpha``, with at least ``min_labels`` labelled rows per side. Why a test: two models that
are equally good differ on a few hundred labels by chance; a canary promoted on a lucky
window is a regression shipped.

The tests and each role's rows are in :mod:`jupyter_mlops.serving.evidence`; the verdict and
its evidence go on the deployment's events (``promote`` when promoted, ``promotion refused``
when not), which ``%deploy --status`` shows.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_mlops.conditions import ROLES, Condition
from jupyter_mlops.errors import ConditionError
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.errors import ServingError
from jupyter_mlops.serving.evidence import FIGURES, Side, p_value, sides

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MIN_LABELS",
    "Decision",
    "PromotionCondition",
    "PromotionRefused",
    "decide",
    "judge_canary",
]

#: Significance level of a conditional promotion.
DEFAULT_ALPHA = 0.05
#: Labelled rows each side needs before a decision (below it, the normal approximation of
#: the z-test is poor and a bootstrap is noise).
DEFAULT_MIN_LABELS = 100


class PromotionRefused(ServingError):
    """A conditional promotion the outcomes do not support: the canary stays a canary."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"Not promoted: {decision.reason}")
        self.decision = decision


class PromotionCondition(Condition):
    """A condition over the roles' figures, each comparison testable: a role's figure against
    the other role's same figure, or against a number; no ``not``, no ``==``."""

    kind = "Promotion condition"

    def __init__(self, expression: str) -> None:
        super().__init__(expression)
        if self.negates:
            raise ConditionError(f"{self.named}: write the comparison the other way round, not")
        for left, op, right in self.comparisons():
            if op == "==":
                raise ConditionError(f"{self.named}: a test cannot show equality; use > or <")
            named = [_role_metric(s) if isinstance(s, str) else None for s in (left, right)]
            found = [n for n in named if n is not None]
            text = f"{left} {op} {right}"
            if not found or any(
                isinstance(s, str) and n is None for s, n in zip((left, right), named, strict=True)
            ):
                raise ConditionError(
                    f"{self.named}: {text!r} must name a role's figure, e.g. "
                    "challenger.accuracy > primary.accuracy"
                )
            if len(found) == 2 and (found[0][1] != found[1][1] or found[0][0] == found[1][0]):
                raise ConditionError(
                    f"{self.named}: {text!r}: compare one figure between the two roles, "
                    "or a role's figure with a number"
                )


def _role_metric(name: str) -> tuple[str, str] | None:
    """("canary", "accuracy") for challenger.accuracy or canary.accuracy; None otherwise."""
    prefix, dot, metric = name.partition(".")
    if not dot or prefix not in ROLES:
        return None
    return ("primary" if prefix == "primary" else "canary", metric)


@dataclass
class Decision:
    """A conditional promotion's verdict and its evidence (what the history records)."""

    expression: str
    promoted: bool
    reason: str
    alpha: float
    min_labels: int
    since: float
    until: float
    roles: dict[str, dict[str, Any]]  # role -> model, labels, figures
    comparisons: list[dict[str, Any]]  # each test: values, difference, p-value, test

    def to_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "promoted": self.promoted,
            "reason": self.reason,
            "alpha": self.alpha,
            "min_labels": self.min_labels,
            "window": {"since": self.since, "until": self.until},
            "roles": self.roles,
            "comparisons": self.comparisons,
        }

    def __str__(self) -> str:
        verdict = "promoted" if self.promoted else "not promoted"
        return f"{verdict}: {self.reason}"


def decide(
    frame: pd.DataFrame,
    condition: str | PromotionCondition,
    *,
    primary: ModelRef,
    canary: ModelRef,
    since: float,
    until: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> Decision:
    """Whether ``canary`` should replace ``primary`` on the outcome rows of ``frame``
    predicted within [``since``, ``until``]; the verdict carries the evidence either way."""
    import pandas as pd

    if not isinstance(condition, PromotionCondition):
        condition = PromotionCondition(condition)
    if not 0.0 < float(alpha) < 1.0:
        raise ServingError(f"alpha is a significance level between 0 and 1, not {alpha}.")
    until = time.time() if until is None else until
    if "timestamp" in frame and not frame.empty:
        moments = pd.to_datetime(frame["timestamp"], utc=True)  # any resolution (s, us, ns)
        stamp = (moments - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        frame = frame[(stamp >= since).to_numpy() & (stamp <= until).to_numpy()]
    by_role = sides(frame, primary, canary)
    figures_of = {role: side.figures() for role, side in by_role.items()}
    roles: dict[str, dict[str, Any]] = {
        role: {"model": side.model, "labels": side.n, "figures": figures_of[role]}
        for role, side in by_role.items()
    }
    verdict = Decision(condition.expression, False, "", alpha, min_labels, since, until, roles, [])
    named = {r for r in (_role_metric(m) for m in condition.metrics) if r}
    side = by_role["canary"]
    known = [*FIGURES[side.task], *side.extras]
    unknown = sorted({m for _, m in named} - set(known))
    if unknown:  # a typo is told now, not once enough labels arrived
        raise ConditionError(
            f"{condition.named}: no figure {', '.join(unknown)} for a {side.task} model "
            f"(known: {', '.join(known)})"
        )
    short = [f"{r} {by_role[r].n}" for r in ("canary", "primary") if r in {n[0] for n in named}]
    if any(by_role[r].n < min_labels for r, _ in named):
        verdict.reason = (
            f"not enough labels: {', '.join(short)} labelled rows since {_utc(since)} "
            f"(at least {min_labels} per side)"
        )
        return verdict
    figures = {f"{p}.{m}": v for p in ROLES for m, v in figures_of[_role(p)].items()}
    tested: dict[str, dict[str, Any]] = {}

    def judge(check: dict[str, Any]) -> bool:
        text = f"{check['left_text']} {check['op']} {check['right_text']}"
        if text not in tested:
            tested[text] = _compare(check, by_role, alpha)
        return bool(tested[text]["holds"] and tested[text]["significant"])

    promoted = condition.evaluate(figures, judge=judge).passed
    verdict.comparisons = list(tested.values())
    verdict.promoted = promoted
    plain = condition.evaluate(figures)
    if promoted:
        verdict.reason = "; ".join(_evidence(c) for c in verdict.comparisons)
    elif not plain.passed:
        verdict.reason = f"condition false: {plain.explain(('true', 'false'))}"
    else:
        weak = [c for c in verdict.comparisons if c["holds"] and not c["significant"]]
        verdict.reason = "not significant: " + "; ".join(_evidence(c) for c in weak)
    return verdict


def _role(prefix: str) -> str:
    return "primary" if prefix == "primary" else "canary"


def _utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _evidence(c: dict[str, Any]) -> str:
    return (
        f"{c['comparison']} ({c['left']:.4g} vs {c['right']:.4g}, difference "
        f"{c['difference']:+.4g}, p = {c['p_value']:.3g} {'<' if c['significant'] else '>='} "
        f"alpha {c['alpha']:g}, {c['test']}, n = {c['n']})"
    )


def _compare(check: dict[str, Any], by_role: dict[str, Side], alpha: float) -> dict[str, Any]:
    """The test of one comparison: its values, difference, p-value and verdict."""
    left, right = _role_metric(check["left_text"]), _role_metric(check["right_text"])
    op, constant = check["op"], float(check["right"])
    if left is None:  # "0.9 < challenger.accuracy": test "challenger.accuracy > 0.9"
        op = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "!=": "!="}[op]
        left, right, constant = right, None, float(check["left"])
    assert left is not None
    a = by_role[left[0]]
    b = by_role[right[0]] if right is not None else None
    p, test = p_value(left[1], a, b, constant, op)
    return {
        "comparison": f"{check['left_text']} {check['op']} {check['right_text']}",
        "left": check["left"],
        "right": check["right"],
        "difference": check["left"] - check["right"],
        "p_value": p,
        "alpha": alpha,
        "test": test,
        "n": [a.n, b.n] if b is not None else [a.n],
        "holds": bool(check["passed"]),
        "significant": p < alpha,
    }


def judge_canary(
    name: str,
    state: dict[str, Any],
    condition: PromotionCondition,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_labels: int = DEFAULT_MIN_LABELS,
    config: Config | None = None,
) -> Decision:
    """The decision for deployment ``name`` (its ``state``) on its outcomes since the canary
    began to serve."""
    from jupyter_mlops.predlog import read_outcomes

    primary, canary = ModelRef.from_dict(state["primary"]), ModelRef.from_dict(state["canary"])
    since, until = canary_since(state), time.time()
    if since is None:  # weight 0 from the start: nothing to judge, and the history says so
        reason = f"not enough labels: the canary {canary.label} has served no traffic yet"
        empty = {"model": canary.label, "labels": 0, "figures": {}}
        roles = {"primary": {**empty, "model": primary.label}, "canary": empty}
        return Decision(
            condition.expression, False, reason, alpha, min_labels, until, until, roles, []
        )
    frame = read_outcomes(name, since=since, until=until, config=config)
    return decide(
        frame, condition, primary=primary, canary=canary, since=since, until=until,
        alpha=alpha, min_labels=min_labels,
    )  # fmt: skip


def canary_since(state: dict[str, Any]) -> float | None:
    """When the current canary began to serve traffic (states written before
    ``canary_since`` existed: the last canary event of that model with a weight)."""
    if "canary_since" in state:  # None: at weight 0 since it was set
        return float(state["canary_since"]) if state["canary_since"] else None
    label = ModelRef.from_dict(state["canary"]).label
    at = [
        float(e["at"])
        for e in state.get("events") or []
        if e.get("action") == "canary" and e.get("canary") == label and e.get("weight")
    ]
    return at[-1] if at else None
