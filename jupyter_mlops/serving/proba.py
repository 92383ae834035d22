"""Class probabilities: which models can give them, and in what shape they are answered.

A deployment answers labels (``model.predict``) unless it was started with
``predict="proba"`` or a request asks ``?predict=proba``; then each row is answered as
``{class: probability}`` in the model's class order (``classes_``), which ``/info`` and the
OpenAPI schema list too. MLflow's pyfunc only exposes ``predict``, so the probabilities come
from the native model under it (``get_raw_model()``: scikit-learn, XGBoost, LightGBM...), fed
the same validated, typed frame as ``predict``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_mlops.serving.errors import InputError, ServingError

__all__ = ["PREDICT_MODES", "Proba", "check_predict_mode", "proba_of", "proba_rows"]

#: What a deployment (or one request) can answer: labels, or probabilities per class.
PREDICT_MODES = ("label", "proba")


@dataclass(frozen=True)
class Proba:
    """A model's ``predict_proba`` and its class order."""

    fn: Callable[[Any], Any]
    classes: tuple[Any, ...]


def _native(model: Any) -> Any:
    """The framework model under a pyfunc (None when the flavour does not expose it)."""
    for unwrap in ("get_raw_model", "unwrap_python_model"):
        method = getattr(model, unwrap, None)
        if method is None:
            continue
        try:
            return method()
        except Exception:  # NotImplementedError, or not a python_function model
            continue
    return None


def proba_of(model: Any) -> Proba | None:
    """The probabilities of a loaded pyfunc model, or None when it has no ``predict_proba``
    (regressors, ``SVC(probability=False)``, flavours that hide the native model)."""
    native = _native(model)
    fn = getattr(native, "predict_proba", None) if native is not None else None
    if not callable(fn):
        return None
    classes = getattr(native, "classes_", None)
    if classes is None:
        return None
    return Proba(fn, tuple(_plain(c) for c in classes))


def no_proba_message(label: str) -> str:
    return (
        f"{label} has no predict_proba (a regressor, or a classifier without probabilities): "
        "it can answer labels only."
    )


def check_predict_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`PREDICT_MODES`, else a one-line error."""
    if mode not in PREDICT_MODES:
        raise ServingError(f"predict must be 'label' or 'proba', not {mode!r}.")
    return mode


def request_mode(value: str | None, default: str) -> str:
    """The mode a request asks for with ``?predict=`` (400 for an unknown one)."""
    if value is None or value == "":
        return default
    if value not in PREDICT_MODES:
        raise InputError(
            f"predict must be 'label' or 'proba', not {value!r}.",
            status=400,
            code="BAD_REQUEST",
        )
    return value


def proba_rows(raw: Any, classes: tuple[Any, ...]) -> list[dict[str, float]]:
    """A ``predict_proba`` matrix as one ``{class: probability}`` per row (JSON keys)."""
    import numpy as np

    matrix = np.asarray(raw, dtype=float)
    keys = [str(c) for c in classes]
    return [dict(zip(keys, row, strict=True)) for row in matrix.tolist()]


def _plain(value: Any) -> Any:
    """A numpy scalar class label as the Python value JSON can carry."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
