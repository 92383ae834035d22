"""Records as plain dicts: the attributes of an object under their own names.

The ``to_dict`` of a result object is mostly its attributes as they are, plus a few that
need converting (a nested record, a path): one helper spells the first part everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def attributes(obj: Any, *names: str) -> dict[str, Any]:
    """``{name: obj.name}`` for each of ``names`` in order (all of a dataclass's fields when
    none are named). Values are not copied or converted, unlike :func:`dataclasses.asdict`."""
    if not names:
        names = tuple(f.name for f in dataclasses.fields(obj))
    return {name: getattr(obj, name) for name in names}
