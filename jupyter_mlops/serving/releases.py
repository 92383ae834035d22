"""Changing what a running deployment serves, without a restart and without a failed request:
canary, promote (blue-green) and rollback.

``promote(name, when="challenger.accuracy > primary.accuracy")`` promotes only when the
canary's live outcomes show the condition, significantly
(:mod:`jupyter_mlops.serving.decision`); the verdict and its evidence go on the
deployment's events either way (``promote`` or ``promotion refused``).

Each change only rewrites ``state.json`` as its next generation, under the deployment's lock.
Every server worker loads any new model first, then switches its routing and acknowledges the
generation; these functions return once all workers did. A worker that cannot load the new
model refuses the generation, and the previous state is written back as a newer one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jupyter_mlops._util.layout import read_state
from jupyter_mlops._util.processes import pid_alive
from jupyter_mlops.config import Config
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.decision import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_LABELS,
    Decision,
    PromotionCondition,
    PromotionRefused,
    judge_canary,
)
from jupyter_mlops.serving.deployment import Deployment
from jupyter_mlops.serving.errors import ServingError
from jupyter_mlops.serving.listing import (
    deployment_from_state,
    deployment_status,
    locked_state,
)
from jupyter_mlops.serving.state import (
    LOG_FILE,
    locked,
    log_tail,
    read_acks,
    record_event,
    write_state,
)
from jupyter_mlops.serving.targets import resolve_target

__all__ = ["SWITCH_TIMEOUT_S", "PromotionRefused", "canary", "promote", "rollback"]

#: How long the workers may take to load a model and switch to it.
SWITCH_TIMEOUT_S = 120.0


@contextlib.contextmanager
def _changing(name: str, config: Config | None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Lock a running deployment's state for a change; yields (folder, state copy)."""
    with locked_state(name, config) as (folder, state):
        status = deployment_status(state, check_health=False)
        if status not in ("running", "starting"):
            raise ServingError(f"Deployment {name!r} is {status}; deploy it again first.")
        yield folder, json.loads(json.dumps(state))


def _await_generation(folder: Path, state: dict[str, Any], timeout: float) -> str | None:
    """Wait until every worker serves ``state``'s generation; returns a worker's error."""
    generation, workers = int(state["generation"]), int(state.get("workers") or 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        acks = [a for a in read_acks(folder) if int(a.get("generation", 0)) >= generation]
        errors = [a["error"] for a in acks if a.get("error")]
        if errors:
            return str(errors[0])
        if len(acks) >= workers:
            return None
        if not pid_alive(int(state.get("pid") or 0)):
            raise ServingError(
                f"Deployment {state['name']!r} died. Last lines of {folder / LOG_FILE}:\n"
                f"{log_tail(folder / LOG_FILE)}"
            )
        time.sleep(0.02)
    raise ServingError(
        f"Deployment {state['name']!r} did not apply the change within {timeout:.0f} s "
        f"(see {folder / LOG_FILE})."
    )


def _apply(
    name: str,
    change: Callable[[dict[str, Any]], None],
    *,
    wait: bool = True,
    timeout: float = SWITCH_TIMEOUT_S,
    config: Config | None = None,
) -> Deployment:
    """Write ``change(state)`` as the next generation and wait for the workers to serve it."""
    with _changing(name, config) as (folder, state):
        previous = json.loads(json.dumps(state))
        change(state)
        state["generation"] = int(previous["generation"]) + 1
        write_state(folder, state)
    if wait:
        error = _await_generation(folder, state, timeout)
        if error is not None:
            with locked(folder):  # put back what is served, as a newer generation
                current = read_state(folder) or state
                previous["generation"] = int(current["generation"]) + 1
                record_event(previous, "reverted", reason=error)
                write_state(folder, previous)
            raise ServingError(f"Deployment {name!r} kept its previous models: {error}")
    return deployment_from_state(folder, state, "running" if wait else None)


def canary(
    name: str,
    target: str | None = None,
    weight: float = 10.0,
    *,
    wait: bool = True,
    timeout: float = SWITCH_TIMEOUT_S,
    config: Config | None = None,
) -> Deployment:
    """Send ``weight`` percent of ``name``'s traffic to ``target`` (sticky per request key).

    Without ``target``, changes the weight of the current canary; weight 0 keeps it loaded
    but idle. The server loads the canary before routing any request to it.
    """
    if not 0.0 <= float(weight) <= 100.0:
        raise ServingError(f"weight is a percentage between 0 and 100, not {weight}.")
    ref = resolve_target(target, config) if target is not None else None

    def change(state: dict[str, Any]) -> None:
        if ref is None and not state.get("canary"):
            raise ServingError(f"Deployment {name!r} has no canary: give a target.")
        if ref is not None:
            state["canary"], state["canary_since"] = ref.to_dict(), None
        if float(weight) > 0 and not state.get("canary_since"):
            state["canary_since"] = time.time()  # the decision's window starts here
        state["canary_weight"] = float(weight)
        label = ModelRef.from_dict(state["canary"]).label
        record_event(state, "canary", canary=label, weight=float(weight))

    return _apply(name, change, wait=wait, timeout=timeout, config=config)


def _replace_primary(
    state: dict[str, Any], model: dict[str, Any], action: str, now: float, **details: Any
) -> None:
    """Serve ``model`` as the primary from ``now`` on, recording ``action`` with both labels."""
    old = ModelRef.from_dict(state["primary"]).label
    state["primary"], state["primary_since"] = model, now
    record_event(state, action, primary=ModelRef.from_dict(model).label, replaced=old, **details)


def promote(
    name: str,
    *,
    when: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    min_labels: int = DEFAULT_MIN_LABELS,
    wait: bool = True,
    timeout: float = SWITCH_TIMEOUT_S,
    config: Config | None = None,
) -> Deployment:
    """Blue-green switch: the canary becomes the primary for all traffic, in one step.

    The old primary goes on the history (and stays loaded), so :func:`rollback` is instant.

    With ``when`` (e.g. ``"challenger.accuracy > primary.accuracy"``), only if the canary's
    and the primary's live outcomes since the canary began to serve show it: the condition
    holds and each comparison in it is significant at ``alpha``, with at least
    ``min_labels`` labelled rows per side. Otherwise :class:`PromotionRefused` (its
    ``decision`` says why: not enough labels, condition false, not significant). The
    decision and its evidence are recorded in the deployment's events either way.
    """
    condition = PromotionCondition(when) if when is not None else None

    def change(state: dict[str, Any]) -> None:
        if not state.get("canary"):
            raise ServingError(f"Deployment {name!r} has no canary to promote.")
        details: dict[str, Any] = {}
        if condition is not None:
            decision = judge_canary(
                name, state, condition, alpha=alpha, min_labels=min_labels, config=config
            )
            if not decision.promoted:
                raise PromotionRefused(decision)
            details["decision"] = decision.to_dict()
        now = time.time()
        history = list(state.get("history") or [])
        history.append(
            {"model": state["primary"], "since": state.get("primary_since"), "until": now}
        )
        state["history"] = history
        canary = state["canary"]
        state["canary"], state["canary_weight"], state["canary_since"] = None, 0.0, None
        _replace_primary(state, canary, "promote", now, **details)

    try:
        return _apply(name, change, wait=wait, timeout=timeout, config=config)
    except PromotionRefused as refused:
        _record_refusal(name, refused.decision, config)
        raise


def _record_refusal(name: str, decision: Decision, config: Config | None) -> None:
    """Put a refused promotion on the events; the same generation (nothing served changes,
    so the workers have nothing to apply)."""
    with locked_state(name, config) as (folder, state):
        canary = ModelRef.from_dict(state["canary"]).label if state.get("canary") else None
        primary = ModelRef.from_dict(state["primary"]).label
        record_event(
            state, "promotion refused", canary=canary, primary=primary,
            decision=decision.to_dict(),
        )  # fmt: skip
        write_state(folder, state)


def rollback(
    name: str,
    *,
    wait: bool = True,
    timeout: float = SWITCH_TIMEOUT_S,
    config: Config | None = None,
) -> Deployment:
    """Back to the previous primary (dropping any canary); with none, just drop the canary."""

    def change(state: dict[str, Any]) -> None:
        history = list(state.get("history") or [])
        if history:
            previous = history.pop()
            state["history"] = history
            _replace_primary(state, previous["model"], "rollback", time.time())
        elif state.get("canary"):
            dropped = ModelRef.from_dict(state["canary"]).label
            record_event(state, "rollback", dropped=dropped)
        else:
            raise ServingError(
                f"Deployment {name!r} has nothing to roll back: no earlier primary, no canary."
            )
        state["canary"], state["canary_weight"], state["canary_since"] = None, 0.0, None

    return _apply(name, change, wait=wait, timeout=timeout, config=config)
