"""The model flavour registry: ordered lookup, lazy frameworks, the scikit-learn flavour."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from jupyter_mlops.errors import UsageError
from jupyter_mlops.tracking import flavors
from jupyter_mlops.tracking.capture import analyse_cell, capture


class _Toy(flavors.Flavor):
    """Claims objects that have a ``toy`` attribute."""

    name: ClassVar[str] = "toy"
    library: ClassVar[str] = "json"  # always installed

    def detects(self, obj: Any) -> bool:
        return hasattr(obj, "toy")

    def params(self, obj: Any) -> dict[str, str]:
        return {"toy": str(obj.toy)}

    def requirements(self, obj: Any) -> list[str]:
        return flavors.pinned(["mlflow"])

    def log(self, obj: Any, args: flavors.LogArgs) -> Any:
        raise NotImplementedError


class _Missing(_Toy):
    name: ClassVar[str] = "missing"
    library: ClassVar[str] = "no_such_framework_xyz"

    def detects(self, obj: Any) -> bool:
        raise AssertionError("a flavour whose framework is missing is never asked")


@pytest.fixture
def registry() -> Iterator[None]:
    yield
    for name in ("toy", "missing"):
        flavors.unregister(name)


def _fitted() -> Any:
    X, y = load_iris(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500)).fit(X, y)


def test_sklearn_flavour_detects_params_and_requirements() -> None:
    import sklearn

    model = _fitted()
    flavor = flavors.flavor_for(model)
    assert flavor is not None and flavor.name == "sklearn"
    assert flavors.flavor_for(LogisticRegression()) is None  # not fitted
    assert flavors.flavor_for(LogisticRegression) is None  # a class
    assert flavors.flavor_for(42) is None
    assert flavor.params(model)["logisticregression__C"] == "0.5"
    reqs = flavor.requirements(model)
    assert f"scikit-learn=={sklearn.__version__}" in reqs
    assert {r.split("==")[0] for r in reqs} >= {"mlflow", "cloudpickle", "numpy", "pandas"}
    assert reqs == sorted(reqs, key=str.lower)


def test_registered_flavour_is_asked_first_and_missing_frameworks_skipped(registry: None) -> None:
    # The built-in flavours whose framework is installed (pytorch, ... where present).
    builtin = [f.name for f in flavors.available()]
    assert builtin[-1] == "sklearn"
    flavors.register(_Missing())
    flavors.register(_Toy())
    builtin = [f.name for f in flavors.BUILTIN if importlib.util.find_spec(f.library)]
    assert [f.name for f in flavors.available()] == ["toy", *builtin]
    assert builtin[-1] == "sklearn"  # the generic flavour is asked last
    model = _fitted()
    model.toy = 3  # both flavours would take it: the registered one wins
    assert flavors.flavor_for(model).name == "toy"  # type: ignore[union-attr]
    assert flavors.get("sklearn").name == "sklearn"
    with pytest.raises(UsageError, match="missing"):
        flavors.get("missing")
    flavors.register(_Toy())  # registering again replaces, never duplicates
    assert [f.name for f in flavors.available()] == ["toy", *builtin]


def test_capture_asks_the_registry(registry: None) -> None:
    class Thing:
        toy = 7

        def predict(self, X: Any) -> Any:  # a predictor: only predictors are a cell's models
            return X

    flavors.register(_Toy())
    facts = analyse_cell("thing = Thing()\nn = 3\n")
    got = capture(facts, {"thing": Thing(), "n": 3})
    assert list(got.models) == ["thing"]
    assert got.params == {"n": "3", "toy": "7"}
