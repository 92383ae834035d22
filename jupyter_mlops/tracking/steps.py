"""Step metrics: learning curves a cell produced, logged as MLflow metric histories.

Two sources: scalars with metric-like names updated in a loop (the recorder appends one
step per iteration, see :mod:`jupyter_mlops.tracking.recorder`), and lists, tuples or
1-d arrays of numbers the cell built under a metric-like name, plural forms included
(``losses``, ``train_losses``, ``val_accs``). Either way the final value is the last step,
logged once, never again as a separate value at step 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jupyter_mlops.tracking.values import as_metric_value

MAX_STEPS = 100_000  # longer series are thinned evenly (the last step always kept)


def singular(name: str) -> str | None:
    """``losses`` -> ``loss``, ``val_accs`` -> ``val_acc``, ``accuracies`` -> ``accuracy``;
    None when ``name`` does not look plural."""
    lower = name.lower()
    if lower.endswith("ies") and len(name) > 3:
        return name[:-3] + "y"
    if lower.endswith("sses") or lower.endswith("xes"):
        return name[:-2]
    if lower.endswith("s") and not lower.endswith("ss") and len(name) > 1:
        return name[:-1]
    return None


def series(value: Any) -> list[float] | None:
    """The numbers of a list, tuple or 1-d numeric array (at least one); else None."""
    if isinstance(value, list | tuple):
        if not value:
            return None
        numbers = [as_metric_value(v) for v in value]
        if any(n is None for n in numbers):
            return None
        return [float(n) for n in numbers if n is not None]
    if getattr(value, "ndim", None) == 1 and getattr(value.dtype, "kind", "") in "iuf":
        if len(value) == 0:
            return None
        return [float(v) for v in value.tolist()]
    return None


def thin(values: list[float]) -> list[tuple[int, float]]:
    """(step, value) pairs to log: every step, or MAX_STEPS evenly spaced ones plus the last."""
    n = len(values)
    if n <= MAX_STEPS:
        return list(enumerate(values))
    stride = -(-n // MAX_STEPS)
    steps = list(range(0, n, stride))
    if steps[-1] != n - 1:
        steps.append(n - 1)
    return [(i, values[i]) for i in steps]


def with_final(
    histories: Mapping[str, list[float]], finals: Mapping[str, float]
) -> dict[str, list[float]]:
    """Each history ending with its name's final value (appended as one more step when a
    statement after the loop changed it), so the final value is the last step."""
    out = {k: list(v) for k, v in histories.items()}
    for key, steps in out.items():
        final = finals.get(key)
        if final is None or not steps:
            continue
        last = steps[-1]
        if last != final and not (math.isnan(last) and math.isnan(final)):
            steps.append(final)
    return out
