"""A record that cannot be read, described instead of hidden.

When one file of many (a pipeline run's ``run.json``, a buffered run, a retraining
decision) is truncated or mistyped, listings keep the others and show this in its place:
the path, what is wrong, and what to do. ``jupyter-mlops doctor`` reports the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Damaged:
    """One damaged record: ``kind`` (what it is), ``path``, ``problem`` and ``fix``."""

    kind: str
    path: Path
    problem: str
    fix: str

    @property
    def mtime(self) -> float:
        """When the file last changed (0 when it cannot be read): where listings sort it."""
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def __str__(self) -> str:
        return f"{self.kind} {self.path} is damaged ({self.problem}); fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "problem": self.problem, "fix": self.fix}


def type_problem(
    data: Any, types: dict[str, tuple[type, ...]], required: tuple[str, ...]
) -> str | None:
    """Why the JSON object ``data`` does not have ``required`` fields and the ``types``
    its readers rely on (a ``bool`` is no number here), or None."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    for key in required:
        if key not in data:
            return f"the field {key!r} is missing"
    for key, allowed in types.items():
        value = data.get(key)
        if value is None and (key not in data or type(None) in allowed):
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            return f"the field {key!r} is {type(value).__name__} {str(value)[:40]!r}"
    return None
