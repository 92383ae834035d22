"""The drift widget: one panel per feature with reference/current traces, in report order,
titled in status colours; a static HTML copy in the display bundle."""

from __future__ import annotations

import numpy as np
import pandas as pd

from jupyter_mlops.monitoring import drift
from jupyter_mlops.monitoring.report import CUR_COLOUR, REF_COLOUR, STATUS_COLOURS


def _report():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    n = 3000
    ref = pd.DataFrame(
        {
            "shifted": rng.normal(0, 1, n),
            "stable": rng.normal(0, 1, n),
            "cat": rng.choice(["a", "b"], n),
            "gone": 1.0,
            "prediction": rng.integers(0, 2, n),
        }
    )
    cur = pd.DataFrame(
        {
            "shifted": rng.normal(1, 1, n),
            "stable": rng.normal(0, 1, n),
            "cat": rng.choice(["a", "b", "c"], n),
            "prediction": rng.integers(0, 2, n),
        }
    )
    return drift(ref, cur, prediction="prediction")


def test_drift_widget_traces_follow_the_report() -> None:
    from jupyter_mlops.widgets.drift import DriftWidget

    report = _report()
    widget = DriftWidget(report)
    data = widget.figure.data
    plotted = [f for f in report.features if f.plot] + [report.prediction]
    assert len(data) == 2 * len(plotted)  # reference + current per panel
    assert [t.meta["feature"] for t in data[::2]] == [f.name for f in plotted]
    assert [t.name for t in data[:2]] == ["reference", "current"]
    assert [t.marker.color for t in data[:2]] == [REF_COLOUR, CUR_COLOUR]
    assert widget.figure.layout.barmode == "overlay"
    # most drifted first; each panel title in its status colour
    assert data[0].meta["status"] == "drift"
    titles = widget.figure.layout.annotations
    for title, item in zip(titles, plotted, strict=True):
        assert title.text.startswith(item.name)
        assert title.font.color == STATUS_COLOURS[item.status]
    # categorical panels have category labels on x
    cat = next(t for t in data if t.meta["feature"] == "cat")
    assert list(cat.x) == ["a", "b", "c"]
    assert "gone" not in {t.meta["feature"] for t in data}  # not computed: table only
    assert "not computed" in widget.table.value and "gone" in widget.table.value


def test_drift_widget_leaves_static_html_for_nbconvert() -> None:
    from jupyter_mlops.widgets.drift import DriftWidget

    report = _report()
    bundle = DriftWidget(report)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "<svg" in bundle["text/html"] and report.verdict in bundle["text/html"]
    assert bundle["text/plain"].startswith("Drift report:")
    assert repr(DriftWidget(report)) == repr(report)


def test_many_features_are_capped_in_the_figure() -> None:
    from jupyter_mlops.widgets.drift import DriftWidget

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"f{i:02d}": rng.normal(size=500) for i in range(30)})
    report = drift(frame, frame.sample(frac=1.0, random_state=0))
    widget = DriftWidget(report, max_panels=6)
    assert len(widget.figure.data) == 12
    assert "24 more features in the table" in widget.children[2].value
