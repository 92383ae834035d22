"""The estimation reference of a deployment read from its real prediction log and outcome
store (SQLite, no server): the same model version's labelled predictions from before the
window, nothing else; the estimate of the window's unlabelled predictions then lands near
the accuracy their labels (kept back by the test) give."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jupyter_mlops import record_outcomes
from jupyter_mlops._util.layout import deployments_root
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring import estimator_for, performance
from jupyter_mlops.predlog import SQLitePredictionStore, read_predictions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from estimation_scenarios import scenario

N = 3_000  # v1 predictions, one per second, the last ones 100 s ago
WINDOW = 2_000  # the analysed window starts at T0 + WINDOW
T0 = float(int(time.time())) - N - 100


def _records(data: dict[str, Any], version: str, start: int, *, proba: bool = True) -> list[dict]:
    names = [str(c) for c in data["classes"]]
    out = []
    for i, (row, pred) in enumerate(zip(data["ana_proba"], data["ana_pred"], strict=True)):
        out.append(
            {
                "request_id": f"v{version}-{i:05d}",
                "ts": T0 + start + i,
                "deployment": "dep",
                "model_name": "m",
                "model_version": version,
                "run_id": "abc",
                "role": "primary",
                "endpoint": "predict",
                "n_rows": 1,
                "latency_ms": 1.0,
                "inputs": {"x": [float(i)]},
                "outputs": [names[pred]],
                "proba": [dict(zip(names, map(float, row), strict=True))] if proba else None,
            }
        )
    return out


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, dict[str, Any]]]:
    """v1: 3,000 predictions, labels recorded for the 2,000 before the window; v2 (another,
    worse-calibrated model): 1,000 labelled predictions; v3: labelled, no probabilities;
    v4: 5 labelled predictions just before the window, 25 in it."""
    root = tmp_path_factory.mktemp("estimation") / "proj"
    (root / ".mlops").mkdir(parents=True)
    config = load_config(root)
    (deployments_root(config.mlops_dir) / "dep").mkdir(parents=True)
    v1 = scenario(10, N, classes=3, shift=0.8, seed=21)  # inputs drift within v1's time
    v2 = scenario(10, 1_000, classes=3, temper=0.4, seed=22)
    v3 = scenario(10, 50, classes=3, seed=23)
    v4 = scenario(10, 30, classes=3, seed=24)  # 5 labelled rows, then 25 in the window
    store = SQLitePredictionStore(config.mlops_dir / "predictions.db")
    store.write(
        _records(v1, "1", 0)
        + _records(v2, "2", 0)
        + _records(v3, "3", 0, proba=False)
        + _records(v4, "4", WINDOW - 5)
    )
    store.close()
    labels = []
    for version, data, upto in (("1", v1, WINDOW), ("2", v2, 1_000), ("3", v3, 50), ("4", v4, 5)):
        names = data["classes"]
        labels += [
            {"request_id": f"v{version}-{i:05d}", "outcome": str(names[data["ana_y"][i]])}
            for i in range(upto)
        ]
    record_outcomes("dep", labels, config=config)
    yield config, v1


def test_reference_is_the_versions_labels_before_the_window(
    logged: tuple[Config, dict[str, Any]],
) -> None:
    config, v1 = logged
    estimator = estimator_for("dep", model_version="1", before=T0 + WINDOW, config=config)
    assert estimator.n_reference == WINDOW  # not v2's 1,000, not v3's
    window = read_predictions("dep", since=T0 + WINDOW, config=config)
    window = window[window["model_version"] == "1"]
    assert len(window) == N - WINDOW
    result = estimator.estimate(window, window["prediction"].to_numpy())
    realised = float(np.mean(v1["ana_pred"][WINDOW:] == v1["ana_y"][WINDOW:]))
    assert result["n"] == N - WINDOW
    assert abs(result["estimated_accuracy"] - realised) <= 0.04
    # A later window may use more of the version's labels; v2 has its own estimator.
    assert estimator_for("dep", model_version="1", config=config).n_reference == WINDOW
    assert estimator_for("dep", model_version="2", config=config).n_reference == 1_000


def test_deployment_reference_errors(logged: tuple[Config, dict[str, Any]]) -> None:
    config, _ = logged
    with pytest.raises(MonitoringError, match="No labelled predictions of dep v1 before"):
        estimator_for("dep", model_version="1", before=T0, config=config)
    with pytest.raises(MonitoringError, match="No labelled predictions of dep v9"):
        estimator_for("dep", model_version="9", config=config)
    with pytest.raises(MonitoringError, match="dep v3 logged no probabilities"):
        estimator_for("dep", model_version="3", config=config)


def test_monitor_performance_estimate_puts_the_estimate_beside_the_realised(
    logged: tuple[Config, dict[str, Any]],
) -> None:
    """``%monitor dep --performance --estimate`` (monitoring.performance): over a window
    whose labels have not arrived, ``estimated_accuracy`` of v1 is there, calibrated on
    the labels before the window, near what the held-back labels give."""
    config, v1 = logged
    since = T0 + WINDOW
    report = performance("dep", last=f"{time.time() - since:.0f}s", estimate=True, config=config)
    figures = report.figures()
    # The window starts within a second of T0 + WINDOW: its rows are v1's last 1,000.
    realised = float(np.mean(v1["ana_pred"][WINDOW:] == v1["ana_y"][WINDOW:]))
    assert abs(figures["estimated_accuracy_v1"] - realised) <= 0.04
    assert figures["estimated_accuracy_low_v1"] < figures["estimated_accuracy_v1"]
    assert figures["estimated_accuracy_v1"] < figures["estimated_accuracy_high_v1"]
    # v4 has 5 labelled rows before the window: no estimate for it, a note says why.
    assert "estimated_accuracy_v4" not in figures
    assert "dep v4: the reference has 5 labelled rows" in report.notes["estimated_accuracy"]
    assert "at least 20" in report.notes["estimated_accuracy"]
