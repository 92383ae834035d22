"""The alias lock: moves of one alias are serialised across processes and machines.

The lock is a registered model named ``<model>.mlops-lock.<alias>`` that exists while a move
is under way. Creating a registered model is atomic in every MLflow store (a unique name),
so the lock works the same on SQLite, PostgreSQL and behind a tracking server, with no
service of its own. A lock left by a process that died mid-move is cleared once stale.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from jupyter_mlops.errors import ConflictError, RegistryError
from jupyter_mlops.registry.context import current_user
from jupyter_mlops.registry.refs import LOCK_INFIX
from jupyter_mlops.tracking import store

if TYPE_CHECKING:
    from mlflow import MlflowClient

LOCK_TIMEOUT = 30.0  # seconds to wait for another promotion of the same alias
LOCK_STALE = 120.0  # a lock older than this was left by a process that died mid-move


class PromotionConflict(RegistryError, ConflictError):
    """Another promotion moved the alias first; this one changed nothing.

    ``current`` is the version that holds the alias now, ``expected`` the one this
    promotion was decided against. Re-check the new holder, then promote again.
    """

    def __init__(self, message: str, *, expected: str | None, current: str | None) -> None:
        super().__init__(message)
        self.expected = expected
        self.current = current


def lock_name(name: str, alias: str) -> str:
    """The registered model that locks ``name@alias``."""
    return f"{name}{LOCK_INFIX}{alias}"


@contextlib.contextmanager
def alias_lock(client: MlflowClient, name: str, alias: str) -> Iterator[None]:
    """Hold the lock on ``name@alias`` for one move (waits for another mover's release)."""
    from mlflow.exceptions import MlflowException

    lock = lock_name(name, alias)
    owner = f"{current_user()}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    deadline = time.monotonic() + LOCK_TIMEOUT
    delay = 0.02
    while True:
        try:
            store.call(
                client.create_registered_model,
                lock,
                tags={"mlops.lock.owner": owner, "mlops.lock.time": f"{time.time():.3f}"},
                description=f"Transient: a jupyter-mlops move of {name}@{alias} is under way.",
            )
            break
        except MlflowException as exc:
            # DOES_NOT_EXIST: the store created it and lost it to a concurrent delete
            # before adding its tags; try again like any contended lock.
            if not any(c in str(exc.error_code) for c in ("ALREADY_EXISTS", "DOES_NOT_EXIST")):
                raise
        held = lock_holder(client, lock)
        if held is not None and time.time() - held[1] > LOCK_STALE:
            # Its owner died between taking and releasing it; delete only that lock.
            if lock_holder(client, lock) == held:
                with contextlib.suppress(MlflowException):
                    store.call(client.delete_registered_model, lock)
            continue
        if time.monotonic() > deadline:
            who = held[0] if held else "another process"
            raise PromotionConflict(
                f"{name}@{alias} is being moved by {who} and was not released within "
                f"{LOCK_TIMEOUT:.0f} s; try again (a lock older than {LOCK_STALE:.0f} s is "
                f"cleared automatically, or delete the registered model {lock!r}).",
                expected=None,
                current=None,
            )
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.5)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            store.call(client.delete_registered_model, lock)


def lock_holder(client: MlflowClient, lock: str) -> tuple[str, float] | None:
    """Who holds ``lock`` and since when (epoch seconds), None if it is free."""
    from mlflow.exceptions import MlflowException

    try:
        model = store.call(client.get_registered_model, lock)
    except MlflowException:
        return None
    # Its tags may not be visible yet (a lock being created right now): then its creation
    # time on the store says how old it is. Never take a lock of unknown age for stale.
    owner = model.tags.get("mlops.lock.owner", "?")
    try:
        return owner, float(model.tags["mlops.lock.time"])
    except (KeyError, ValueError):
        created = getattr(model, "creation_timestamp", None)
        return owner, created / 1000 if created else time.time()
