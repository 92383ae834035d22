"""XGBoost models, scikit-learn API and native ``Booster``, logged with ``mlflow.xgboost``.

``XGBClassifier``/``XGBRegressor`` (fitted) and a ``Booster`` from ``xgb.train`` are saved
in XGBoost's own format (UBJSON) by MLflow's native flavour: no pickle, loadable by any
XGBoost of a compatible version. Registered ahead of the scikit-learn flavour, which would
otherwise take the estimators by duck typing and pickle them.

Hyperparameters: ``get_params()`` for the estimators, the training configuration
(``Booster.save_config()``) for a native booster. Step metrics: ``evals_result_`` of the
estimators, or the ``evals_result`` dict the cell passed to ``xgb.train``. Requirements pin
the distribution that provides ``xgboost`` (``xgboost`` or ``xgboost-cpu``), and
scikit-learn only for the estimators, which need it to load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from jupyter_mlops.tracking.flavors.boosted import BoostedTreesFlavor
from jupyter_mlops.tracking.flavors.boosting import (
    History,
    close,
)

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo
    from mlflow.models.signature import ModelSignature

_INTEGER = re.compile(r"-?\d+")
# XGBoost's feature types as pandas dtypes for a signature; "c" (categorical) has none.
_DTYPES = {"float": "float64", "q": "float64", "int": "int64", "i": "bool"}


def _tidy(text: str) -> str:
    # The configuration stores float32 values as text ("0.300000012"): back to what was set.
    if _INTEGER.fullmatch(text):
        return text
    try:
        return f"{float(text):.7g}"
    except ValueError:
        return text


def booster_params(booster: Any) -> dict[str, str]:
    """A native booster's training parameters, read from its saved configuration."""
    try:
        learner = json.loads(booster.save_config())["learner"]
    except Exception:  # a booster whose configuration cannot be read keeps the run
        return {}
    out: dict[str, str] = {}

    def take(section: Any) -> None:
        for key, value in (section or {}).items():
            if isinstance(value, str) and value != "":
                out.setdefault(key, _tidy(value))

    take(learner.get("learner_train_param"))
    booster_config = learner.get("gradient_booster") or {}
    # gbtree: gbtree_train_param + tree_train_param; dart: nested under "gbtree";
    # gblinear: gblinear_train_param.
    for section in (booster_config, booster_config.get("gbtree") or {}):
        for key, value in section.items():
            if key.endswith("_train_param"):
                take(value)
    objective = (learner.get("objective") or {}).get("name")
    if objective:
        out["objective"] = objective
    metrics = [m.get("name") for m in learner.get("metrics") or [] if m.get("name")]
    if metrics:
        out["eval_metric"] = ",".join(metrics)
    seed = (learner.get("generic_param") or {}).get("seed")
    if seed is not None:
        out.setdefault("seed", str(seed))
    out["num_boost_round"] = str(booster.num_boosted_rounds())
    return out


def best_iteration(model: Any) -> int | None:
    """The best round found by early stopping; None when it was not used."""
    try:
        return int(model.best_iteration)  # AttributeError without early stopping
    except (AttributeError, TypeError, ValueError):
        return None


def signature_from_features(model: Any) -> ModelSignature | None:
    """A signature from the feature names and types the model was trained with.

    For a model whose training data the cell does not show (a ``Booster`` trained on a
    ``DMatrix``): the booster keeps the names and types of its columns, and one row of
    zeros in that shape gives the output type. None when the features are unnamed or
    categorical (their categories are not known).
    """
    import numpy as np
    import pandas as pd
    import xgboost as xgb
    from mlflow.models import infer_signature

    booster = model if isinstance(model, xgb.Booster) else model.get_booster()
    names, types = booster.feature_names, booster.feature_types
    if not names:
        return None
    types = types or ["float"] * len(names)
    if any(t not in _DTYPES for t in types):
        return None
    row = pd.DataFrame(
        {n: np.zeros(1, dtype=_DTYPES[t]) for n, t in zip(names, types, strict=True)}
    )
    out = model.predict(xgb.DMatrix(row) if isinstance(model, xgb.Booster) else row)
    return infer_signature(row, out)


class XGBoostFlavor(BoostedTreesFlavor):
    """XGBoost estimators and boosters, through ``mlflow.xgboost`` (XGBoost's own format)."""

    name: ClassVar[str] = "xgboost"
    library: ClassVar[str] = "xgboost"

    def classes(self) -> tuple[type, type]:
        import xgboost as xgb

        return xgb.Booster, xgb.XGBModel

    def rounds(self, booster: Any) -> int:
        return int(booster.num_boosted_rounds())

    # The module's functions, as the flavour's hooks.
    booster_params = staticmethod(booster_params)
    best_iteration = staticmethod(best_iteration)
    signature_from_features = staticmethod(signature_from_features)

    def history_fits(self, booster: Any) -> Callable[[History], bool]:
        rounds = booster.num_boosted_rounds()
        attributes = booster.attributes()

        def fits(history: History) -> bool:
            series = [s for metrics in history.values() for s in metrics.values()]
            if any(len(s) != rounds for s in series):
                return False
            # With early stopping the booster keeps the best score, taken from the last
            # metric of the last evaluation set: it must be in this history.
            best_at, best_score = attributes.get("best_iteration"), attributes.get("best_score")
            if best_at is not None and best_score is not None:
                last = list(list(history.values())[-1].values())[-1]
                return int(best_at) < len(last) and close(last[int(best_at)], float(best_score))
            return True

        return fits

    def log_native(self, obj: Any, kwargs: dict[str, Any]) -> ModelInfo:
        import mlflow.xgboost

        info: ModelInfo = mlflow.xgboost.log_model(obj, **kwargs, model_format="ubj")
        return info
