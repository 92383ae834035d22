"""What a model flavour is: how one framework's models are recognised, described and logged.

A flavour wraps MLflow's native flavour for one framework (``mlflow.sklearn``, and later
``mlflow.xgboost``, ``mlflow.pytorch``...). The cell capture and ``TrackedRun.log_model``
ask the registry (``flavors.flavor_for``) instead of testing types themselves, so a new
framework is one module and one registration (docs/flavors.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from jupyter_mlops._util.records import attributes

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

    def unwrap(self, obj: Any) -> Unwrapped:
        """The model to log for ``obj``, and what the wrapper itself found out.

        A hyperparameter search is not the model: its best estimator is, and its best
        parameters, best score and table of candidates belong to the run. The default is
        the identity; a flavour whose framework has such wrappers overrides it.
        """
        return Unwrapped(obj)

    def parts(self, obj: Any) -> list[Any]:
        """The objects ``obj`` holds that could look like models of their own (a pipeline's
        steps, a network's layers): not logged apart when ``obj`` is. None by default."""
        return []

    def is_predictor(self, obj: Any) -> bool:
        """True for a model that makes predictions, as opposed to a transform-only step.

        Only predictors are logged as a cell's models; a scaler or an encoder the cell
        fitted on its own is preprocessing and is skipped (named on the run card).
        """
        return any(hasattr(obj, attr) for attr in ("predict", "predict_proba", "forward"))

    # -- optional: for models not trained with ``fit`` (a PyTorch loop, a native booster) --

    def cell_params(self, obj: Any, values: Mapping[str, Any]) -> dict[str, str]:
        """Training parameters held by other values of the cell (an optimizer's ``lr``).

        ``values`` are the cell's names (assigned or read) and what they hold after it
        ran. None by default: a scikit-learn estimator holds its own hyperparameters.
        """
        return {}

    def sample_input(self, obj: Any, values: Mapping[str, Any], passed: Sequence[str]) -> Any:
        """The data ``obj`` was trained on when the cell did not call ``fit`` (None: unknown).

        ``values`` as for ``cell_params``; ``passed`` are the names the cell gave the model
        as first argument (``model(X)``). Used for the signature, the input example and
        the training dataset record, so it should be what the model takes as input.
        """
        return None

    def outputs(self, obj: Any, example: Any) -> Any:
        """The model's output on ``example``, from which the signature's outputs are read.

        None when it does not predict (a fitted transformer): it then gets no signature.
        """
        predict = getattr(obj, "predict", None)
        return None if predict is None else predict(example)


@dataclass(frozen=True)
class LogArgs:
    """What every flavour hands MLflow's ``log_model`` besides the model itself."""

    name: str
    signature: ModelSignature | None
    input_example: Any
    pip_requirements: list[str]

    def as_kwargs(self) -> dict[str, Any]:
        return attributes(self)


@dataclass
class Unwrapped:
    """What ``Flavor.unwrap`` returns: the model to log, and what its wrapper adds to the run.

    ``params`` and ``metrics`` are run params and metrics (``best_params_`` by their bare
    names, ``best_cv_score``); ``artifacts`` maps an artifact path in the run to its text
    (``mlops/cv_results.csv``); ``candidates`` holds each tried candidate's params and
    metrics, for one child run per candidate when asked.
    """

    model: Any
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    candidates: list[tuple[dict[str, str], dict[str, float]]] = field(default_factory=list)
    kind: str | None = None  # what the wrapper was ("GridSearchCV"), for the run card

    @property
    def wrapped(self) -> bool:
        return self.kind is not None


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
