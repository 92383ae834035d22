"""What an alert rule does when it fires: its action, ``"<kind>:<argument>"``.

Kinds are registered explicitly, as a callable or as a ``"module:function"`` reference
imported only when such an action first runs (:class:`LazyAction`), so checking alerts from
cron imports nothing it does not need. Built in: ``webhook:<url>`` (POST the firing as
JSON) and ``pipeline:<pipeline.yaml>`` (retrain, :func:`jupyter_mlops.pipelines.retrain`);
:func:`register_action` adds more, each with an optional check of its argument.

A rule's action is checked when the rule is defined (:func:`check_action`): its kind must be
registered and its argument must parse, so ``exec:rm -rf /`` is refused when stored, not
discovered when it fires. There is no built-in ``exec`` (or any shell) action on purpose:
an alert rule can be written from a notebook, a config file or the sidebar, and running
its text as a command would turn any of them into a shell. Code that wants one registers
a function of its own with ``register_action`` (which then decides what it runs).
"""

from __future__ import annotations

import importlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from jupyter_mlops.errors import MlopsError, MonitoringError, UsageError

WEBHOOK_TIMEOUT_S = 5.0

#: ``kind -> fn(argument, event)``: what a rule's ``action = "kind:argument"`` runs.
ActionFn = Callable[[str, dict[str, Any]], Any]
_ACTIONS: dict[str, ActionFn] = {}
#: ``kind -> check(argument)``: raises MlopsError when an argument cannot be used.
_CHECKS: dict[str, Callable[[str], None]] = {}


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


def register_action(
    kind: str, fn: ActionFn | str, *, check: Callable[[str], None] | None = None
) -> None:
    """Make rules with ``action="<kind>:<argument>"`` call ``fn(argument, event)``.

    ``fn`` is a callable, or a ``"module:function"`` reference imported when the action
    first runs. ``event`` holds ``deployment``, ``rule``, ``value``, ``values``, ``time``,
    ``figures``. What ``fn`` returns is recorded with the firing; what it raises is
    recorded as the action's error (the check goes on). ``check(argument)``, if given,
    runs when a rule with this action is defined and raises MlopsError on a bad argument.
    """
    if isinstance(fn, str):
        fn = LazyAction(fn)
    if not kind or ":" in kind or not callable(fn):
        raise MlopsError("register_action(kind, fn): a kind without ':' and a callable")
    _ACTIONS[kind] = fn
    if check is not None:
        _CHECKS[kind] = check
    else:
        _CHECKS.pop(kind, None)


def check_action(action: str) -> None:
    """A UsageError unless ``action`` reads ``kind:argument`` with a registered kind and an
    argument that kind accepts (one line naming the known kinds)."""
    kind, sep, argument = action.partition(":")
    if not sep or not kind or not argument.strip():
        raise UsageError(
            f"Action {action!r} must read kind:argument, e.g. webhook:https://... "
            "or pipeline:pipelines/retrain.yaml"
        )
    if kind not in _ACTIONS:
        known = ", ".join(sorted(_ACTIONS)) or "none"
        raise UsageError(
            f"No alert action kind {kind!r} (known: {known}); there is no shell action: "
            "jupyter_mlops.monitoring.register_action adds a kind from code"
        )
    check = _CHECKS.get(kind)
    if check is not None:
        try:
            check(argument)
        except MlopsError as exc:
            raise UsageError(f"Action {action!r}: {exc}") from None


def check_pipeline_file(path: str) -> None:
    """A ``pipeline:`` action's argument: a pipeline YAML file name, one line."""
    if "\n" in path or "\x00" in path or not path.strip().endswith((".yaml", ".yml")):
        raise MlopsError(f"a pipeline action names a .yaml file, not {path!r}")


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
register_action("webhook", lambda url, event: post_json(url, event), check=check_url)
register_action(
    "pipeline", "jupyter_mlops.pipelines.retrain:run_alert_action", check=check_pipeline_file
)
