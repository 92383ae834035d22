"""LightGBM models, scikit-learn API and native ``Booster``, logged with ``mlflow.lightgbm``.

A ``Booster`` from ``lgb.train`` is saved in LightGBM's text format; ``LGBMClassifier`` /
``LGBMRegressor`` (fitted) with skops, whose list of trusted LightGBM types MLflow ships:
never pickle. Registered ahead of the scikit-learn flavour, which would otherwise take the
estimators by duck typing and pickle them.

Hyperparameters: ``get_params()`` for the estimators, ``Booster.params`` (what
``lgb.train`` was given) for a native booster. Step metrics: ``evals_result_`` of the
estimators, or the dict the cell handed to ``lgb.record_evaluation``. Requirements pin
lightgbm, and scikit-learn and skops only for the estimators, which need them to load.
"""

from __future__ import annotations

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

_UNNAMED = re.compile(r"Column_\d+")  # LightGBM's names for the columns of an array


def booster_params(booster: Any) -> dict[str, str]:
    """The parameters ``lgb.train`` was given (and the rounds it ran), as param strings."""
    out: dict[str, str] = {}
    for key, value in (getattr(booster, "params", None) or {}).items():
        text = as_param_value(value)
        if text is not None:
            out[str(key)] = text
    out["num_boost_round"] = str(booster.current_iteration())
    return out


def best_iteration(model: Any) -> int | None:
    """The best round found by early stopping (1-based, LightGBM's count); None without."""
    best = getattr(model, "best_iteration_", None)
    if best is None:
        best = getattr(model, "best_iteration", None)
    try:
        return int(best) if best is not None and int(best) > 0 else None
    except (TypeError, ValueError):
        return None


def signature_from_features(model: Any) -> ModelSignature | None:
    """A signature from the feature names the booster was trained with (no data needed).

    None for unnamed columns (trained on an array: ``Column_0``...) and for pandas
    categorical columns, whose categories a signature cannot state.
    """
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    booster = model if isinstance(model, lgb.Booster) else model.booster_
    names = booster.feature_name()
    if not names or all(_UNNAMED.fullmatch(n) for n in names) or booster.pandas_categorical:
        return None
    row = pd.DataFrame({n: np.zeros(1) for n in names})
    return infer_signature(row, model.predict(row))


class LightGBMFlavor(Flavor):
    """LightGBM estimators and boosters, through ``mlflow.lightgbm`` (text format / skops)."""

    name: ClassVar[str] = "lightgbm"
    library: ClassVar[str] = "lightgbm"

    def detects(self, obj: Any) -> bool:
        if not from_module(obj, "lightgbm"):
            return False
        import lightgbm as lgb  # the object comes from lightgbm: it is imported already

        try:
            if isinstance(obj, lgb.Booster):
                return bool(obj.current_iteration() > 0)
            if isinstance(obj, lgb.LGBMModel):
                return bool(obj.__sklearn_is_fitted__())
        except Exception:  # a half-built object is not a trained model
            return False
        return False

    def params(self, obj: Any) -> dict[str, str]:
        import lightgbm as lgb

        out = booster_params(obj) if isinstance(obj, lgb.Booster) else estimator_params(obj)
        best = best_iteration(obj)
        if best is not None:
            out["best_iteration"] = str(best)
        return out

    def step_metrics(
        self, obj: Any, values: Mapping[str, Any] | None = None
    ) -> dict[str, list[float]]:
        import lightgbm as lgb

        if not isinstance(obj, lgb.Booster):
            return flat(nested_history(getattr(obj, "evals_result_", None)))
        rounds = obj.current_iteration()
        at = obj.best_iteration - 1 if obj.best_iteration > 0 else None
        best = {d: dict(ms) for d, ms in (obj.best_score or {}).items()}

        def fits(history: History) -> bool:
            # lgb.train keeps the score of the best (or last) round per set and metric:
            # the history must hold the same sets and metrics, with that value there.
            if not best or {d: set(ms) for d, ms in history.items()} != {
                d: set(ms) for d, ms in best.items()
            }:
                return False
            for data, metrics in best.items():
                for metric, score in metrics.items():
                    series = history[data][metric]
                    i = at if at is not None else len(series) - 1
                    if len(series) < rounds or i >= len(series) or not close(series[i], score):
                        return False
            return True

        return find_history(values, fits)

    def requirements(self, obj: Any) -> list[str]:
        import lightgbm as lgb

        wanted = {"mlflow", "numpy", "pandas", framework_distribution("lightgbm")}
        if not isinstance(obj, lgb.Booster):
            wanted |= {"scikit-learn", "skops"}  # the estimators load through skops
        return pinned(wanted)

    def log(self, obj: Any, args: LogArgs) -> ModelInfo:
        import lightgbm as lgb
        import mlflow.lightgbm

        kwargs = args.as_kwargs()
        if args.signature is None:
            kwargs["signature"] = guarded(signature_from_features, obj)
            kwargs["input_example"] = None
        if not isinstance(obj, lgb.Booster):
            # MLflow's default for the estimators off Databricks, stated so that it holds
            # on Databricks too (where MLflow would pickle).
            kwargs["serialization_format"] = "skops"
        info: ModelInfo = mlflow.lightgbm.log_model(obj, **kwargs)
        return info
