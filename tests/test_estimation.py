"""Confidence-based performance estimation (issue #18): calibration as NannyML decides and
fits it, the estimate under covariate shift, its band, and where a deployment's labelled
reference comes from (and the one-line errors when there is none)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring import calibration
from jupyter_mlops.monitoring.estimation import Estimator, fit_estimator
from jupyter_mlops.monitoring.estimation_reference import (
    estimator_for,
    estimator_from_frame,
    frame_classes,
)
from jupyter_mlops.predlog.scores import classification_scores

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from estimation_scenarios import scenario


def _fit(data: dict[str, np.ndarray]) -> Estimator:
    names = data["classes"]
    return fit_estimator(
        data["ref_proba"], names[data["ref_y"]], list(names), reference_pred=names[data["ref_pred"]]
    )


def _realised(data: dict[str, np.ndarray]) -> float:
    return float(np.mean(data["ana_pred"] == data["ana_y"]))


# -- the pieces equal scikit-learn's -----------------------------------------------------


def test_calibration_pieces_equal_scikit_learn() -> None:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit

    rng = np.random.default_rng(5)
    x = rng.normal(size=3000)
    score = np.round(1 / (1 + np.exp(-2.5 * x)), 3)  # ties, as real scores have
    y = (rng.random(3000) < 1 / (1 + np.exp(-x))).astype(int)
    fitted = IsotonicRegression(out_of_bounds="clip").fit(score, y)
    probe = rng.random(500) * 1.2 - 0.1  # beyond both ends too
    mine = calibration.calibrate(calibration.fit_calibrator(score, y), probe)
    np.testing.assert_allclose(mine, fitted.predict(probe), rtol=0, atol=1e-12)

    splits = calibration._stratified_splits(y)
    theirs = StratifiedShuffleSplit(10, test_size=0.1, random_state=42).split(score, y)
    assert splits is not None
    for (train, test), (train2, test2) in zip(splits, theirs, strict=True):
        assert (train == train2).all() and (test == test2).all()

    assert calibration.roc_auc(score, y) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    weight = rng.random(3000)  # a probability of being positive, as an estimate uses
    expected = roc_auc_score(
        np.r_[np.ones(3000), np.zeros(3000)],
        np.r_[score, score],
        sample_weight=np.r_[weight, 1 - weight],
    )
    assert calibration.roc_auc(score, weight) == pytest.approx(expected, abs=1e-12)


def test_calibration_is_skipped_when_nannyml_would_skip_it() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    assert not calibration.needs_calibration(rng.random(500), np.zeros(500, dtype=int))
    assert not calibration.needs_calibration(y + rng.random(500) * 0.1, y)  # AUC 1
    assert calibration.calibrator_if_needed(y + rng.random(500) * 0.1, y) is None


# -- covariate shift ---------------------------------------------------------------------


@pytest.mark.parametrize("classes", [2, 3])
def test_estimate_tracks_realised_accuracy_under_covariate_shift(classes: int) -> None:
    """No labels in the windows: as the inputs move towards the decision boundary the
    realised accuracy falls, and the estimate falls with it (within 0.03, and the realised
    value inside the band widened by that); an unshifted window stays at the reference's
    accuracy. The model is over-confident: its raw mean confidence misses by far, so the
    calibration is what makes the estimate right."""
    estimates, realised = [], []
    for shift in (0.0, 0.5, 1.0):
        data = scenario(20_000, 20_000, classes=classes, shift=shift, seed=11)
        estimator = _fit(data)
        result = estimator.estimate(data["ana_proba"], data["classes"][data["ana_pred"]])
        estimates.append(result["estimated_accuracy"])
        realised.append(_realised(data))
        assert result["n"] == 20_000
        assert abs(result["estimated_accuracy"] - realised[-1]) <= 0.03
        assert result["estimated_accuracy_low"] - 0.03 <= realised[-1]
        assert realised[-1] <= result["estimated_accuracy_high"] + 0.03
        raw_confidence = float(data["ana_proba"].max(axis=1).mean())
        assert raw_confidence - realised[-1] > 0.08
        if shift == 0.0:
            assert abs(result["estimated_accuracy"] - estimator.reference_accuracy) <= 0.015
    assert realised[0] - realised[-1] > 0.05  # the shift matters...
    assert estimates[0] - estimates[-1] > 0.05  # ...and the estimate sees it


def test_band_is_three_standard_errors_of_reference_correctness() -> None:
    data = scenario(5_000, 2_500, classes=2, seed=3)
    estimator = _fit(data)
    result = estimator.estimate(data["ana_proba"])
    se = estimator.accuracy_std / np.sqrt(2_500)
    assert result["estimated_accuracy_high"] - result["estimated_accuracy"] == pytest.approx(3 * se)
    assert result["estimated_accuracy"] - result["estimated_accuracy_low"] == pytest.approx(3 * se)
    small = estimator.estimate(data["ana_proba"][:100])
    assert small["estimated_accuracy_high"] - small["estimated_accuracy_low"] > 4 * (
        result["estimated_accuracy_high"] - result["estimated_accuracy_low"]
    )


def test_f1_and_roc_auc_estimates_follow_the_realised_ones() -> None:
    """Macro F1 and ROC AUC estimated without labels land near the realised values of
    predlog.scores (the same definitions) on a shifted window."""
    for classes in (2, 3):
        data = scenario(20_000, 20_000, classes=classes, shift=0.7, seed=4)
        names = data["classes"]
        result = _fit(data).estimate(data["ana_proba"], names[data["ana_pred"]])
        real = classification_scores(
            names[data["ana_y"]],
            names[data["ana_pred"]],
            proba=data["ana_proba"],
            classes=list(names),
        )
        assert abs(result["estimated_f1"] - real["f1"]) <= 0.03
        assert abs(result["estimated_roc_auc"] - real["roc_auc"]) <= 0.03


# -- inputs ------------------------------------------------------------------------------


def test_labels_frames_and_missing_values() -> None:
    data = scenario(3_000, 1_000, classes=2, seed=8)
    names = data["classes"]
    estimator = _fit(data)
    base = estimator.estimate(data["ana_proba"])
    # A frame with proba_<class> columns, the 1-D probability of the second class, and the
    # predicted labels spelled out give the same estimate as the matrix.
    frame = pd.DataFrame(
        {"proba_no": data["ana_proba"][:, 0], "proba_yes": data["ana_proba"][:, 1]}
    )
    assert estimator.estimate(frame)["estimated_accuracy"] == pytest.approx(
        base["estimated_accuracy"]
    )
    one_column = estimator.estimate(data["ana_proba"][:, 1], names[data["ana_pred"]])
    assert one_column["estimated_accuracy"] == pytest.approx(base["estimated_accuracy"])
    # Rows without probabilities are left out; a predicted label the model does not know
    # counts as wrong.
    holes = data["ana_proba"].copy()
    holes[:10] = np.nan
    assert estimator.estimate(holes)["n"] == 990
    pred = names[data["ana_pred"]].astype(object)
    pred[:500] = "maybe"
    assert (
        estimator.estimate(data["ana_proba"], pred)["estimated_accuracy"]
        < 0.7 * base["estimated_accuracy"]
    )
    assert estimator.estimate(data["ana_proba"][:0]) == {"n": 0}
    # Labels match classes as text: 0/1 integers against classes "0"/"1", booleans against
    # "False"/"True" (prediction-log frames name classes by their text).
    numeric = fit_estimator(data["ref_proba"], data["ref_y"], ["0", "1"])
    assert numeric.n_reference == 3_000
    flags = fit_estimator(data["ref_proba"], data["ref_y"] == 1, ["False", "True"])
    assert flags.reference_accuracy == numeric.reference_accuracy
    assert flags.estimate(data["ana_proba"]) == numeric.estimate(data["ana_proba"])


def test_one_line_errors() -> None:
    data = scenario(3_000, 100, classes=3, seed=9)
    with pytest.raises(MonitoringError, match="at least 20") as small:
        fit_estimator(data["ref_proba"][:10], data["ref_y"][:10], [0, 1, 2])
    with pytest.raises(MonitoringError, match="None of the reference labels") as unknown:
        fit_estimator(data["ref_proba"], data["ref_y"], ["x", "y", "z"])
    with pytest.raises(MonitoringError, match="do not fit 2 classes") as shape:
        fit_estimator(data["ref_proba"], data["ref_y"], [0, 1])
    with pytest.raises(MonitoringError, match="predict_proba") as no_proba:
        frame_classes(pd.DataFrame({"prediction": [1.5, 2.5], "outcome": [1.0, 2.0]}))
    for error in (small, unknown, shape, no_proba):
        assert "\n" not in str(error.value)


# -- the reference of a deployment -------------------------------------------------------


def _outcomes(data: dict[str, np.ndarray], version: str, start: str) -> pd.DataFrame:
    names = data["classes"]
    n = len(data["ref_y"])
    return pd.DataFrame(
        {f"proba_{c}": data["ref_proba"][:, j] for j, c in enumerate(names)}
        | {
            "timestamp": pd.date_range(start, periods=n, freq="s", tz="UTC"),
            "model_version": version,
            "prediction": names[data["ref_pred"]],
            "outcome": names[data["ref_y"]],
        }
    )


def test_reference_is_the_same_version_before_the_window() -> None:
    """Only version 1's labelled rows predicted before the window calibrate version 1's
    estimate: version 2's rows (a different model) and the window's own rows are left out."""
    v1 = _outcomes(scenario(2_000, 10, classes=2, seed=1), "1", "2026-01-01")
    v2 = _outcomes(scenario(2_000, 10, classes=2, temper=0.3, seed=2), "2", "2026-01-01")
    outcomes = pd.concat([v1, v2], ignore_index=True)
    before = "2026-01-01T00:25:00Z"  # 1,500 s into both versions' rows
    estimator = estimator_for("iris-prod", model_version=1, before=before, outcomes=outcomes)
    assert estimator.n_reference == 1_500
    alone = estimator_from_frame(v1.iloc[:1_500])
    probe = v1[["proba_no", "proba_yes"]]
    assert estimator.estimate(probe) == alone.estimate(probe)
    mixed = estimator_from_frame(pd.concat([v1.iloc[:1_500], v2.iloc[:1_500]]))
    assert mixed.estimate(probe) != alone.estimate(probe)


def test_reference_errors_name_the_version_and_the_way_out(tmp_path: Path) -> None:
    data = scenario(500, 10, classes=2, seed=1)
    outcomes = _outcomes(data, "1", "2026-01-01")
    with pytest.raises(MonitoringError, match=r"No labelled predictions of iris-prod v2 ") as none:
        estimator_for("iris-prod", model_version=2, before="2026-02-01", outcomes=outcomes)
    assert "reference=" in str(none.value) and "\n" not in str(none.value)
    with pytest.raises(MonitoringError, match="before 2025-12-31"):
        estimator_for("iris-prod", model_version=1, before="2025-12-31", outcomes=outcomes)
    no_proba = outcomes.drop(columns=["proba_no", "proba_yes"])
    with pytest.raises(MonitoringError, match="v1 logged no probabilities"):
        estimator_for("iris-prod", model_version=1, outcomes=no_proba)
    # An explicit reference wins: a CSV with proba_<class> columns and a target column.
    path = tmp_path / "holdout.csv"
    outcomes.rename(columns={"outcome": "target"}).to_csv(path, index=False)
    given = estimator_for("iris-prod", model_version=2, reference=path, outcomes=outcomes)
    assert given.n_reference == 500
    with pytest.raises(MonitoringError, match="no target column"):
        estimator_from_frame(outcomes.drop(columns=["outcome"]))


def test_large_reference_decides_on_a_sample_and_fits_on_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beyond DECISION_ROWS the cross-validated decision looks at a fixed random sample
    (the same decision as on that sample alone); the calibrator is fitted on every row."""
    monkeypatch.setattr(calibration, "DECISION_ROWS", 2_000)
    pick = np.sort(np.random.default_rng(42).choice(6_000, 2_000, replace=False))
    data = scenario(6_000, 10, classes=3, temper=1.0, bias=0.0, seed=12)  # calibrated model
    decisions = []
    for j in range(3):
        score, positive = data["ref_proba"][:, j], (data["ref_y"] == j).astype(int)
        decided = calibration.needs_calibration(score, positive)
        assert decided == calibration.needs_calibration(score[pick], positive[pick])
        fitted = calibration.calibrator_if_needed(score, positive)
        assert (fitted is not None) == decided
        if fitted is not None:
            whole = calibration.fit_calibrator(score, positive)
            np.testing.assert_array_equal(fitted[0], whole[0])
            np.testing.assert_allclose(fitted[1], whole[1])
        decisions.append(decided)
    assert set(decisions) == {True, False}  # both ways taken
