"""Classifier scenarios for performance estimation, and NannyML's CBPE run on them.

Shared by ``benchmarks/bench_estimation.py`` and the tests ``tests/test_estimation*.py``
(numpy only at import). :func:`scenario` draws a reference and an analysis window from a
known world: inputs ``x`` (2 columns, normal), true class probabilities ``softmax(x @ W)``
(binary: the logistic of a line), a "model" whose probabilities are a sharpened and biased
version of the true ones (over-confident, so it needs calibration; ``temper=1, bias=0``
gives a calibrated one). Labels are drawn from the true probabilities, so there is no
concept drift; ``shift`` moves the analysis inputs' mean towards the decision boundary
(covariate shift): accuracy falls, and a correct estimate falls with it.

Run as a script in NannyML's own virtual environment (NannyML 0.13 wants pandas < 2.3):

    <nannyml-venv>/bin/python benchmarks/estimation_scenarios.py [--warm-up] SCENARIO.npz [...]

Each .npz (written by :func:`save`) holds ``classes`` (text), ``ref_proba`` and
``ana_proba`` (rows x classes), ``ref_y``, ``ref_pred``, ``ana_pred`` (class codes) and
``metrics``. The analysis rows are one chunk. Printed: one JSON object, per file stem: each
metric's estimate and confidence band, which classes NannyML calibrated, and the wall and
CPU seconds of ``fit`` and ``estimate`` (imports excluded; ``--warm-up`` fits on 2,000
rows first).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Class weights of the true world (rows: the 2 inputs), binary and 3 classes.
_WEIGHTS = {
    2: np.array([[0.0, 1.6], [0.0, 0.6]]),
    3: np.array([[1.4, -0.2, -1.2], [0.1, 1.3, -1.1]]),
}
#: Where the reference inputs are centred, and the way ``shift`` moves them.
_CENTRE = {2: np.array([1.0, 0.3]), 3: np.array([1.2, 0.2])}
_TOWARD = {2: np.array([-1.0, 0.0]), 3: np.array([-1.0, -0.17])}


def scenario(
    n_reference: int,
    n_analysis: int,
    *,
    classes: int = 2,
    shift: float = 0.0,
    temper: float = 2.2,
    bias: float = 0.4,
    seed: int = 0,
) -> dict[str, Any]:
    """Reference and analysis rows of a synthetic classifier (module docstring): arrays
    ``ref_proba``, ``ref_y``, ``ref_pred``, ``ana_proba``, ``ana_y``, ``ana_pred`` and the
    class names ``classes``."""
    rng = np.random.default_rng(seed)
    weights = _WEIGHTS[classes]

    def draw(n: int, move: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, 2)) + _CENTRE[classes] + move * _TOWARD[classes]
        logits = x @ weights
        truth = _softmax(logits)
        proba = _softmax(temper * logits + bias * np.arange(classes))
        y = (rng.random((n, 1)) > np.cumsum(truth, axis=1)).sum(axis=1)
        return proba, np.minimum(y, classes - 1), proba.argmax(axis=1)

    ref_proba, ref_y, ref_pred = draw(n_reference, 0.0)
    ana_proba, ana_y, ana_pred = draw(n_analysis, shift)
    return {
        "classes": np.array(["no", "yes"] if classes == 2 else ["a", "b", "c"][:classes]),
        "ref_proba": ref_proba,
        "ref_y": ref_y,
        "ref_pred": ref_pred,
        "ana_proba": ana_proba,
        "ana_y": ana_y,
        "ana_pred": ana_pred,
    }


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def save(path: Path, data: dict[str, Any], metrics: list[str]) -> Path:
    """Write a scenario for :func:`run` (the analysis labels stay out: NannyML estimates)."""
    keep = {k: v for k, v in data.items() if k != "ana_y"}
    np.savez(path, metrics=np.array(metrics), **keep)
    return path


def run(path: Path, *, warm_up: bool = False) -> dict[str, Any]:
    """NannyML's CBPE fitted on a saved scenario's reference, estimated on its analysis."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    import nannyml as nml
    import pandas as pd

    data = np.load(path, allow_pickle=False)
    classes = [str(c) for c in data["classes"]]
    metrics = [str(m) for m in data["metrics"]]
    binary = len(classes) == 2
    names = np.asarray(classes)

    def frame(proba: np.ndarray, pred: np.ndarray, y: np.ndarray | None) -> pd.DataFrame:
        if binary:
            out = pd.DataFrame({"proba": proba[:, 1], "y_pred": pred})
            if y is not None:
                out["y_true"] = y
            return out
        columns = {f"proba_{c}": proba[:, j] for j, c in enumerate(classes)}
        out = pd.DataFrame({**columns, "y_pred": names[pred]})
        if y is not None:
            out["y_true"] = names[y]
        return out

    reference = frame(data["ref_proba"], data["ref_pred"], data["ref_y"])
    analysis = frame(data["ana_proba"], data["ana_pred"], None)
    options: dict[str, Any] = {
        "y_pred_proba": "proba" if binary else {c: f"proba_{c}" for c in classes},
        "y_pred": "y_pred",
        "y_true": "y_true",
        "problem_type": "classification_binary" if binary else "classification_multiclass",
        "metrics": metrics,
        "chunk_number": 1,
    }
    estimator = nml.CBPE(**options)
    if warm_up:  # first calls pay for lazy imports and caches: not part of the measurement
        nml.CBPE(**options).fit(reference.iloc[:2000]).estimate(analysis.iloc[:2000])
    started, started_cpu = time.perf_counter(), time.process_time()
    estimator.fit(reference)
    fitted, fitted_cpu = time.perf_counter(), time.process_time()
    result = estimator.estimate(analysis)
    done, done_cpu = time.perf_counter(), time.process_time()
    row = result.filter(period="analysis").to_df().iloc[0]
    out: dict[str, Any] = {
        "fit_s": fitted - started,
        "estimate_s": done - fitted,
        "fit_cpu_s": fitted_cpu - started_cpu,
        "estimate_cpu_s": done_cpu - fitted_cpu,
    }
    for metric in metrics:
        out[metric] = float(row[(metric, "value")])
        out[f"{metric}_low"] = float(row[(metric, "lower_confidence_boundary")])
        out[f"{metric}_high"] = float(row[(metric, "upper_confidence_boundary")])
    if binary:
        out["calibrated"] = {classes[1]: bool(estimator.needs_calibration)}
    else:
        out["calibrated"] = {
            c: type(cal).__name__ != "NoopCalibrator" for c, cal in estimator._calibrators.items()
        }
    return out


if __name__ == "__main__":
    warm = "--warm-up" in sys.argv
    files = [Path(p) for p in sys.argv[1:] if p != "--warm-up"]
    print(json.dumps({p.stem: run(p, warm_up=warm) for p in files}))
