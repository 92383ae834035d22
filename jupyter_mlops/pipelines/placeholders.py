"""``${name}`` placeholders in step parameters and paths, resolved one way everywhere.

``pipeline run`` and a DVC stage (``dvc repro`` runs ``python -m jupyter_mlops.pipelines
step``, which reads the step's section of ``params.yaml``) both plan through
:func:`resolve_params` and :func:`fill`, so a step parameter written ``alpha: "${alpha}"``
reaches the notebook as the pipeline's ``alpha`` under either, never as the text
``'${alpha}'``.

What a placeholder names, in order:

* in a step parameter: another parameter of the same step (resolved first), then the
  run's context (pipeline parameters with the run's overrides, ``run_dir``, ``run_id``).
  A parameter naming itself (``alpha: "${alpha}"``) means the pipeline's ``alpha``;
* in an input or output path: the step's resolved parameters, then the context.

A value that is only a placeholder keeps the type of what it names (``${seed}`` stays an
int); inside longer text it is formatted with ``str``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jupyter_mlops.errors import PipelineError

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${name} in a value or path
BUILTIN_NAMES = ("run_dir", "run_id")  # placeholders every step can use


def names_in(texts: Iterable[Any]) -> set[str]:
    """The names the ``${...}`` placeholders of ``texts`` refer to."""
    return {m for t in texts for m in PLACEHOLDER.findall(str(t))}


def substitute(value: Any, lookup: Callable[[str], Any]) -> Any:
    """``value`` with each ``${name}`` replaced by ``lookup(name)``; non-text unchanged."""
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = PLACEHOLDER.fullmatch(value)
    if whole:
        return lookup(whole.group(1))
    return PLACEHOLDER.sub(lambda m: str(lookup(m.group(1))), value)


def _unknown(step: str, name: str, known: Iterable[str]) -> PipelineError:
    return PipelineError(
        f"step {step!r}: ${{{name}}} names no parameter (known: {', '.join(sorted(known))})"
    )


def fill(value: Any, scope: Mapping[str, Any], step: str) -> Any:
    """``value`` with its placeholders taken from ``scope`` (an input or output path)."""

    def lookup(name: str) -> Any:
        if name not in scope:
            raise _unknown(step, name, scope)
        return scope[name]

    return substitute(value, lookup)


def resolve_params(
    params: Mapping[str, Any], context: Mapping[str, Any], step: str
) -> dict[str, Any]:
    """The step's parameters with every placeholder resolved (see the module docstring).

    Raises :class:`PipelineError` for a placeholder naming nothing known, or parameters
    naming each other in a cycle.
    """
    done: dict[str, Any] = {}
    active: list[str] = []

    def value_of(key: str) -> Any:
        if key in done:
            return done[key]
        if key in active:
            cycle = " -> ".join([*active[active.index(key) :], key])
            raise PipelineError(f"step {step!r}: parameters name each other in a cycle: {cycle}")
        active.append(key)

        def lookup(name: str) -> Any:
            if name != key and name in params:
                return value_of(name)
            if name in context:
                return context[name]
            raise _unknown(step, name, {*context, *params})

        done[key] = substitute(params[key], lookup)
        active.pop()
        return done[key]

    return {key: value_of(key) for key in params}
