"""What the boosted-tree flavours (XGBoost, LightGBM) share: evaluation histories and more.

Evaluation histories have the shape ``{dataset: {metric: [step 0, step 1, ...]}}``: XGBoost
and LightGBM record one value per boosting round and evaluation set, on the estimator for
their scikit-learn API (``evals_result_``), and in a dict the user passes for their native
API (``xgb.train(..., evals_result=d)``, ``lgb.record_evaluation(d)``). These helpers read
the shape (without importing either framework), name the series the way MLflow's own
autologging does (``validation_0-logloss``), and find, among the values a cell assigned,
the one dict that belongs to a given booster. Besides: telling a framework's objects apart
without importing it, and the distribution that provides it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jupyter_mlops.tracking.environment import distribution_version
from jupyter_mlops.tracking.values import as_metric_value

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature

History = dict[str, dict[str, list[float]]]
_NOT_IN_METRIC_NAME = re.compile(r"[^\w.\- /:]")


def nested_history(value: Any) -> History | None:
    """``value`` as ``{dataset: {metric: [floats]}}`` if it has that shape and is not empty."""
    if not isinstance(value, Mapping) or not value:
        return None
    out: History = {}
    for data, metrics in value.items():
        if not isinstance(data, str) or not isinstance(metrics, Mapping) or not metrics:
            return None
        series: dict[str, list[float]] = {}
        for metric, points in metrics.items():
            if not isinstance(metric, str) or not isinstance(points, list | tuple) or not points:
                return None
            floats = [as_metric_value(p) for p in points]
            if any(f is None for f in floats):
                return None
            series[metric] = floats  # type: ignore[assignment]  # no None left
        out[data] = series
    return out


def metric_name(data: str, metric: str) -> str:
    """``validation_0-logloss``; ``ndcg@3`` becomes ``ndcg_at_3`` (MLflow refuses ``@``)."""
    name = f"{data}-{metric}".replace("@", "_at_")
    return _NOT_IN_METRIC_NAME.sub("_", name)


def flat(history: History | None) -> dict[str, list[float]]:
    """``{"dataset-metric": [floats]}`` for each series of ``history``."""
    if not history:
        return {}
    return {metric_name(d, m): list(s) for d, ms in history.items() for m, s in ms.items()}


def is_eval_history(value: Any) -> bool:
    """True for a non-empty ``{dataset: {metric: [numbers]}}`` dict (cheap for other values)."""
    if not isinstance(value, dict) or not value:
        return False
    first = next(iter(value.values()))
    return isinstance(first, Mapping) and nested_history(value) is not None


def find_history(
    values: Mapping[str, Any] | None, fits: Callable[[History], bool]
) -> dict[str, list[float]]:
    """The flattened history among ``values`` that ``fits`` the booster; {} if none or several.

    Several distinct dicts fitting the same booster (two identical trainings) would make the
    choice a guess: then nothing is taken rather than another model's history.
    """
    found: dict[int, History] = {}
    for value in (values or {}).values():
        if id(value) in found or not is_eval_history(value):
            continue
        history = nested_history(value)
        if history is not None and fits(history):
            found[id(value)] = history
    return flat(next(iter(found.values()))) if len(found) == 1 else {}


def close(a: float, b: float) -> bool:
    """Equal up to float32 rounding (boosters keep scores as float32 or in text)."""
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)


def from_module(obj: Any, top: str) -> bool:
    """True when ``obj``'s class (or a base class) is defined in package ``top``; no import."""
    if isinstance(obj, type):
        return False
    for cls in type(obj).__mro__:
        module = getattr(cls, "__module__", None) or ""
        if module == top or module.startswith(top + "."):
            return True
    return False


def framework_distribution(module: str) -> str:
    """The installed distribution providing ``module`` (``xgboost-cpu`` provides ``xgboost``)."""
    found = distribution_version(module)
    return found[0] if found else module


def guarded(fn: Callable[[Any], ModelSignature | None], model: Any) -> ModelSignature | None:
    """``fn(model)``, or None if it fails: a missing signature must not cost the model."""
    try:
        return fn(model)
    except Exception:
        return None
