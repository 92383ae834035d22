"""Comparing the original run with its reproduction: params, metrics, data, predictions.

Params are compared as the strings MLflow keeps; each metric within the tolerance
(``math.isclose`` with ``rel_tol = abs_tol = tolerance``); a value present on one side
only is a difference. Data snapshots by md5; predictions from what the reproduction's
kernel found (:mod:`jupyter_mlops.reproduction.inkernel`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jupyter_mlops.reproduction.result import Difference
from jupyter_mlops.reproduction.source import Recorded


def compare_runs(
    original: Recorded,
    new: Recorded,
    predictions: Mapping[str, Any] | None,
    tolerance: float,
) -> tuple[list[Difference], dict[str, int]]:
    """The differences between ``original`` and ``new`` and how many of each kind were
    compared (``checked``: params, metrics, predictions, data)."""
    differences: list[Difference] = []
    checked = {"params": 0, "metrics": 0, "predictions": 0, "data": 0}
    for key in sorted(set(original.params) | set(new.params)):
        checked["params"] += 1
        a, b = original.params.get(key), new.params.get(key)
        if a != b:
            differences.append(Difference("param", key, a, b, _absent(a, b)))
    for key in sorted(set(original.metrics) | set(new.metrics)):
        checked["metrics"] += 1
        x, y = original.metrics.get(key), new.metrics.get(key)
        if x is None or y is None:
            differences.append(Difference("metric", key, x, y, _absent(x, y)))
        elif not _close(x, y, tolerance):
            detail = f"differs by {abs(x - y):.6g} (tolerance {tolerance:g})"
            differences.append(Difference("metric", key, x, y, detail))
    before = {s.path: s.md5 for s in original.data}
    after = {s.path: s.md5 for s in new.data}
    for path in sorted(set(before) | set(after)):
        checked["data"] += 1
        if before.get(path) != after.get(path):
            m, n = before.get(path), after.get(path)
            differences.append(Difference("data", path, m, n, _absent(m, n) or "other bytes"))
    for name in sorted(set(new.models) - set(original.models)):
        differences.append(
            Difference("model", name, None, new.models[name], "only in the reproduction")
        )
    if predictions is not None:
        diffs, count = prediction_differences(original, predictions)
        differences += diffs
        checked["predictions"] = count
    return differences, checked


def _close(x: float, y: float, tolerance: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=tolerance, abs_tol=tolerance)


def _absent(a: Any, b: Any) -> str:
    if a is None:
        return "only in the reproduction"
    if b is None:
        return "absent from the reproduction"
    return ""


def prediction_differences(
    original: Recorded, found: Mapping[str, Any]
) -> tuple[list[Difference], int]:
    """Differences in the in-kernel comparison of the models, and how many prediction
    checks were made."""
    differences: list[Difference] = []
    count = 0
    models: Mapping[str, Any] = found.get("models") or {}
    for name in original.models:
        model = models.get(name)
        if model is None:
            continue  # the kernel never got to it: its error is the execution's
        if model.get("error"):
            new_uri = model.get("new_uri")
            differences.append(
                Difference("model", name, model.get("uri"), new_uri, str(model["error"]))
            )
            continue
        for item in model.get("checks") or []:
            count += 1
            label = f"{name} on {item.get('on', '?')}"
            if item.get("error"):
                differences.append(
                    Difference("prediction", label, None, None, f"cannot predict: {item['error']}")
                )
            elif not item.get("equal"):
                differences.append(
                    Difference(
                        "prediction",
                        label,
                        f"{item.get('rows')} rows",
                        f"{item.get('rows_differing')} differ",
                        _prediction_detail(item),
                    )
                )
    return differences, count


def _prediction_detail(item: Mapping[str, Any]) -> str:
    detail = f"{item.get('rows_differing')} of {item.get('rows')} rows differ"
    if item.get("max_abs_diff") is not None:
        detail += f", max abs diff {item['max_abs_diff']:.6g}"
    if item.get("detail"):
        detail += f", {item['detail']}"
    return detail
