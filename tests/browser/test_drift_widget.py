"""The drift widget in a real JupyterLab: plotly draws a panel per feature with reference
and current bars, the summary table shows each status, and the saved notebook keeps the
static HTML copy (with its SVG histograms) for viewers without a kernel."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright", reason="browser tests need Python playwright")

from .conftest import Lab, open_notebook, run_all_cells, write_notebook

CELLS = [
    "import numpy as np, pandas as pd\n"
    "from jupyter_mlops.monitoring import drift\n"
    "from jupyter_mlops.widgets.drift import DriftWidget\n"
    "rng = np.random.default_rng(0)\n"
    "ref = pd.DataFrame({'shifted': rng.normal(0, 1, 3000), 'stable': rng.normal(0, 1, 3000),\n"
    "                    'colour': rng.choice(['red', 'blue'], 3000)})\n"
    "cur = pd.DataFrame({'shifted': rng.normal(1, 1, 3000), 'stable': rng.normal(0, 1, 3000),\n"
    "                    'colour': rng.choice(['red', 'blue', 'green'], 3000)})",
    "DriftWidget(drift(ref, cur))",
]


def test_drift_widget_draws_and_saves_a_static_copy(page: Any, lab: Lab, shots: Path) -> None:
    write_notebook(lab.root / "drift.ipynb", CELLS)
    open_notebook(page, lab, "drift.ipynb")
    run_all_cells(page, len(CELLS))

    widget = page.locator(".mlops-drift")
    widget.wait_for(timeout=120_000)
    page.wait_for_function(
        "document.querySelectorAll('.mlops-drift .js-plotly-plot .main-svg').length >= 1"
    )
    # Three panels, two overlaid bar traces each (reference, current).
    page.wait_for_function(
        "document.querySelectorAll('.mlops-drift .barlayer .trace').length === 6"
    )
    titles = widget.locator(".annotation-text").all_text_contents()
    names = [t.split(":")[0] for t in titles]  # drifted first, by PSI; then the rest
    assert set(names[:2]) == {"shifted", "colour"} and names[2] == "stable"
    assert all(": drift" in t for t in titles[:2]) and ": ok" in titles[2]
    legend = widget.locator(".legendtext").all_text_contents()
    assert legend == ["reference", "current"]
    table = widget.locator(".mlops-drift-report table")
    assert "not computed" not in table.inner_text()
    assert widget.locator(".mlops-drift-report").first.inner_text().count("drift") >= 2

    page.set_viewport_size({"width": 1500, "height": 1600})
    time.sleep(1.0)  # plotly's transitions
    shot = shots / "drift-lab.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000

    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while True:
        saved = json.loads((lab.root / "drift.ipynb").read_text())
        outputs = saved["cells"][1].get("outputs", [])
        data = outputs[0]["data"] if outputs else {}
        if "text/html" in data or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "application/vnd.jupyter.widget-view+json" in data
    static = "".join(data["text/html"])
    assert "<svg" in static and "shifted" in static and "DRIFT" in static
