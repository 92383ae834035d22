"""Performance and business metrics over labelled rows, checked against scikit-learn.

Frames with exactly the columns of ``read_outcomes`` and ``prediction_counts`` (the outcome
store's contract), built here so every number has a known answer: realised scores per model
version, role and time window equal scikit-learn's on the same rows; label coverage and
delay; business expressions over confusion counts and outcome columns; figures for alert
rules with their per-role and per-version variants; expressions that must be refused.
The end-to-end scenarios over a real deployment are in tests/test_performance_live.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from jupyter_mlops.errors import ConditionError, MonitoringError
from jupyter_mlops.monitoring import BusinessMetric, score_outcomes
from jupyter_mlops.monitoring.alerts import evaluate
from jupyter_mlops.monitoring.rules import AlertRule
from jupyter_mlops.predlog.scores import classification_scores

START = pd.Timestamp("2026-01-01 00:00", tz="UTC")


def labelled(n: int = 4000, seed: int = 0, k: int = 2) -> pd.DataFrame:
    """A read_outcomes frame: two versions (primary v1, canary v2) over one hour."""
    rng = np.random.default_rng(seed)
    ts = START + pd.to_timedelta(np.sort(rng.uniform(0, 3600, n)), unit="s")
    classes = [f"c{i}" for i in range(k)]
    proba = rng.dirichlet(np.ones(k), size=n)
    pred = np.array(classes)[proba.argmax(axis=1)]
    right = rng.random(n) < 0.8
    truth = np.where(right, pred, np.array(classes)[rng.integers(0, k, n)])
    canary = rng.random(n) < 0.3
    delay = rng.exponential(120.0, n)
    frame = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "row": 0,
            "timestamp": ts,
            "arrived": ts + pd.to_timedelta(delay, unit="s"),
            "delay_s": delay,
            "deployment": "dep",
            "model_name": "m",
            "model_version": np.where(canary, "2", "1"),
            "run_id": "run",
            "role": np.where(canary, "canary", "primary"),
            "prediction": pred,
            "outcome": truth,
        }
    )
    for i, name in enumerate(classes):
        frame[f"proba_{name}"] = proba[:, i]
    frame["order_value"] = rng.uniform(10, 100, n).round(2)
    frame["converted"] = rng.random(n) < 0.25
    return frame


def counts_of(frame: pd.DataFrame, every: int | None = None, extra: int = 1000) -> pd.DataFrame:
    """A prediction_counts frame: every labelled row was predicted, plus ``extra`` more
    per version (unlabelled), spread as the labelled ones are."""
    keys = ["model_version", "role"]
    if every:
        bucket = (frame["timestamp"].astype("int64") // 10**9 // every) * every
        frame = frame.assign(bucket=bucket)
        keys.append("bucket")
    out = frame.groupby(keys).size().rename("n").reset_index()
    if extra:
        share = out["n"] / out.groupby("model_version")["n"].transform("sum")
        out["n"] += (share * extra).round().astype(int)
    return out


def test_realised_scores_per_version_equal_sklearn() -> None:
    frame = labelled()
    report = score_outcomes(frame, counts_of(frame, extra=0))
    assert report.task == "classification" and report.classes == ["c0", "c1"]
    assert len(report.totals) == 2
    for _, row in report.totals.iterrows():
        part = frame[frame["model_version"] == row["model_version"]]
        y, p = part["outcome"], part["prediction"]
        assert row["role"] == part["role"].iloc[0]
        assert row["n_labelled"] == len(part) == row["n_predictions"]
        assert row["coverage"] == 1.0
        assert row["accuracy"] == pytest.approx(metrics.accuracy_score(y, p))
        assert row["f1"] == pytest.approx(metrics.f1_score(y, p, average="macro"))
        assert row["roc_auc"] == pytest.approx(metrics.roc_auc_score(y == "c1", part["proba_c1"]))
        expected = metrics.log_loss(y, part[["proba_c0", "proba_c1"]], labels=["c0", "c1"])
        assert row["log_loss"] == pytest.approx(expected)
        assert row["delay_s_median"] == pytest.approx(part["delay_s"].median())


def test_time_windows_coverage_and_multiclass() -> None:
    frame = labelled(k=3, seed=2)
    report = score_outcomes(frame, counts_of(frame, every=600), every=600)
    rows = report.rows
    assert len(rows) == 12  # 6 windows of 10 minutes x 2 versions
    assert set(rows["window_start"]) == {START + pd.Timedelta(minutes=10 * i) for i in range(6)}
    for _, row in rows.iterrows():
        part = frame[
            (frame["model_version"] == row["model_version"])
            & (frame["timestamp"] >= row["window_start"])
            & (frame["timestamp"] < row["window_start"] + pd.Timedelta(minutes=10))
        ]
        assert row["n_labelled"] == len(part)
        assert 0.5 < row["coverage"] < 1.0  # the unlabelled predictions count
        assert row["coverage"] == pytest.approx(len(part) / row["n_predictions"])
        assert row["accuracy"] == pytest.approx(
            metrics.accuracy_score(part["outcome"], part["prediction"])
        )
        proba = part[["proba_c0", "proba_c1", "proba_c2"]].to_numpy()
        assert row["roc_auc"] == pytest.approx(
            metrics.roc_auc_score(part["outcome"], proba, multi_class="ovr")
        )
    # the totals are the windows pooled, not averaged
    totals = report.totals.set_index("model_version")
    assert totals.loc["1", "n_labelled"] == rows[rows["model_version"] == "1"]["n_labelled"].sum()


def test_regression_scores_and_task_inferred() -> None:
    rng = np.random.default_rng(3)
    frame = labelled(n=1000).drop(columns=["proba_c0", "proba_c1"])
    frame["outcome"] = rng.normal(50, 10, len(frame))
    frame["prediction"] = frame["outcome"] + rng.normal(0, 2, len(frame))
    report = score_outcomes(frame, counts_of(frame))
    assert report.task == "regression"
    row = report.totals.set_index("model_version").loc["1"]
    part = frame[frame["model_version"] == "1"]
    assert row["rmse"] == pytest.approx(
        math.sqrt(metrics.mean_squared_error(part["outcome"], part["prediction"]))
    )
    assert row["mae"] == pytest.approx(
        metrics.mean_absolute_error(part["outcome"], part["prediction"])
    )
    assert row["r2"] == pytest.approx(metrics.r2_score(part["outcome"], part["prediction"]))
    figs = report.figures()
    assert "rmse_v1" in figs and "accuracy" not in figs


def test_business_metrics_over_counts_and_outcome_columns() -> None:
    frame = labelled(seed=4)
    business = [
        BusinessMetric("revenue = 12*tp - 3*fp"),
        BusinessMetric("basket = mean(order_value) * rate(converted)"),
        BusinessMetric("value", "sum(order_value) / n - (fn + fp) / count(order_value)"),
    ]
    report = score_outcomes(frame, counts_of(frame), business=business)
    primary = frame[frame["role"] == "primary"]
    _tn, fp, fn, tp = metrics.confusion_matrix(
        primary["outcome"], primary["prediction"], labels=["c0", "c1"]
    ).ravel()
    figs = report.figures()
    assert figs["revenue_primary"] == 12 * tp - 3 * fp
    assert figs["revenue_per_1k_primary"] == pytest.approx((12 * tp - 3 * fp) / len(primary) * 1e3)
    expected = primary["order_value"].mean() * primary["converted"].mean()
    assert figs["basket_primary"] == pytest.approx(expected)
    expected = primary["order_value"].sum() / len(primary) - (fn + fp) / len(primary)
    assert figs["value_primary"] == pytest.approx(expected)
    assert figs["revenue"] == figs["revenue_primary"] + figs["revenue_canary"]
    assert "revenue" in report.totals.columns and "revenue_per_1k" in report.rows.columns


def test_a_business_metric_without_its_column_is_absent_and_explained() -> None:
    frame = labelled(n=500)
    report = score_outcomes(frame, counts_of(frame), business=[BusinessMetric("m = sum(tip)")])
    figs = report.figures()
    assert "m" not in figs and "no outcome column tip" in figs.notes["m"]
    # an alert rule over it is unknown, with the reason, never silently quiet
    result = evaluate(AlertRule("m_per_1k < 5"), figs, figs.notes)
    assert result.status == "unknown" and "tip" in result.explanation


@pytest.mark.parametrize(
    ("definition", "says"),
    [
        ("revenue 12*tp", "name = expression"),
        ('x = __import__("os").system("touch /tmp/pwned")', "functions are"),
        ("x = tp ** 2", "only + - * /"),
        ("x = tp if fp else fn", "not allowed"),
        ("x = (lambda: 1)()", "functions are"),
        ("x = order_value", "unknown name 'order_value'"),
        ("x = mean(a, b)", "takes one outcome column"),
        ("x = mean(1)", "takes one outcome column"),
        ("x = tp.real", "not allowed"),
        ("x = 'text'", "is not a number"),
        ("x = True", "is not a number"),
        ("x = 12*", "is not valid"),
        ("accuracy = tp", "taken by a monitored figure"),
        ("x_per_1k = tp", "taken by a monitored figure"),
        ("2x = tp", "must be a word"),
        ("x = " + "(tp + " * 40 + "1" + ")" * 40, "nested too deeply"),
        ("x = " + "+".join(["tp"] * 400), "characters long"),
    ],
)
def test_bad_business_expressions_are_one_line_errors(definition: str, says: str) -> None:
    with pytest.raises(ConditionError) as info:
        BusinessMetric(definition)
    message = str(info.value)
    assert says in message and "\n" not in message


def test_division_by_zero_leaves_the_figure_out() -> None:
    frame = labelled(n=300)
    frame["outcome"] = frame["prediction"]  # no errors at all: fp + fn == 0
    report = score_outcomes(frame, counts_of(frame), business=[BusinessMetric("r = tp/(fp+fn)")])
    figs = report.figures()
    assert "r" not in figs and "division by zero" in figs.notes["r"]


def test_figures_feed_alert_rules_with_role_and_version_variants() -> None:
    frame = labelled(seed=5)
    canary = frame["role"] == "canary"
    frame.loc[canary, "outcome"] = np.where(
        frame.loc[canary, "prediction"] == "c0", "c1", "c0"
    )  # the canary is always wrong
    report = score_outcomes(frame, counts_of(frame))
    figs = report.figures()
    assert figs["accuracy_canary"] == 0.0 == figs["accuracy_v2"]
    assert figs["accuracy_primary"] == figs["accuracy_v1"] > 0.8
    assert 0.5 < figs["accuracy"] < figs["accuracy_primary"]  # all labelled rows pooled
    assert 0 < figs["label_coverage"] < 1 and figs["label_delay_s"] > 0
    fired = evaluate(AlertRule("accuracy_canary < 0.9"), figs, figs.notes)
    quiet = evaluate(AlertRule("accuracy_primary < 0.7"), figs, figs.notes)
    assert fired.status == "firing" and quiet.status == "quiet"


def test_no_outcomes_is_explained_not_zero() -> None:
    empty = labelled(n=10).iloc[0:0]
    report = score_outcomes(empty, pd.DataFrame({"model_version": ["1"], "role": ["primary"],
                                                 "n": [50]}))  # fmt: skip
    figs = report.figures()
    assert "accuracy" not in figs and "no outcomes" in figs.notes["accuracy"]
    assert figs["label_coverage"] == 0.0  # 50 predictions, none labelled: a real zero
    assert report.totals.iloc[0]["n_predictions"] == 50


def test_to_dict_is_json() -> None:
    import json

    frame = labelled(n=400)
    report = score_outcomes(
        frame, counts_of(frame, every=900), every=900, business=[BusinessMetric("r = 2*tp")]
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["task"] == "classification" and data["business"][0]["name"] == "r"
    assert data["rows"][0]["window_start"].startswith("2026-01-01T00:00:00")
    assert "accuracy_v1" in data["figures"]


def test_tied_probabilities_auc_equals_sklearn() -> None:
    rng = np.random.default_rng(6)
    truth = rng.integers(0, 2, 5000)
    score = np.round(rng.random(5000) * 0.5 + truth * 0.2, 1)  # few distinct values
    proba = np.c_[1 - score, score]
    got = classification_scores(truth, (score > 0.5).astype(int), proba=proba, classes=[0, 1])
    assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(truth, score))


def test_unknown_task_is_refused() -> None:
    with pytest.raises(MonitoringError, match="classification or regression"):
        score_outcomes(labelled(n=10), None, task="ranking")
