"""scikit-learn, and estimators that follow its API, logged with ``mlflow.sklearn``.

The generic flavour: any fitted object with ``fit``/``get_params`` and ``predict`` or
``transform`` is recognised by duck typing (no import of scikit-learn for objects from
other libraries) and pickled by MLflow's scikit-learn flavour.

Hyperparameter searches (``GridSearchCV``, ``RandomizedSearchCV``, ``HalvingGridSearchCV``
and anything else with ``best_params_``/``cv_results_``) are unwrapped: the model is the
refitted ``best_estimator_`` (whatever its framework), the run's params are the best
candidate's, and the search's table of candidates is kept as an artifact.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from jupyter_mlops.tracking.environment import distribution_version
from jupyter_mlops.tracking.flavors.base import Flavor, LogArgs, Unwrapped, pinned
from jupyter_mlops.tracking.values import (
    MAX_PARAM_LENGTH,
    PARAM_VALUE_TYPES,
    as_metric_value,
    as_param_value,
)

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

# What loading a cloudpickled scikit-learn model needs besides the estimator's own packages.
BASE_REQUIREMENTS = ("mlflow", "cloudpickle", "numpy", "pandas", "scipy", "scikit-learn")


def is_fitted_estimator(obj: Any) -> bool:
    """A scikit-learn style estimator that has been fitted (duck-typed, no import)."""
    if isinstance(obj, type) or not (hasattr(obj, "fit") and hasattr(obj, "get_params")):
        return False
    if not (hasattr(obj, "predict") or hasattr(obj, "transform")):
        return False
    module = type(obj).__module__ or ""
    if module.startswith("sklearn"):
        from sklearn.exceptions import NotFittedError  # sklearn already imported by the cell
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(obj)
        except (NotFittedError, TypeError):
            return False
        return True
    # Third-party estimators (xgboost, lightgbm, ...) follow the trailing-underscore convention.
    return any(k.endswith("_") and not k.startswith("_") for k in vars(obj))


def estimator_params(model: Any) -> dict[str, str]:
    """The model's hyperparameters that have a simple value, as MLflow param strings."""
    try:
        raw = model.get_params(deep=True)
    except Exception:  # a broken get_params must not lose the run
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, float) and math.isnan(value):
            out[key] = "nan"
            continue
        text = as_param_value(value) if isinstance(value, PARAM_VALUE_TYPES) else None
        if text is not None:
            out[key] = text
    return out


def estimator_parts(model: Any, depth: int = 0) -> list[Any]:
    """The model and every estimator nested in it (pipeline steps, column transformers)."""
    parts = [model]
    if depth > 5:
        return parts
    try:
        params = model.get_params(deep=False)
    except Exception:
        return parts
    for value in params.values():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            # Pipeline steps and ColumnTransformer entries are tuples holding the estimator.
            for part in item if isinstance(item, tuple) else (item,):
                if hasattr(part, "get_params") and not isinstance(part, type):
                    parts.extend(estimator_parts(part, depth + 1))
    return parts


CV_RESULTS_ARTIFACT = "mlops/cv_results.csv"


def is_search(obj: Any) -> bool:
    """A fitted hyperparameter search (scikit-learn's ``BaseSearchCV`` API, duck-typed)."""
    return hasattr(obj, "cv_results_") and hasattr(obj, "best_params_")


def _param_text(value: Any) -> str:
    text = as_param_value(value)
    return text if text is not None else str(value)[:MAX_PARAM_LENGTH]


def bare_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Search params by their bare names (``clf__max_depth`` -> ``max_depth``).

    The full name is kept where the bare one would be ambiguous (two steps' ``alpha``).
    """
    tails = Counter(key.rsplit("__", 1)[-1] for key in params)
    out: dict[str, str] = {}
    for key, value in params.items():
        tail = key.rsplit("__", 1)[-1]
        out[tail if tails[tail] == 1 else key] = _param_text(value)
    return out


def scorer_name(search: Any) -> str | None:
    """The name of the score ``best_score_`` is: ``refit`` if it names one, else ``scoring``."""
    for candidate in (getattr(search, "refit", None), getattr(search, "scoring", None)):
        if isinstance(candidate, str) and candidate.isidentifier():
            return candidate
    return None


def _candidates(search: Any) -> list[tuple[dict[str, str], dict[str, float]]]:
    """Each candidate's params and its CV scores and times, from ``cv_results_``."""
    results = search.cv_results_
    rows = []
    for i, params in enumerate(results.get("params", [])):
        metrics: dict[str, float] = {}
        for key, values in results.items():
            if key.startswith(("mean_", "std_", "rank_")) or key in ("iter", "n_resources"):
                value = as_metric_value(values[i])
                if value is not None and not math.isnan(value):
                    metrics[key] = value
        rows.append((bare_params(params), metrics))
    return rows


def unwrap_search(search: Any) -> Unwrapped:
    """The best estimator of a fitted search, with its params, score and candidates."""
    import pandas as pd

    scorer = scorer_name(search)
    metrics: dict[str, float] = {}
    score = as_metric_value(getattr(search, "best_score_", None))
    if score is not None:
        metrics["best_cv_score"] = score
        if scorer is not None:
            metrics[f"best_cv_{scorer}"] = score
    table = pd.DataFrame(search.cv_results_)
    return Unwrapped(
        model=getattr(search, "best_estimator_", search),
        params=bare_params(search.best_params_),
        metrics=metrics,
        artifacts={CV_RESULTS_ARTIFACT: table.to_csv(index=False)},
        candidates=_candidates(search),
        kind=type(search).__name__,
    )


class SklearnFlavor(Flavor):
    """scikit-learn API estimators, through ``mlflow.sklearn`` with cloudpickle."""

    name: ClassVar[str] = "sklearn"
    library: ClassVar[str] = "sklearn"

    def parts(self, obj: Any) -> list[Any]:
        return estimator_parts(obj)[1:]

    def detects(self, obj: Any) -> bool:
        return is_fitted_estimator(obj)

    def params(self, obj: Any) -> dict[str, str]:
        """The hyperparameters; for a search, the best candidate's (then the best model's)."""
        if not is_search(obj):
            return estimator_params(obj)
        unwrapped = self.unwrap(obj)
        if unwrapped.model is obj:  # refit=False: no best estimator, only its params
            return dict(unwrapped.params)
        from jupyter_mlops.tracking import flavors  # the registry imports this module

        flavor = flavors.flavor_for(unwrapped.model) or self
        inner = flavor.params(unwrapped.model)
        return {**unwrapped.params, **{k: v for k, v in inner.items() if k not in unwrapped.params}}

    def unwrap(self, obj: Any) -> Unwrapped:
        return unwrap_search(obj) if is_search(obj) else Unwrapped(obj)

    def requirements(self, obj: Any) -> list[str]:
        """The base packages plus the distributions defining the estimator and its parts."""
        wanted = set(BASE_REQUIREMENTS)
        for part in estimator_parts(obj):
            top = (type(part).__module__ or "").split(".", 1)[0]
            dist = distribution_version(top) if top else None
            if dist:
                wanted.add(dist[0])
        return pinned(wanted)

    def log(self, obj: Any, args: LogArgs) -> ModelInfo:
        import mlflow.sklearn

        # skops (MLflow 3's default) refuses common estimators such as RandomForest
        # without a list of trusted types.
        info: ModelInfo = mlflow.sklearn.log_model(
            obj, **args.as_kwargs(), serialization_format="cloudpickle"
        )
        return info
