"""Run inside the reproduction's kernel, after the re-executed ``%%track`` cell: do the
original's models and the reproduction's predict the same?

It runs there, not in the caller, so that both models are loaded with the libraries of
the environment the run was reproduced in, and because the kernel still holds the data
the cell fitted on. Each model the original logged (``mlops.models``) and the one of the
same name the reproduction logged are loaded with ``mlflow.pyfunc`` and predict on the
original model's input example and on the reproduction's training data: the object in
the kernel whose content hash is the one the run recorded for the model's training
dataset (else the fit call's input read off the cell; else the example alone). The
outcome is written as JSON to the file the caller named, whatever happens.
"""

from __future__ import annotations

import ast
import json
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_mlops.reproduction.source import TAG_PARENT, TAG_ROOT

MAX_ROWS = 100_000  # training rows predicted on (the first ones): enough to see a difference


def check(namespace: Mapping[str, Any], spec_path: str) -> None:
    """Compare the models of the original run and of the run this kernel just recorded;
    writes ``spec["out"]``. Never raises: a failure is written as ``error``."""
    spec = json.loads(Path(spec_path).read_text())
    result: dict[str, Any] = {"run_id": None, "models": {}, "error": None}
    try:
        import mlflow

        client = mlflow.MlflowClient()  # the kernel's MLFLOW_TRACKING_URI: the original's store
        new = _new_run(client, spec)
        result["run_id"] = new.info.run_id if new is not None else None
        new_models = json.loads(new.data.tags.get("mlops.models", "{}")) if new else {}
        hashes = _training_hashes(new) if new is not None else {}
        for name, uri in spec["models"].items():
            result["models"][name] = _check_model(
                name, uri, new_models.get(name), namespace, spec, hashes.get(name)
            )
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=5)
    Path(spec["out"]).write_text(json.dumps(result, indent=1, default=str))


def _new_run(client: Any, spec: Mapping[str, Any]) -> Any:
    root = str(spec["project"]).replace("'", "\\'")
    runs = client.search_runs(
        [spec["experiment_id"]],
        filter_string=f"tags.`{TAG_ROOT}` = '{root}' and attributes.start_time >= {spec['since']}",
        max_results=50,
        order_by=["attributes.start_time DESC"],
    )
    top = [r for r in runs if TAG_PARENT not in r.data.tags]
    return top[0] if top else None


def _training_hashes(run: Any) -> dict[str, tuple[str, int | None]]:
    """Model name -> (content hash, rows) of the training dataset the run recorded for it."""
    from jupyter_mlops.tracking.datasets import CONTENT_HASH_TAG

    found = {}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        name = item.dataset.name
        tags = {t.key: t.value for t in item.tags}
        if name.endswith("-training") and CONTENT_HASH_TAG in tags:
            try:
                rows = int(json.loads(item.dataset.profile or "{}")["num_rows"])
            except (ValueError, KeyError, TypeError):
                rows = None
            found[name.removesuffix("-training")] = (tags[CONTENT_HASH_TAG], rows)
    return found


def _check_model(
    name: str,
    original_uri: str,
    new_uri: str | None,
    namespace: Mapping[str, Any],
    spec: Mapping[str, Any],
    recorded: tuple[str, int | None] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": original_uri, "new_uri": new_uri, "checks": [], "error": None}
    obj = namespace.get(name)
    out["class"] = type(obj).__name__ if obj is not None else None
    if new_uri is None:
        out["error"] = "the reproduction logged no model of this name"
        return out
    try:
        original, example = _load(original_uri, with_example=True)
        reproduced, _ = _load(new_uri, with_example=False)
    except Exception as exc:
        out["error"] = f"cannot load: {type(exc).__name__}: {exc}"
        return out
    inputs: list[tuple[str, Any]] = []
    if example is not None:
        inputs.append(("input example", example))
    training, how = _training_data(name, namespace, spec.get("cell") or "", recorded)
    out["training"] = how
    if training is not None:
        inputs.append((f"training data ({how.split(',')[0]})", _head(training)))
    tolerance = float(spec["tolerance"])
    for label, X in inputs:
        try:
            a, b = original.predict(X), reproduced.predict(X)
            out["checks"].append({"on": label, **compare_predictions(a, b, tolerance)})
        except Exception as exc:
            out["checks"].append({"on": label, "error": f"{type(exc).__name__}: {exc}"})
    return out


def _load(uri: str, *, with_example: bool) -> tuple[Any, Any]:
    import mlflow
    from mlflow.models import Model

    from jupyter_mlops.client import quiet_mlflow

    with quiet_mlflow():
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="mlops-model-")
        )
        model = mlflow.pyfunc.load_model(local)
    example = None
    if with_example:
        try:
            example = Model.load(local).load_input_example(local)
        except Exception:
            example = None
    return model, example


def _training_data(
    name: str, namespace: Mapping[str, Any], cell: str, recorded: tuple[str, int | None] | None
) -> tuple[Any, str]:
    """The data the reproduction's model ``name`` was fitted on, and what it is: the
    kernel's object whose content hash is the recorded training set's, else the fit
    call's input read off the cell."""
    from jupyter_mlops.tracking.datasets import fingerprint_data
    from jupyter_mlops.tracking.models import fit_inputs_from_cell

    try:
        fitted = fit_inputs_from_cell(ast.parse(cell), namespace).get(name, (None, None))[0]
    except SyntaxError:
        fitted = None
    named = [(k, v) for k, v in namespace.items() if not k.startswith("_") and hasattr(v, "shape")]
    label = next((k for k, v in named if v is fitted), "the fit call's input")
    if recorded is not None:
        content_hash, rows = recorded
        candidates = [(label, fitted)] if fitted is not None else []
        candidates += [(k, v) for k, v in named if rows is None or _rows(v) == rows]
        for key, value in candidates:
            try:
                fingerprint = fingerprint_data(value)
            except Exception:
                continue
            if fingerprint is not None and fingerprint[0] == content_hash:
                return value, f"{key}, the recorded training set"
    if fitted is not None:
        return fitted, f"{label}, read off the fit call"
    return None, "not found: only the input example was compared"


def _rows(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    return int(shape[0]) if isinstance(shape, tuple) and shape else None


def _head(X: Any) -> Any:
    return X[:MAX_ROWS] if getattr(X, "shape", (0,))[0] > MAX_ROWS else X


def _array(values: Any) -> Any:
    import numpy as np

    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    return np.asarray(values)


def compare_predictions(a: Any, b: Any, tolerance: float) -> dict[str, Any]:
    """Rows, rows that differ (beyond ``tolerance`` for numbers) and the largest
    absolute difference of two prediction arrays."""
    import numpy as np

    x, y = _array(a), _array(b)
    rows = int(x.shape[0]) if x.ndim else 1
    if x.shape != y.shape:
        return {
            "rows": rows,
            "equal": False,
            "rows_differing": max(rows, int(y.shape[0]) if y.ndim else 1),
            "max_abs_diff": None,
            "detail": f"shapes differ: {x.shape} vs {y.shape}",
        }
    numeric = all(np.issubdtype(v.dtype, np.number) and v.dtype != bool for v in (x, y))
    max_diff: float | None = None
    if numeric:
        xf, yf = x.astype(np.float64), y.astype(np.float64)
        same = np.isclose(xf, yf, rtol=tolerance, atol=tolerance, equal_nan=True)
        diffs = np.abs(xf - yf)
        finite = diffs[np.isfinite(diffs)]
        max_diff = float(finite.max()) if finite.size else 0.0
    else:
        same = np.asarray(x == y)
    per_row = same.reshape(rows, -1).all(axis=1) if x.ndim else same.reshape(1)
    differing = int((~per_row).sum())
    return {
        "rows": rows,
        "equal": differing == 0,
        "rows_differing": differing,
        "max_abs_diff": max_diff,
    }
