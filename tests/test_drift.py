"""The drift engine on synthetic data with known shifts, checked against scipy.

Sizes stay at or below 10,000 per side where statistics are compared with scipy, so both
use the same exact KS distribution; the large-data (binned) path is checked against the
exact one through its reported bounds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from jupyter_mlops.monitoring import (
    DriftReport,
    DriftThresholds,
    MonitoringError,
    ReferenceProfile,
    drift,
    parse_window,
    profile,
)
from jupyter_mlops.monitoring import stats as st


def _frames(n: int = 4000, m: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current with planted shifts in three columns, none in three others."""
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "mean_shift": rng.normal(0, 1, n),
            "variance": rng.normal(0, 1, n),
            "stable_a": rng.normal(5, 2, n),
            "stable_b": rng.exponential(1.0, n),
            "colour": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "shape": rng.choice(["round", "square"], n),
        }
    )
    cur = pd.DataFrame(
        {
            "mean_shift": rng.normal(0.5, 1, m),
            "variance": rng.normal(0, 1.7, m),
            "stable_a": rng.normal(5, 2, m),
            "stable_b": rng.exponential(1.0, m),
            # 20% of a category never seen in training
            "colour": rng.choice(["red", "green", "blue", "purple"], m, p=[0.4, 0.24, 0.16, 0.2]),
            "shape": rng.choice(["round", "square"], m),
        }
    )
    return ref, cur


# -- statistics equal scipy's --------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "m", "shift", "rounding"),
    [(500, 700, 0.0, None), (5000, 3000, 0.2, None), (1000, 1000, 0.1, 1), (37, 8000, 0.5, None)],
)
def test_numeric_statistics_equal_scipy(n: int, m: int, shift: float, rounding: int | None) -> None:
    rng = np.random.default_rng(n + m)
    ref = rng.normal(0, 1, n)
    cur = rng.normal(shift, 1.2, m)
    if rounding is not None:  # many ties
        ref, cur = np.round(ref, rounding), np.round(cur, rounding)
    report = drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}))
    item = report.feature("x")
    expected = ss.ks_2samp(ref, cur)
    assert item.exact is True
    assert item.ks_statistic == expected.statistic  # bit for bit
    assert item.ks_pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    w = ss.wasserstein_distance(ref, cur)
    assert item.wasserstein == pytest.approx(w, rel=1e-12)
    assert item.wasserstein_norm == pytest.approx(w / np.std(ref), rel=1e-12)


def test_psi_on_reference_deciles() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(0, 1, 5000), rng.normal(0.3, 1, 4000)
    edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10) / ref.size
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10) / cur.size
    expected = float(np.sum((c - r) * np.log(c / r)))
    item = drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})).feature("x")
    assert item.psi == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("ref_p", "cur_p"), [([0.5, 0.5], [0.45, 0.55]), ([0.2, 0.3, 0.5], [0.25, 0.25, 0.5])]
)
def test_chi_squared_equals_scipy(ref_p: list[float], cur_p: list[float]) -> None:
    rng = np.random.default_rng(7)
    cats = [f"c{i}" for i in range(len(ref_p))]
    ref = rng.choice(cats, 3000, p=ref_p)
    cur = rng.choice(cats, 2000, p=cur_p)
    item = drift(pd.DataFrame({"k": ref}), pd.DataFrame({"k": cur})).feature("k")
    table = [[int((ref == c).sum()) for c in cats], [int((cur == c).sum()) for c in cats]]
    expected = ss.chi2_contingency(table)  # Yates' correction with two categories, as ours
    assert item.kind == "categorical"
    assert item.chi2_statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert item.chi2_pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    assert item.chi2_dof == expected.dof


def test_ks_pvalue_above_scipys_exact_range_stays_close() -> None:
    """Above n*m/(n+m) = 10,000 the Kolmogorov limit with Stephens' correction is used."""
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(0, 1, 30_000), rng.normal(0.02, 1, 30_000)
    item = drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})).feature("x")
    expected = ss.ks_2samp(ref, cur)
    assert item.ks_statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert item.ks_pvalue == pytest.approx(expected.pvalue, rel=5e-3)


# -- known shifts found, and only them -----------------------------------------------------


def test_planted_shifts_are_found_and_nothing_else() -> None:
    ref, cur = _frames()
    report = drift(ref, cur)
    status = {f.name: f.status for f in report.features}
    assert status["mean_shift"] == "drift"
    assert status["variance"] == "drift"
    assert status["colour"] == "drift"
    for name in ("stable_a", "stable_b", "shape"):
        assert status[name] == "ok", report.feature(name)
    assert set(report.drifted) == {"mean_shift", "variance", "colour"}
    assert report.drift_share == pytest.approx(0.5)
    assert report.dataset_drift is True  # 3 of 6 >= the default share of 0.5
    assert "purple" in " ".join(report.feature("colour").notes)
    # most drifted first, by status then PSI
    assert [f.status for f in report.features[:3]] == ["drift"] * 3
    assert report.features[0].score >= report.features[1].score >= report.features[2].score
    stricter = drift(ref, cur, share=0.6)
    assert stricter.dataset_drift is False


def test_no_shift_means_no_drift() -> None:
    rng = np.random.default_rng(5)
    make = lambda n: pd.DataFrame(  # noqa: E731
        {f"f{i}": rng.normal(i, 1 + i / 10, n) for i in range(8)}
        | {"cat": rng.choice(list("abcd"), n)}
    )
    report = drift(make(5000), make(5000))
    assert report.drifted == []
    assert report.dataset_drift is False
    assert report.drift_share == 0.0


def test_large_samples_flag_tiny_shifts_as_warning_not_drift() -> None:
    """With 200k rows a 0.02 sd shift is 'significant' but immaterial."""
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 200_000)})
    cur = pd.DataFrame({"x": rng.normal(0.02, 1, 200_000)})
    item = drift(ref, cur).feature("x")
    assert item.ks_pvalue < 0.05
    assert item.status == "warning"


def test_thresholds_are_configurable() -> None:
    ref, cur = _frames()
    lenient = DriftThresholds(psi_warning=50, psi_drift=100, wasserstein_drift=100)
    report = drift(ref, cur, thresholds=lenient)
    assert report.feature("mean_shift").status == "warning"  # significant, not material
    with pytest.raises(ValueError, match="Unknown drift threshold"):
        drift(ref, cur, psi_drfit=0.3)


# -- the large-data path -------------------------------------------------------------------


def test_binned_path_brackets_the_exact_statistics() -> None:
    rng = np.random.default_rng(9)
    ref = pd.DataFrame({"x": rng.lognormal(0, 0.7, 150_000), "y": rng.normal(0, 1, 150_000)})
    cur = pd.DataFrame({"x": rng.lognormal(0.05, 0.7, 160_000), "y": rng.normal(0, 1.05, 160_000)})
    exact = drift(ref, cur, exact_max_rows=10**9)
    binned = drift(ref, [cur.iloc[:80_000], cur.iloc[80_000:]], exact_max_rows=50_000)
    for name in ("x", "y"):
        e, b = exact.feature(name), binned.feature(name)
        assert e.exact and not b.exact
        assert b.ks_statistic <= e.ks_statistic + 1e-12
        assert e.ks_statistic <= b.ks_statistic + b.ks_bound + 1e-12
        assert b.ks_bound < st.KS_TOLERANCE
        assert abs(b.wasserstein - e.wasserstein) <= b.wasserstein_bound + 1e-12
        assert b.psi == pytest.approx(e.psi, abs=2e-3)  # PSI edges snapped to the grid
        assert b.status == e.status
        assert any("large data" in n for n in b.notes)


def test_chunks_add_up_to_the_whole() -> None:
    ref, cur = _frames(seed=4)
    whole = drift(ref, cur)
    pieces = drift(ref, (cur.iloc[i : i + 700] for i in range(0, len(cur), 700)))
    for a, b in zip(whole.features, pieces.features, strict=True):
        assert (a.name, a.status) == (b.name, b.status)
        assert a.psi == pytest.approx(b.psi, rel=1e-12)
        assert a.pvalue == pytest.approx(b.pvalue, rel=1e-9)


def test_profile_is_cached_and_reusable(tmp_path: Path) -> None:
    ref, cur = _frames(seed=6)
    prof = profile(ref, key="snapshot-md5-abc", cache_dir=tmp_path)
    assert (tmp_path / "snapshot-md5-abc-b10" / "profile.json").is_file()
    loaded = ReferenceProfile.load(tmp_path / "snapshot-md5-abc-b10")
    assert loaded is not None
    np.testing.assert_array_equal(
        loaded.columns["stable_a"].numeric.sorted, np.sort(ref["stable_a"].to_numpy())
    )
    a, b, c = drift(ref, cur), drift(prof, cur), drift(loaded, cur)
    assert [f.psi for f in a.features] == [f.psi for f in b.features] == [f.psi for f in c.features]


# -- bad input: a reason, never a crash or a silent verdict --------------------------------


def test_bad_columns_are_not_computed_with_a_reason() -> None:
    n = 2000
    rng = np.random.default_rng(1)
    ref = pd.DataFrame(
        {
            "good": rng.normal(size=n),
            "only_ref": 1.0,
            "all_nan_cur": rng.normal(size=n),
            "all_nan_ref": np.nan,
            "constant": 3.5,
            "mixed": ["a"] * (n - 1) + [2.0],
            "type_change": rng.normal(size=n),
            "ids": [f"id-{i}" for i in range(n)],
        }
    )
    cur = pd.DataFrame(
        {
            "good": rng.normal(size=n),
            "only_cur": 2.0,
            "all_nan_cur": np.nan,
            "all_nan_ref": rng.normal(size=n),
            "constant": rng.choice([3.5, 4.5], n),
            "mixed": rng.normal(size=n),
            "type_change": rng.choice(["x", "y"], n),
            "ids": [f"id-{i + n}" for i in range(n)],
        }
    )
    report = drift(ref, cur)
    why = {f.name: (f.status, f.reason or "") for f in report.features}
    assert why["only_ref"] == ("not computed", "not computed: the current data has no such column")
    assert why["only_cur"] == ("not computed", "not computed: the reference has no such column")
    assert "all 2,000 current values are missing" in why["all_nan_cur"][1]
    assert "all 2,000 reference values are missing" in why["all_nan_ref"][1]
    assert "numbers and text mixed" in why["mixed"][1]
    assert "reference is numeric but the current data is categorical" in why["type_change"][1]
    assert why["constant"][0] == "drift"  # a constant that starts to vary has drifted
    assert why["good"][0] == "ok"
    assert "identifier" in why["ids"][1]
    assert report.drifted == ["constant"] and len(report.computed) == 2
    assert "not counted" in report.verdict


def test_constant_float_reference_is_exact_and_noted() -> None:
    ref = pd.DataFrame({"c": np.full(200, 2.25)})
    cur = pd.DataFrame({"c": np.r_[np.full(150, 2.25), np.full(50, 3.0)]})
    item = drift(ref, cur).feature("c")
    assert item.kind == "numeric"
    assert item.ks_statistic == pytest.approx(ss.ks_2samp(ref.c, cur.c).statistic)
    assert item.ks_pvalue == pytest.approx(ss.ks_2samp(ref.c, cur.c).pvalue)
    assert item.wasserstein == pytest.approx(ss.wasserstein_distance(ref.c, cur.c))
    assert item.wasserstein_norm is None
    assert any("constant" in n for n in item.notes)


def test_nothing_computable_gives_an_unknown_verdict() -> None:
    report = drift(pd.DataFrame({"a": [1.0] * 50}), pd.DataFrame({"b": [1.0] * 50}))
    assert report.drift_share is None and report.dataset_drift is None
    assert report.verdict.startswith("Drift unknown")
    assert "drift_share" not in report.figures()


def test_empty_current_and_few_rows() -> None:
    ref, cur = _frames()
    with pytest.raises(MonitoringError, match="empty"):
        drift(ref, cur.iloc[:0])
    with pytest.raises(MonitoringError, match="DataFrame"):
        drift(ref, [1, 2, 3])  # type: ignore[list-item]
    few = drift(ref, cur.iloc[:10])
    assert {f.status for f in few.features} == {"insufficient"}
    assert few.dataset_drift is None
    assert "only 10 current values" in (few.features[0].reason or "")


def test_missing_share_change_warns() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=2000)})
    values = rng.normal(size=2000)
    values[:600] = np.nan
    item = drift(ref, pd.DataFrame({"x": values})).feature("x")
    assert item.status == "warning"
    assert "missing values 0% -> 30%" in (item.reason or "")


def test_integer_codes_and_predictions_are_categorical() -> None:
    rng = np.random.default_rng(8)
    ref = pd.DataFrame({"x": rng.normal(size=3000), "prediction": rng.integers(0, 3, 3000)})
    cur = pd.DataFrame(
        {"x": rng.normal(size=3000), "prediction": rng.choice([0, 1, 2], 3000, p=[0.7, 0.2, 0.1])}
    )
    report = drift(ref, cur, prediction="prediction")
    assert [f.name for f in report.features] == ["x"]
    assert report.prediction is not None
    assert report.prediction.kind == "categorical"
    assert report.prediction.status == "drift"
    assert report.dataset_drift is False  # the prediction does not vote
    assert "prediction: drift" in report.verdict
    # floats 1.0 and ints 1 are the same category
    same = drift(pd.DataFrame({"k": [1.0, 2.0] * 50}), pd.DataFrame({"k": [1, 2] * 50}))
    assert same.feature("k").psi == pytest.approx(0.0)


# -- the report ----------------------------------------------------------------------------


def test_report_views_and_round_trip() -> None:
    ref, cur = _frames()
    report = drift(ref, cur)
    frame = report.to_frame()
    assert list(frame["feature"])[:3] == report.drifted
    assert {"psi", "ks_pvalue", "chi2_pvalue", "wasserstein_norm", "status"} <= set(frame.columns)
    text = str(report)
    assert report.verdict in text and "mean_shift" in text
    html = report._repr_html_()
    assert "<svg" in html and "mean_shift" in html and "DRIFT" in html
    data = json.loads(json.dumps(report.to_dict()))  # JSON-safe
    again = DriftReport.from_dict(data)
    assert again.verdict == report.verdict
    assert again.feature("colour").psi == report.feature("colour").psi
    figs = report.figures()
    assert figs["drift_share"] == 0.5 and figs["n_drifted"] == 3.0


def test_windows_parse() -> None:
    assert parse_window("90s") == 90
    assert parse_window("30m") == 1800
    assert parse_window("1h") == 3600
    assert parse_window("2d") == 172800
    assert parse_window(None) is None
    assert parse_window("all") is None
    for bad in ("1y", "abc", "-1h", "0m"):
        with pytest.raises(MonitoringError):
            parse_window(bad)


def test_log_to_mlflow(project: Path) -> None:
    from jupyter_mlops.client import client
    from jupyter_mlops.config import load_config

    ref, cur = _frames()
    report = drift(ref, cur, current_info={"deployment": "iris-prod", "window": "last 1h"})
    run_id = report.log_to_mlflow()
    mlflow_client = client(load_config())
    run = mlflow_client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["drift_share"] == 0.5
    assert math.isclose(run.data.metrics["drift_psi.colour"], report.feature("colour").psi)
    assert run.data.tags["mlops.drift.deployment"] == "iris-prod"
    names = {a.path for a in mlflow_client.list_artifacts(run_id, "drift")}
    assert names == {"drift/report.json", "drift/report.html", "drift/features.csv"}
    experiment = mlflow_client.get_experiment(run.info.experiment_id)
    assert experiment.name == "monitoring-iris-prod"


def test_a_registered_statistic_is_in_every_output() -> None:
    from jupyter_mlops.monitoring.stats import NUMERIC, Statistic, register, unregister

    class MeanShift(Statistic):
        name = "mean_shift"
        kinds = (NUMERIC,)
        fields = ("mean_shift",)

        def exact(self, sample):  # type: ignore[no-untyped-def]
            return {"mean_shift": float(sample.current.mean() - sample.profile.sorted.mean())}

    ref, cur = _frames()
    before = drift(ref, cur)
    register(MeanShift())
    try:
        report = drift(ref, cur)
        item = report.feature("mean_shift")
        shift = cur["mean_shift"].mean() - ref["mean_shift"].mean()
        assert item.mean_shift == pytest.approx(shift)
        assert report.feature("colour").mean_shift is None  # numeric features only
        data = json.loads(json.dumps(report.to_dict()))
        assert list(data["features"][0])[-4:] == ["mean_shift", "exact", "notes", "plot"]
        assert DriftReport.from_dict(data).feature("mean_shift").mean_shift == item.mean_shift
        assert "mean_shift" in report.to_frame().columns
        assert [f.status for f in report.features] == [f.status for f in before.features]
    finally:
        unregister("mean_shift")
    assert "mean_shift" not in drift(ref, cur).to_dict()["features"][0]
