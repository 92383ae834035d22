"""Results whose text is their whole presentation.

A registration, a pipeline run or a lineage reads the same printed by the command line,
echoed at a prompt and shown in a notebook: ``repr`` is the ``str``, and the notebook's HTML
is that text in a ``<pre>``.
"""

from __future__ import annotations

from html import escape
from typing import TypeVar

C = TypeVar("C", bound=type)


def _pre_html(self: object) -> str:
    return "<pre>" + escape(str(self)) + "</pre>"


def shown_as_text(cls: C) -> C:
    """Class decorator (put it above ``@dataclass``, whose own ``repr`` it replaces):
    ``repr(obj)`` is ``str(obj)``, and ``obj._repr_html_()`` that text in a ``<pre>``."""
    cls.__repr__ = cls.__str__  # type: ignore[method-assign]
    cls._repr_html_ = _pre_html  # type: ignore[attr-defined]
    return cls
