"""Aliases: promote, roll back, and the history of who moved which alias when.

MLflow keeps only where an alias points now. Every move is also recorded in MLflow tags
(``registry/alias_log.py``: one line for people and a JSON log per alias, on the registered
model and its versions), readable by any MLflow client and in the MLflow UI, with the user,
notebook, git commit and the gate or comparison that allowed it. Rollback walks that
history back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError, RegistryError
from jupyter_mlops.registry import alias_log
from jupyter_mlops.registry.alias_log import AliasEvent
from jupyter_mlops.registry.context import current_user, operation_context, utc_now
from jupyter_mlops.registry.gates import Gate, GateFailed
from jupyter_mlops.registry.lock import PromotionConflict, alias_lock
from jupyter_mlops.registry.lookup import alias_holder, get_version, registry_client
from jupyter_mlops.registry.refs import ModelRef, check_alias, check_model_name
from jupyter_mlops.tracking import store

if TYPE_CHECKING:
    from mlflow import MlflowClient

HISTORY_PREFIX = alias_log.LEGACY_PREFIX  # older projects: one tag per move (still read)
_CURRENT: Any = object()  # "the holder when the operation started"
__all__ = ["HISTORY_PREFIX", "AliasEvent", "history", "promote", "rollback"]


def history(
    name: str,
    *,
    client: MlflowClient | None = None,
    config: Config | None = None,
    skipped: list[str] | None = None,
) -> list[AliasEvent]:
    """Every recorded alias change of model ``name``, oldest first; a damaged entry is left
    out and described in ``skipped`` (one line each)."""
    client = client or registry_client(config)
    check_model_name(name)
    from mlflow.exceptions import MlflowException

    try:
        model = store.call(client.get_registered_model, name)
    except MlflowException:
        raise NotFoundError(f"No registered model {name!r}") from None
    return alias_log.read_events(model.tags, skipped)


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


def _conflict(
    client: MlflowClient, name: str, alias: str, action: str, expected: Any, current: str | None
) -> PromotionConflict:
    """The error for a move decided against ``expected`` while ``current`` holds the alias."""
    last = next((e for e in reversed(history(name, client=client)) if e.alias == alias), None)
    by = f" by {last.user} at {last.time[:19].replace('T', ' ')} UTC" if last else ""
    return PromotionConflict(
        f"{name}@{alias} moved from version {expected or '(none)'} to "
        f"{current or '(none)'}{by} while this {action} was decided; nothing was "
        f"changed. Check version {current} and {action} again if it is still right.",
        expected=expected,
        current=current,
    )


def move_alias(
    client: MlflowClient,
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
    with alias_lock(client, name, alias):
        previous = alias_holder(client, name, alias)
        if expected is not _CURRENT and previous != expected:
            raise _conflict(client, name, alias, action, expected, previous)
        event = AliasEvent(
            model=name,
            alias=alias,
            version=version,
            previous=previous,
            action=action,
            time=utc_now(),
            user=current_user(),
            notebook=ctx.get("notebook"),
            git_commit=ctx.get("git_commit"),
            **extra,
        )
        if version is None:
            store.call(client.delete_registered_model_alias, name, alias)
        else:
            store.call(client.set_registered_model_alias, name, alias, version)
        # The versions' own mlops.alias.<alias> lines replace the mlops.<action>.<alias>
        # timestamps written before (still on older versions, read by nobody).
        alias_log.record(client, event)
    return event


def undo_alias(client: MlflowClient, name: str, alias: str) -> None:
    """Take back the last recorded move of ``name@alias`` and its history entry."""
    last = alias_log.remove_last(client, name, alias)
    if last is None:
        return
    if last.previous:
        store.call(client.set_registered_model_alias, name, alias, last.previous)
    else:
        store.call(client.delete_registered_model_alias, name, alias)


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
    client = registry_client(config)
    if expected is _CURRENT and not force:
        expected = alias_holder(client, parsed.name, alias)
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
    return move_alias(
        client,
        parsed.name,
        alias,
        str(version.version),
        "promote",
        operation_context(context, config),
        expected=_CURRENT if force else expected,
        gate=gate_info,
    )


def rollback(
    name: str,
    alias: str,
    *,
    context: Mapping[str, Any] | None = None,
    config: Config | None = None,
    skipped: list[str] | None = None,
) -> AliasEvent:
    """Move ``alias`` back to the version that held it before the current one, as the
    well-formed entries of its history say (damaged ones are described in ``skipped``)."""
    config = config or load_config()
    check_model_name(name)
    check_alias(alias)
    client = registry_client(config)
    current = alias_holder(client, name, alias)
    stack = _holders(history(name, client=client, skipped=skipped), alias)
    if len(stack) < 2:
        raise RegistryError(
            f"Nothing to roll back to: {name}@{alias} has no earlier holder in its history"
        )
    target = stack[-2]
    return move_alias(
        client,
        name,
        alias,
        target,
        "rollback",
        operation_context(context, config),
        expected=current,
    )
