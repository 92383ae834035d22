"""The shape XGBoost's and LightGBM's flavours share: an estimator API and a native booster.

Both frameworks offer scikit-learn estimators (``XGBClassifier``, ``LGBMRegressor``, ...)
and a native ``Booster`` trained with ``xgb.train``/``lgb.train``. Detection, params, step
metrics, requirements and logging follow the same steps for both; a subclass names its
framework's classes and supplies what differs (round count, booster params, how to match a
booster to its evaluation history, the native log call).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from jupyter_mlops.tracking.flavors.base import Flavor, LogArgs, pinned
from jupyter_mlops.tracking.flavors.boosting import (
    History,
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


class BoostedTreesFlavor(Flavor):
    """A boosted-trees framework with a scikit-learn estimator API and a native booster."""

    #: What the estimators (not the boosters) need besides the framework to load.
    estimator_requirements: ClassVar[frozenset[str]] = frozenset({"scikit-learn"})

    @abstractmethod
    def classes(self) -> tuple[type, type]:
        """``(Booster, estimator base class)`` of the framework (imported on call)."""

    @abstractmethod
    def rounds(self, booster: Any) -> int:
        """How many boosting rounds ``booster`` holds."""

    @abstractmethod
    def booster_params(self, booster: Any) -> dict[str, str]:
        """The params a native booster was trained with."""

    @abstractmethod
    def best_iteration(self, model: Any) -> int | None:
        """The best round found by early stopping, if it was used."""

    @abstractmethod
    def history_fits(self, booster: Any) -> Callable[[History], bool]:
        """Whether an evaluation history found in the cell belongs to ``booster``."""

    @abstractmethod
    def signature_from_features(self, model: Any) -> ModelSignature | None:
        """A signature from the feature names (and types) the model kept, if it kept them."""

    @abstractmethod
    def log_native(self, obj: Any, kwargs: dict[str, Any]) -> ModelInfo:
        """Log with MLflow's own flavour of the framework."""

    def is_booster(self, obj: Any) -> bool:
        return isinstance(obj, self.classes()[0])

    def detects(self, obj: Any) -> bool:
        if not from_module(obj, self.library):
            return False
        booster, estimator = self.classes()  # the object comes from it: imported already
        try:
            if isinstance(obj, booster):
                return self.rounds(obj) > 0
            if isinstance(obj, estimator):
                return bool(obj.__sklearn_is_fitted__())  # type: ignore[attr-defined]
        except Exception:  # a half-built object is not a trained model
            return False
        return False

    def params(self, obj: Any) -> dict[str, str]:
        out = self.booster_params(obj) if self.is_booster(obj) else estimator_params(obj)
        best = self.best_iteration(obj)
        if best is not None:
            out["best_iteration"] = str(best)
        return {k: v for k, v in out.items() if as_param_value(v) is not None}

    def step_metrics(
        self, obj: Any, values: Mapping[str, Any] | None = None
    ) -> dict[str, list[float]]:
        if not self.is_booster(obj):
            return flat(nested_history(getattr(obj, "evals_result_", None)))
        return find_history(values, self.history_fits(obj))

    def requirements(self, obj: Any) -> list[str]:
        wanted = {"mlflow", "numpy", "pandas", framework_distribution(self.library)}
        if not self.is_booster(obj):
            wanted |= self.estimator_requirements
        return pinned(wanted)

    def log(self, obj: Any, args: LogArgs) -> ModelInfo:
        kwargs = args.as_kwargs()
        if args.signature is None:
            kwargs["signature"] = guarded(self.signature_from_features, obj)
            kwargs["input_example"] = None
        return self.log_native(obj, kwargs)
