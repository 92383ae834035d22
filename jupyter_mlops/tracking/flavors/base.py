"""What a model flavour is: how one framework's models are recognised, described and logged.

A flavour wraps MLflow's native flavour for one framework (``mlflow.sklearn``, and later
``mlflow.xgboost``, ``mlflow.pytorch``...). The cell capture and ``TrackedRun.log_model``
ask the registry (``flavors.flavor_for``) instead of testing types themselves, so a new
framework is one module and one registration (docs/flavors.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo
    from mlflow.models.signature import ModelSignature


class Flavor(ABC):
    """One model framework: detect its trained models, read their hyperparameters, log them.

    Implementations import their framework (and MLflow) inside the methods: the registry
    is imported with the package, and ``import jupyter_mlops`` must stay light.
    """

    #: MLflow's name for the flavour (``mlflow.<name>``), recorded on the ``ModelRecord``.
    name: ClassVar[str]
    #: The framework's top-level import name; the registry skips the flavour when it is
    #: not installed, so a missing framework is never an import error.
    library: ClassVar[str]

    @abstractmethod
    def detects(self, obj: Any) -> bool:
        """True for a trained model this flavour can log.

        Called on every value a tracked cell assigns: it must be cheap, and import the
        framework only for objects that come from it.
        """

    @abstractmethod
    def params(self, obj: Any) -> dict[str, str]:
        """The model's hyperparameters that have a simple value, as MLflow param strings."""

    @abstractmethod
    def requirements(self, obj: Any) -> list[str]:
        """Pinned pip requirements (``dist==version``) to load the model elsewhere.

        Read from the running environment: MLflow's own inference reloads the model in a
        subprocess, which costs seconds per model.
        """

    def step_metrics(
        self, obj: Any, values: Mapping[str, Any] | None = None
    ) -> dict[str, list[float]]:
        """Per-step metric histories of the model's training: ``name -> [step 0, 1, ...]``.

        Logged as metric histories (one value per step), not as final values. ``values``
        are the other values the cell assigned: a framework's native API may leave its
        evaluation history there rather than on the model (xgboost's ``evals_result``
        dict, lightgbm's ``record_evaluation`` dict). Frameworks without one: none.
        """
        return {}

    @abstractmethod
    def log(self, obj: Any, args: LogArgs) -> ModelInfo:
        """Log ``obj`` with MLflow's native flavour into the active run.

        Pass ``args.as_kwargs()`` to MLflow's ``log_model``, with the flavour's own options.
        """


@dataclass(frozen=True)
class LogArgs:
    """What every flavour hands MLflow's ``log_model`` besides the model itself."""

    name: str
    signature: ModelSignature | None
    input_example: Any
    pip_requirements: list[str]

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "signature": self.signature,
            "input_example": self.input_example,
            "pip_requirements": self.pip_requirements,
        }


def pinned(distributions: Iterable[str]) -> list[str]:
    """``dist==version`` for each installed distribution, sorted; missing ones are left out."""
    from importlib import metadata

    reqs = []
    for dist in sorted(set(distributions), key=str.lower):
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs
