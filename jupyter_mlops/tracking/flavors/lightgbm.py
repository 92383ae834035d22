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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from jupyter_mlops.tracking.flavors.boosted import BoostedTreesFlavor
from jupyter_mlops.tracking.flavors.boosting import (
    History,
    close,
)
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


class LightGBMFlavor(BoostedTreesFlavor):
    """LightGBM estimators and boosters, through ``mlflow.lightgbm`` (text format / skops)."""

    name: ClassVar[str] = "lightgbm"
    library: ClassVar[str] = "lightgbm"
    # The estimators load through skops.
    estimator_requirements: ClassVar[frozenset[str]] = frozenset({"scikit-learn", "skops"})

    def classes(self) -> tuple[type, type]:
        import lightgbm as lgb

        return lgb.Booster, lgb.LGBMModel

    def rounds(self, booster: Any) -> int:
        return int(booster.current_iteration())

    # The module's functions, as the flavour's hooks.
    booster_params = staticmethod(booster_params)
    best_iteration = staticmethod(best_iteration)
    signature_from_features = staticmethod(signature_from_features)

    def history_fits(self, booster: Any) -> Callable[[History], bool]:
        rounds = booster.current_iteration()
        at = booster.best_iteration - 1 if booster.best_iteration > 0 else None
        best = {d: dict(ms) for d, ms in (booster.best_score or {}).items()}

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

        return fits

    def log_native(self, obj: Any, kwargs: dict[str, Any]) -> ModelInfo:
        import mlflow.lightgbm

        if not self.is_booster(obj):
            # MLflow's default for the estimators off Databricks, stated so that it holds
            # on Databricks too (where MLflow would pickle).
            kwargs["serialization_format"] = "skops"
        info: ModelInfo = mlflow.lightgbm.log_model(obj, **kwargs)
        return info
