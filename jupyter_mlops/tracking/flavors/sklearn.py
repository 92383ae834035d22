"""scikit-learn, and estimators that follow its API, logged with ``mlflow.sklearn``.

The generic flavour: any fitted object with ``fit``/``get_params`` and ``predict`` or
``transform`` is recognised by duck typing (no import of scikit-learn for objects from
other libraries) and pickled by MLflow's scikit-learn flavour.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from jupyter_mlops.tracking.environment import distribution_version
from jupyter_mlops.tracking.flavors.base import Flavor, LogArgs, pinned
from jupyter_mlops.tracking.values import PARAM_VALUE_TYPES, as_param_value

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


class SklearnFlavor(Flavor):
    """scikit-learn API estimators, through ``mlflow.sklearn`` with cloudpickle."""

    name: ClassVar[str] = "sklearn"
    library: ClassVar[str] = "sklearn"

    def detects(self, obj: Any) -> bool:
        return is_fitted_estimator(obj)

    def params(self, obj: Any) -> dict[str, str]:
        return estimator_params(obj)

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
