"""The bars a candidate must clear: a gate over its own metrics, or beating an alias holder.

A refused candidate raises ``GateFailed``, whose ``details()`` the server extension sends as
the JSON body of its error reply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from jupyter_mlops.conditions import Condition, ConditionResult
from jupyter_mlops.config import Config
from jupyter_mlops.errors import ConditionError, RegistryError
from jupyter_mlops.registry.lookup import find_version, registry_client
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.runs import LOWER_IS_BETTER

if TYPE_CHECKING:
    from mlflow.entities import Run


GateResult = ConditionResult
GateError = ConditionError


class Gate(Condition):
    """A bar over a run's metrics, e.g. ``accuracy >= 0.9 and f1 > 0.85``."""

    kind = "Gate"


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
    client = registry_client(config)
    if metric not in run.data.metrics:
        raise GateError(
            f"Run {run.info.run_id} has no metric {metric!r} "
            f"(it has: {', '.join(sorted(run.data.metrics)) or 'none'})"
        )
    lower = bool(LOWER_IS_BETTER.search(metric)) if lower_is_better is None else lower_is_better
    incumbent = find_version(client, ModelRef(name, alias=alias))
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
