"""Model signatures: inferred from what a model was trained on, and shown as text.

A signature is what lets a deployment check its inputs, so capture infers one wherever the
training data is known (see ``tracking/models.py`` for how the sample is chosen).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from jupyter_mlops.tracking import flavors
from jupyter_mlops.tracking.models import head

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature

PREDICTED_ROWS = 20  # rows predicted to infer a signature's output


def infer(model: Any, sample: Any, flavor: flavors.Flavor | None) -> ModelSignature | None:
    """MLflow's signature of ``model`` on ``sample`` (None when it does not predict).

    Types come from the whole sample, the output's from a few predictions (a big model
    predicting a thousand rows would slow every tracked cell); the flavour knows how its
    models predict (a torch module is called). Raises what the model raises.
    """
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = flavor or flavors.get(flavors.FALLBACK)
        outputs = predictor.outputs(model, head(sample, PREDICTED_ROWS))
        return None if outputs is None else infer_signature(sample, outputs)


def signature_text(signature: Any) -> str | None:
    """``inputs -> outputs`` of a signature, for the run card and the models tag."""
    if signature is None:
        return None
    try:
        return f"{signature.inputs.to_dict()} -> {signature.outputs.to_dict()}"
    except Exception:
        return str(signature)
