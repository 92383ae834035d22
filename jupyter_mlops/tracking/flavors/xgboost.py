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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from jupyter_mlops.tracking.flavors.base import Flavor, LogArgs, pinned
from jupyter_mlops.tracking.flavors.boosting import (
    History,
    close,
    find_history,
    flat,
    framework_distribution,
    from_module,
    guarded,
    nested_history,
)
from jupyter_mlops.tracking.flavors.sklearn import estimator_params
from jupyter_mlops.tracking.values import as_param_value

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


class XGBoostFlavor(Flavor):
    """XGBoost estimators and boosters, through ``mlflow.xgboost`` (XGBoost's own format)."""

    name: ClassVar[str] = "xgboost"
    library: ClassVar[str] = "xgboost"

    def detects(self, obj: Any) -> bool:
        if not from_module(obj, "xgboost"):
            return False
        import xgboost as xgb  # the object comes from xgboost: it is imported already

        try:
            if isinstance(obj, xgb.Booster):
                return bool(obj.num_boosted_rounds() > 0)
            if isinstance(obj, xgb.XGBModel):
                return bool(obj.__sklearn_is_fitted__())
        except Exception:  # a half-built object is not a trained model
            return False
        return False

    def params(self, obj: Any) -> dict[str, str]:
        import xgboost as xgb

        out = booster_params(obj) if isinstance(obj, xgb.Booster) else estimator_params(obj)
        best = best_iteration(obj)
        if best is not None:
            out["best_iteration"] = str(best)
        return {k: v for k, v in out.items() if as_param_value(v) is not None}

    def step_metrics(
        self, obj: Any, values: Mapping[str, Any] | None = None
    ) -> dict[str, list[float]]:
        import xgboost as xgb

        if not isinstance(obj, xgb.Booster):
            return flat(nested_history(getattr(obj, "evals_result_", None)))
        rounds = obj.num_boosted_rounds()
        attributes = obj.attributes()

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

        return find_history(values, fits)

    def requirements(self, obj: Any) -> list[str]:
        import xgboost as xgb

        wanted = {"mlflow", "numpy", "pandas", framework_distribution("xgboost")}
        if not isinstance(obj, xgb.Booster):
            wanted.add("scikit-learn")  # XGBClassifier & co. subclass scikit-learn's bases
        return pinned(wanted)

    def log(self, obj: Any, args: LogArgs) -> ModelInfo:
        import mlflow.xgboost

        kwargs = args.as_kwargs()
        if args.signature is None:
            kwargs["signature"] = guarded(signature_from_features, obj)
            kwargs["input_example"] = None
        info: ModelInfo = mlflow.xgboost.log_model(obj, **kwargs, model_format="ubj")
        return info
