"""What an alert rule does when it fires: its action, ``"<kind>:<argument>"``.

Kinds are registered explicitly, as a callable or as a ``"module:function"`` reference
imported only when such an action first runs (:class:`LazyAction`), so checking alerts from
cron imports nothing it does not need. Built in: ``webhook:<url>`` (POST the firing as
JSON) and ``pipeline:<pipeline.yaml>`` (retrain, :func:`jupyter_mlops.pipelines.retrain`);
:func:`register_action` adds more.
"""

from __future__ import annotations

import importlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from jupyter_mlops.errors import MlopsError, MonitoringError

WEBHOOK_TIMEOUT_S = 5.0

#: ``kind -> fn(argument, event)``: what a rule's ``action = "kind:argument"`` runs.
ActionFn = Callable[[str, dict[str, Any]], Any]
_ACTIONS: dict[str, ActionFn] = {}


class LazyAction:
    """An action named by ``"module:function"``, imported when it first runs.

    Built-in actions that live in heavier parts of the package are declared this way, so
    that checking alerts imports them only when such a rule fires.
    """

    def __init__(self, reference: str) -> None:
        module, sep, name = reference.partition(":")
        if not sep or not module or not name:
            raise MlopsError(f"An action reference reads module:function, not {reference!r}")
        self.reference = reference
        self._fn: ActionFn | None = None

    def load(self) -> ActionFn:
        """The function, imported; MonitoringError saying why when it cannot be."""
        if self._fn is None:
            module, _, name = self.reference.partition(":")
            try:
                fn = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError) as exc:
                raise MonitoringError(
                    f"the action {self.reference} cannot be loaded: {type(exc).__name__}: {exc}"
                ) from exc
            if not callable(fn):
                raise MonitoringError(f"the action {self.reference} is not a function")
            self._fn = fn
        return self._fn

    def __call__(self, argument: str, event: dict[str, Any]) -> Any:
        return self.load()(argument, event)

    def __repr__(self) -> str:
        return f"LazyAction({self.reference!r})"


def register_action(kind: str, fn: ActionFn | str) -> None:
    """Make rules with ``action="<kind>:<argument>"`` call ``fn(argument, event)``.

    ``fn`` is a callable, or a ``"module:function"`` reference imported when the action
    first runs. ``event`` holds ``deployment``, ``rule``, ``value``, ``values``, ``time``,
    ``figures``. What ``fn`` returns is recorded with the firing; what it raises is
    recorded as the action's error (the check goes on).
    """
    if isinstance(fn, str):
        fn = LazyAction(fn)
    if not kind or ":" in kind or not callable(fn):
        raise MlopsError("register_action(kind, fn): a kind without ':' and a callable")
    _ACTIONS[kind] = fn


def registered_actions() -> dict[str, ActionFn]:
    """The action kinds and what each runs."""
    return dict(_ACTIONS)


def check_url(url: str) -> None:
    """A MlopsError unless ``url`` is an http(s) URL (webhooks are POSTed to it)."""
    if not url.startswith(("http://", "https://")):
        raise MlopsError(f"Webhook URL must start with http:// or https://, not {url!r}")


def post_json(url: str, payload: Mapping[str, Any], timeout: float = WEBHOOK_TIMEOUT_S) -> int:
    """POST ``payload`` as JSON; returns the HTTP status, raises MlopsError on failure."""
    check_url(url)
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "jupyter-mlops"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise MlopsError(f"webhook {url} answered HTTP {exc.code}") from None
    except (OSError, urllib.error.URLError) as exc:
        raise MlopsError(f"webhook {url} unreachable: {exc}") from None


# The built-in actions.
register_action("webhook", lambda url, event: post_json(url, event))
register_action("pipeline", "jupyter_mlops.pipelines.retrain:run_alert_action")
