"""The performance view: per model version over time, the realised accuracy (or RMSE) beside
the estimate and its band, label coverage and business metrics; a table of the whole window;
a static HTML copy for nbconvert. Drawn from a report shaped as ``PerformanceReport``."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jupyter_mlops.widgets.performance import (
    PerformanceView,
    business_columns,
    has_outcomes,
    quality_traces,
)


@dataclass
class Report:
    """The parts of ``monitoring.PerformanceReport`` the view reads."""

    task: str
    rows: pd.DataFrame
    totals: pd.DataFrame
    business: list[Any] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


def _classification() -> Report:
    starts = pd.date_range("2026-01-01", periods=4, freq="10min", tz="UTC")
    rows = []
    for version, role, base in (("1", "primary", 0.9), ("2", "canary", 0.8)):
        for i, start in enumerate(starts):
            acc = base - 0.05 * i
            rows.append(
                {
                    "model_version": version, "role": role, "window_start": start,
                    "n_predictions": 100, "n_labelled": 50 + i, "coverage": (50 + i) / 100,
                    "accuracy": acc if i != 2 else np.nan, "f1": acc - 0.01,
                    "estimated_accuracy": acc + 0.01, "estimated_accuracy_low": acc - 0.02,
                    "estimated_accuracy_high": acc + 0.04, "revenue": 12.0 * i,
                    "revenue_per_1k": 240.0 * i,
                }
            )  # fmt: skip
    frame = pd.DataFrame(rows)
    totals = (
        frame.groupby(["model_version", "role"], as_index=False)
        .agg({"n_predictions": "sum", "n_labelled": "sum", "accuracy": "mean", "f1": "mean",
              "estimated_accuracy": "mean", "estimated_accuracy_low": "min",
              "estimated_accuracy_high": "max", "revenue": "sum", "revenue_per_1k": "mean"})
    )  # fmt: skip
    totals["coverage"] = totals["n_labelled"] / totals["n_predictions"]
    return Report("classification", frame, totals, business=[SimpleNamespace(name="revenue")])


def test_realised_accuracy_beside_the_estimate_and_its_band_per_version() -> None:
    report = _classification()
    view = PerformanceView(report, title="iris-prod")
    data = view.quality.data
    kinds = [(t.meta["version"], t.meta["kind"]) for t in data]
    assert kinds == [
        (v, k)
        for v in ("v1 (primary)", "v2 (canary)")
        for k in ("realised", "band_high", "band_low", "estimated")
    ]
    realised = data[0]
    assert list(realised.y) == [0.9, 0.85, None, 0.75]  # a missing window stays a gap
    assert realised.line.dash == "solid" and data[4].line.dash == "dash"  # canary dashed
    assert data[2].fill == "tonexty"  # the band is the area between low and high
    assert list(data[1].y) == pytest.approx([0.94, 0.89, 0.84, 0.79])
    assert list(data[2].y) == pytest.approx([0.88, 0.83, 0.78, 0.73])
    assert list(data[3].y) == pytest.approx([0.91, 0.86, 0.81, 0.76])
    assert data[3].line.dash == "dot"
    assert "estimated" in view.quality.layout.title.text
    # x is the window start, the same for every trace of a version
    assert list(realised.x) == list(data[3].x)
    assert str(realised.x[0]).startswith("2026-01-01T00:00")

    coverage = view.coverage.data
    assert [t.meta["version"] for t in coverage] == ["v1 (primary)", "v2 (canary)"]
    assert list(coverage[0].y) == [0.5, 0.51, 0.52, 0.53]
    assert view.coverage.layout.yaxis.tickformat == ".0%"

    business = view.business.data
    assert [(t.meta["metric"], t.meta["version"]) for t in business] == [
        ("revenue", "v1 (primary)"),
        ("revenue", "v2 (canary)"),
    ]
    assert list(business[0].y) == [0.0, 12.0, 24.0, 36.0]
    assert view.business_box.layout.display is None

    table = view.table.value
    assert table.count("<tr>") == 3  # header + one per version
    assert "estimated" in table and "revenue" in table and "/1k" in table
    assert "[0.73, 0.94]" in table  # the whole window's band of v1
    assert "412 labelled of 800 predicted rows" in view.header.value


def test_regressors_plot_rmse_and_no_estimate() -> None:
    starts = pd.date_range("2026-01-01", periods=3, freq="1h", tz="UTC")
    rows = pd.DataFrame(
        {
            "model_version": "3", "role": "primary", "window_start": starts,
            "n_predictions": [10, 10, 10], "n_labelled": [10, 5, 0],
            "coverage": [1.0, 0.5, 0.0], "rmse": [1.5, 2.0, np.nan], "mae": [1.0, 1.5, np.nan],
            "r2": [0.8, 0.7, np.nan],
        }
    )  # fmt: skip
    totals = rows.iloc[:1].assign(n_predictions=30, n_labelled=15, coverage=0.5, rmse=1.7)
    view = PerformanceView(Report("regression", rows, totals))
    assert [t.meta["metric"] for t in view.quality.data] == ["rmse"]
    assert list(view.quality.data[0].y) == [1.5, 2.0, None]
    assert view.quality.layout.title.text.startswith("RMSE")
    assert not view.business.data and view.business_box.layout.display == "none"
    assert "rmse" in view.table.value and "accuracy" not in view.table.value
    assert business_columns(rows) == []  # scores and counts are no business metric
    # the report's own list names them; other numeric columns are not drawn as business
    extra = rows.assign(order_value=3.0, margin=2.0)
    assert business_columns(extra) == ["order_value", "margin"]
    assert business_columns(extra, ["margin"]) == ["margin"]


def test_update_redraws_and_empty_reports_say_so() -> None:
    report = _classification()
    empty = Report("classification", report.rows.iloc[:0], report.totals.iloc[:0])
    assert has_outcomes(report) and not has_outcomes(empty)
    view = PerformanceView(empty)
    assert not view.quality.data and "No labelled predictions" in view.table.value
    view.update(report)
    assert len(view.quality.data) == 8
    # a report without estimates draws the realised values only, titled plainly
    plain = Report(
        "classification",
        report.rows.drop(columns=[c for c in report.rows if c.startswith("estimated_")]),
        report.totals,
    )
    view.update(plain)
    assert [t.meta["kind"] for t in view.quality.data] == ["realised", "realised"]
    assert view.quality.layout.title.text == "Accuracy"


def test_static_html_for_nbconvert() -> None:
    view = PerformanceView(_classification(), title="<iris>")
    bundle: dict[str, Any] = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    html = bundle["text/html"]
    assert "mlops-performance-table" in html and "&lt;iris&gt;" in html and "<iris>" not in html
    assert quality_traces(None, "classification") == []
