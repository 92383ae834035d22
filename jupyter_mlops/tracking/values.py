"""Which values a run records: a real scalar is a metric value, a simple value a parameter.

Shared by the cell capture (names a cell assigns) and the model flavours (a model's
hyperparameters), so both write a value to MLflow the same way.
"""

from __future__ import annotations

import numbers
from typing import Any

PARAM_VALUE_TYPES = (str, int, float, bool, type(None))
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


def as_metric_value(value: Any) -> float | None:
    """A finite-or-not real scalar as float; None for anything else (bools excluded)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    # numpy 0-d arrays and numpy scalars that are not registered as numbers.Real
    if getattr(value, "shape", None) == () and getattr(value, "dtype", None) is not None:
        kind = getattr(value.dtype, "kind", None)
        if kind is not None:
            return float(value) if kind and kind in "iuf" else None
        # A 0-d tensor (torch): its number, from a detached copy (a loss still attached to
        # its graph warns when converted).
        try:
            detach = getattr(value, "detach", None)
            number = (detach() if callable(detach) else value).item()
        except Exception:
            return None
        return as_metric_value(number) if not hasattr(number, "shape") else None
    return None


def as_param_value(value: Any) -> str | None:
    """A value worth recording as a parameter, as MLflow will store it; None if not."""
    if isinstance(value, PARAM_VALUE_TYPES):
        text = str(value)
    elif isinstance(value, list | tuple | dict | set | frozenset):
        text = repr(value)
    elif as_metric_value(value) is not None:
        text = str(value.item() if hasattr(value, "item") else value)
    else:
        return None
    if len(text) > MAX_PARAM_LENGTH:
        return None
    return text
