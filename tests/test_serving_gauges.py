"""Model performance on the server's ``/metrics``: per model version and role, accuracy (or
RMSE) scored from the outcomes joined to its predictions, label coverage, outcomes seen and
the age of the newest; computed by the server itself off the request path. The figures equal
scikit-learn's on the joined rows; the exposition passes ``promtool check metrics``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

from jupyter_mlops.serving.gauges import PerformanceGauges, Snapshot, score_window
from jupyter_mlops.serving.metrics import Metrics
from tests.test_serving_metrics import promtool_check, samples

NOW = 1_800_000_000.0


def _outcomes(
    rng: np.random.Generator, n: int, version: str, role: str, hit: float
) -> pd.DataFrame:
    truth = rng.choice(["setosa", "versicolor", "virginica"], n)
    wrong = np.roll(truth, 1)
    pred = np.where(rng.random(n) < hit, truth, wrong)
    ts = NOW - 1200 + rng.random(n) * 300
    return pd.DataFrame(
        {
            "request_id": [f"{version}-{i}" for i in range(n)], "row": 0,
            "timestamp": pd.to_datetime(ts, unit="s", utc=True),
            "arrived": pd.to_datetime(ts + 60 + np.arange(n) / 2, unit="s", utc=True),
            "delay_s": 60.0 + np.arange(n) / 2, "deployment": "iris", "model_name": "iris-rf",
            "model_version": version, "run_id": "r", "role": role, "prediction": pred,
            "outcome": truth,
        }
    )  # fmt: skip


def test_scores_per_version_equal_sklearn_and_coverage_is_labelled_over_predicted() -> None:
    rng = np.random.default_rng(0)
    one, two = _outcomes(rng, 300, "1", "primary", 0.9), _outcomes(rng, 100, "2", "canary", 0.6)
    counts = pd.DataFrame(
        {"model_version": ["1", "2", "3"], "role": ["primary", "canary", "canary"],
         "n_predictions": [600, 400, 50]}
    )  # fmt: skip
    got = score_window(pd.concat([one, two], ignore_index=True), counts, now=NOW)
    for key, frame, predicted in ((("iris-rf", "1", "primary"), one, 600),
                                  (("iris-rf", "2", "canary"), two, 400)):  # fmt: skip
        figures = got[key]
        assert figures["accuracy"] == pytest.approx(
            accuracy_score(frame["outcome"], frame["prediction"])
        )
        assert figures["f1"] == pytest.approx(
            f1_score(frame["outcome"], frame["prediction"], average="macro")
        )
        assert figures["labelled_rows"] == len(frame)
        assert figures["label_coverage_ratio"] == pytest.approx(len(frame) / predicted)
        newest = frame["arrived"].max().timestamp()
        assert figures["last_outcome_age_seconds"] == pytest.approx(NOW - newest)
        assert figures["label_delay_median_seconds"] == pytest.approx(frame["delay_s"].median())
        assert "rmse" not in figures
    # predicted but not labelled yet: coverage 0 and no score (absent, not 0)
    assert got[("", "3", "canary")] == {"labelled_rows": 0.0, "label_coverage_ratio": 0.0}


def test_regressors_get_rmse_and_mae() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(10, 3, 200)
    pred = truth + rng.normal(0, 1, 200)
    frame = _outcomes(rng, 200, "4", "primary", 1.0).assign(outcome=truth, prediction=pred)
    got = score_window(frame, None, now=NOW)[("iris-rf", "4", "primary")]
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, pred)))
    assert got["mae"] == pytest.approx(mean_absolute_error(truth, pred))
    assert "accuracy" not in got and "label_coverage_ratio" not in got
    # whole-number outcomes of a model served with classes are classes, not values
    labels = frame.assign(outcome=1, prediction=rng.integers(0, 2, 200))
    served = {"4": ("iris-rf", [0, 1])}
    assert (
        "accuracy"
        in score_window(labels, None, now=NOW, served=served)[("iris-rf", "4", "primary")]
    )


def test_the_families_pass_promtool_and_vanish_with_their_version(tmp_path: Path) -> None:
    metrics = Metrics("iris")
    gauges = PerformanceGauges("iris", config=None, every_s=1, window_s=600)  # type: ignore[arg-type]
    metrics.add_collector(gauges)
    gauges.snapshot = Snapshot(
        versions={
            ("iris-rf", "1", "primary"): {
                "accuracy": 0.9,
                "f1": 0.88,
                "label_coverage_ratio": 0.5,
                "labelled_rows": 300.0,
                "outcomes_total": 300.0,
                "last_outcome_age_seconds": 4.0,
            },
            ("iris-rf", "2", "canary"): {
                "rmse": 1.5,
                "label_coverage_ratio": 0.0,
                "labelled_rows": 0.0,
            },
        },
        refreshed_at=NOW,
        window_s=600,
    )
    text = metrics.render()[0].decode()
    promtool_check(text)
    got = samples(text)
    assert got["jupyter_mlops_model_accuracy"] == [
        (
            {
                "deployment": "iris",
                "model_name": "iris-rf",
                "model_version": "1",
                "role": "primary",
            },
            0.9,
        )
    ]
    assert [s[1] for s in got["jupyter_mlops_model_rmse"]] == [1.5]
    coverage = {s[0]["model_version"]: s[1] for s in got["jupyter_mlops_label_coverage_ratio"]}
    assert coverage == {"1": 0.5, "2": 0.0}
    assert [s[1] for s in got["jupyter_mlops_outcomes_total"]] == [300.0]
    assert got["jupyter_mlops_performance_window_seconds"][0][1] == 600
    assert got["jupyter_mlops_performance_refreshed_timestamp_seconds"][0][1] == NOW
    gauges.snapshot = Snapshot(versions={}, refreshed_at=NOW + 1, window_s=600)
    got = samples(metrics.render()[0].decode())
    assert "jupyter_mlops_model_accuracy" not in got  # the version left the window


def test_each_worker_exposes_its_own_figures_in_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several workers /metrics aggregates the shared files; the performance figures
    are no such file: the answering worker's collector adds them."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics = Metrics("iris")
    assert metrics.multiprocess
    gauges = PerformanceGauges("iris", config=None, every_s=1, window_s=60)  # type: ignore[arg-type]
    metrics.add_collector(gauges)
    gauges.snapshot = Snapshot(
        versions={("iris-rf", "1", "primary"): {"accuracy": 0.75}}, refreshed_at=NOW, window_s=60
    )
    text = metrics.render()[0].decode()
    promtool_check(text)
    got = samples(text)
    assert [s[1] for s in got["jupyter_mlops_model_accuracy"]] == [0.75]


# -- a real server ---------------------------------------------------------------------------

EVERY_S = 0.3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from jupyter_mlops.config import load_config
    from jupyter_mlops.serving import canary
    from tests.helpers import register_iris, running

    root = tmp_path_factory.mktemp("gauges") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("JUPYTER_MLOPS_GAUGES_EVERY_S", str(EVERY_S))  # the server inherits it
        config = load_config(root)
        register_iris(config, 10, 0, "champion")
        register_iris(config, 3, 1, "challenger")
        with running("iris-rf@champion", config, name="iris-g") as dep:
            canary("iris-g", "iris-rf@challenger", 50, config=config)
            yield dep, config


def _scrape_until(url: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        got = samples(text)
        if check(got) or time.monotonic() > deadline:
            promtool_check(text)
            return got
        time.sleep(EVERY_S)


def _by_version(got: dict[str, Any], name: str) -> dict[tuple[str, str], float]:
    return {(s[0]["model_version"], s[0]["role"]): s[1] for s in got.get(name, [])}


def test_a_real_server_scores_each_version_from_late_outcomes(server: Any) -> None:
    from sklearn.datasets import load_iris

    from jupyter_mlops.predlog import record_outcomes

    dep, config = server
    X, y = load_iris(return_X_y=True, as_frame=True)
    names = load_iris().target_names
    answered = []
    with httpx.Client(base_url=dep.url, timeout=30) as http:
        for i in range(0, 150, 3):
            batch = X.iloc[i : i + 3]
            body = http.post(
                "/predict", json=batch.to_dict("records"), headers={"x-request-key": f"k{i}"}
            ).json()
            answered.append((body, list(y.iloc[i : i + 3])))
    assert {b["model"]["version"] for b, _ in answered} == {"1", "2"}  # both sides served
    # Nothing labelled yet: coverage 0 per version, no score.
    got = _scrape_until(
        dep.url, lambda g: len(_by_version(g, "jupyter_mlops_label_coverage_ratio")) == 2
    )
    assert set(_by_version(got, "jupyter_mlops_label_coverage_ratio").values()) == {0.0}
    assert "jupyter_mlops_model_accuracy" not in got

    # Outcomes arrive late, for two of every three rows: some flipped, so each side errs.
    rows, labelled = [], {"1": ([], []), "2": ([], [])}
    for k, (body, truth) in enumerate(answered):
        for row in (0, 1):
            outcome = str(names[truth[row]] if k % 4 else names[(truth[row] + 1) % 3])
            predicted = body["predictions"][row]
            rows.append({"request_id": body["request_id"], "row": row, "outcome": outcome})
            labelled[body["model"]["version"]][0].append(outcome)
            labelled[body["model"]["version"]][1].append(str(predicted))
    # the model answers class indices or names: outcomes are given as it answered
    if not isinstance(answered[0][0]["predictions"][0], str):
        index = {str(n): i for i, n in enumerate(names)}
        rows = [{**r, "outcome": index[r["outcome"]]} for r in rows]
        labelled = {v: ([str(index[o]) for o in t], p) for v, (t, p) in labelled.items()}
    record_outcomes("iris-g", rows, config=config)

    got = _scrape_until(dep.url, lambda g: len(_by_version(g, "jupyter_mlops_model_accuracy")) == 2)
    accuracy = _by_version(got, "jupyter_mlops_model_accuracy")
    for version, role in (("1", "primary"), ("2", "canary")):
        truth, predicted = labelled[version]
        assert accuracy[(version, role)] == pytest.approx(accuracy_score(truth, predicted))
        n_predicted = 3 * sum(1 for b, _ in answered if b["model"]["version"] == version)
        coverage = _by_version(got, "jupyter_mlops_label_coverage_ratio")[(version, role)]
        assert coverage == pytest.approx(len(truth) / n_predicted)
        assert _by_version(got, "jupyter_mlops_outcomes_total")[(version, role)] == len(truth)
        assert _by_version(got, "jupyter_mlops_labelled_rows")[(version, role)] == len(truth)
        assert 0 <= _by_version(got, "jupyter_mlops_last_outcome_age_seconds")[(version, role)] < 60
    assert got["jupyter_mlops_performance_window_seconds"][0][1] == 3600
    # the counter counts arrivals: a later refresh does not count the same outcomes twice
    later = _scrape_until(
        dep.url,
        lambda g: (
            g["jupyter_mlops_performance_refreshed_timestamp_seconds"][0][1]
            > got["jupyter_mlops_performance_refreshed_timestamp_seconds"][0][1]
        ),
    )
    assert _by_version(later, "jupyter_mlops_outcomes_total") == _by_version(
        got, "jupyter_mlops_outcomes_total"
    )


def test_the_monitor_widget_shows_performance_once_there_are_outcomes(server: Any) -> None:
    """The %monitor widget on the same deployment (shared to keep CI time): the performance
    view appears by itself once outcomes exist, with the figures of monitoring.performance."""
    from jupyter_mlops.monitoring import performance
    from jupyter_mlops.widgets.monitor import MonitorWidget, auto_every

    _, config = server
    report = performance("iris-g", last="1h", every=auto_every("1h"), config=config)
    assert not report.totals.empty  # the outcomes of the test above
    widget = MonitorWidget("iris-g", autostart=False, config=config)
    try:
        view = widget.performance_view
        assert view is not None and view in widget.children
        realised = [t for t in view.quality.data if t.meta["kind"] == "realised"]
        assert [t.meta["version"] for t in realised] == ["v1 (primary)", "v2 (canary)"]
        for trace, version in zip(realised, ("1", "2"), strict=True):
            rows = report.rows[report.rows["model_version"] == version].sort_values("window_start")
            assert list(trace.y) == pytest.approx(list(rows["accuracy"]))
            assert len(trace.y) >= 1
        assert "mlops-performance-table" in widget.static_html()
    finally:
        widget.close()
    quiet = MonitorWidget("iris-g", autostart=False, performance=False, config=config)
    assert quiet.performance_view is None
    quiet.close()


def test_the_estimate_and_its_band_precede_the_labels_then_meet_the_realised_value(
    server: Any,
) -> None:
    """New predictions (after the labelled ones, which calibrate the estimate): the view
    draws the estimated accuracy with its band while nothing is labelled, then the realised
    accuracy beside it once the outcomes arrive; every point is the report's own."""
    from sklearn.datasets import load_iris

    from jupyter_mlops.monitoring import performance
    from jupyter_mlops.predlog import record_outcomes
    from jupyter_mlops.widgets.performance import PerformanceView

    dep, config = server
    X, y = load_iris(return_X_y=True, as_frame=True)
    time.sleep(1.0)  # the window below starts after every earlier prediction
    start = time.time()
    answered = []
    with httpx.Client(base_url=dep.url, timeout=30) as http:
        for i in range(1, 150, 3):
            batch = X.iloc[i : i + 2]
            body = http.post(
                "/predict", json=batch.to_dict("records"), headers={"x-request-key": f"e{i}"}
            ).json()
            answered.append((body, list(y.iloc[i : i + 2])))

    def drawn() -> tuple[Any, PerformanceView]:
        last = time.time() - start + 0.5
        report = performance("iris-g", last=last, estimate=True, config=config)
        return report, PerformanceView(report)

    def kinds(view: PerformanceView, version: str) -> dict[str, list[Any]]:
        label = f"v{version} ({'primary' if version == '1' else 'canary'})"
        return {t.meta["kind"]: list(t.y) for t in view.quality.data if t.meta["version"] == label}

    before, view = drawn()
    assert {"estimated_accuracy", "estimated_accuracy_low", "estimated_accuracy_high"} <= set(
        before.rows.columns
    ), before.notes
    for version in ("1", "2"):
        rows = before.rows[before.rows["model_version"] == version]
        traces = kinds(view, version)
        assert traces["estimated"] == pytest.approx(list(rows["estimated_accuracy"]))
        assert traces["band_low"] == pytest.approx(list(rows["estimated_accuracy_low"]))
        assert traces["band_high"] == pytest.approx(list(rows["estimated_accuracy_high"]))
        assert all(v is None for v in traces.get("realised", [None]))  # nothing labelled yet

    outcomes = [
        {"request_id": body["request_id"], "outcome": truth}
        for body, truth in answered
    ]  # fmt: skip
    record_outcomes("iris-g", outcomes, config=config)
    after, view = drawn()
    for version in ("1", "2"):
        rows = after.rows[after.rows["model_version"] == version]
        traces = kinds(view, version)
        assert traces["realised"] == pytest.approx(list(rows["accuracy"]))
        assert all(v is not None for v in traces["realised"])
        assert traces["estimated"] == pytest.approx(list(rows["estimated_accuracy"]))
    assert "estimated" in view.table.value
