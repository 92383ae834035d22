"""``%compare`` in a real JupyterLab: the widget draws, clicks and brushing select, header
clicks sort, and the saved notebook keeps a static copy. The screenshot is kept in
``$MLOPS_BROWSER_SHOTS`` when set."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright", reason="browser tests need Python playwright")
from playwright.sync_api import expect

from .conftest import Lab, open_notebook, run_all_cells, write_notebook

RUNS = [  # name, params, final accuracy, loss by step
    ("rf-small", {"n_estimators": 50, "max_depth": 3, "criterion": "gini"}, 0.81, [0.9, 0.6, 0.5]),
    ("rf-medium", {"n_estimators": 100, "max_depth": 5, "criterion": "gini"}, 0.88, [0.8, 0.4]),
    ("rf-large", {"n_estimators": 200, "max_depth": 8, "criterion": "entropy"}, 0.93, [0.7, 0.2]),
    ("svm-rbf", {"kernel": "rbf", "C": 1.0}, 0.86, []),
]


@pytest.fixture(scope="module")
def tracked(lab_root: Path) -> list[str]:
    """Runs in the lab's project, written through the public API before the lab reads them."""
    import jupyter_mlops
    from jupyter_mlops.config import load_config

    config = load_config(lab_root)
    names = []
    for name, params, accuracy, losses in RUNS:
        with jupyter_mlops.track("browser-demo", name=name, config=config) as run:
            run.log_params(params)
            run.log_metrics({"accuracy": accuracy})
            for step, loss in enumerate(losses):
                run.log_metrics({"loss": loss}, step=step)
            run.log_source(f"# {name}\nparams = {params!r}\n")
        names.append(name)
    return names


def test_compare_draws_selects_and_saves_a_static_copy(
    page: Any, lab: Lab, tracked: list[str], shots: Path
) -> None:
    cells = ["%load_ext jupyter_mlops", "%compare -e browser-demo --metric accuracy"]
    write_notebook(lab.root / "compare.ipynb", cells)
    open_notebook(page, lab, "compare.ipynb")
    run_all_cells(page, len(cells))

    widget = page.locator(".mlops-compare")
    widget.wait_for(timeout=120_000)
    # The table: every run, best accuracy first.
    rows = widget.locator(".mlops-runs-table tbody tr")
    rows.nth(len(tracked) - 1).wait_for()
    names = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
    assert names == ["rf-large", "rf-medium", "svm-rbf", "rf-small"]
    # The plots: plotly has drawn its SVG, the parallel coordinates and one point per run.
    plots = widget.locator(".js-plotly-plot")
    page.wait_for_function(
        "document.querySelectorAll('.mlops-compare .js-plotly-plot .main-svg').length >= 3"
    )
    assert plots.count() >= 3
    widget.locator(".parcoords .y-axis").first.wait_for()
    axis_titles = widget.locator(".parcoords .axis-title").all_text_contents()
    assert "accuracy" in axis_titles and "n_estimators" in axis_titles
    # The scatter's x is the param that goes most with accuracy; the SVM run lacks it.
    points = widget.locator(".scatterlayer .trace").first.locator("path.point")
    assert points.count() == 3
    history = widget.locator(".js-plotly-plot").nth(2)
    assert history.locator(".scatterlayer .trace").count() >= 2  # loss by step, two runs+

    # Clicking a row selects the run everywhere: row highlighted, differences listed.
    rows.nth(0).click()
    rows.nth(1).click()
    page.locator(".mlops-runs-table tr.selected").nth(1).wait_for()
    selection = page.locator(".mlops-selection")
    expect(selection).to_contain_text("params that differ")  # waits for the kernel's reply
    expect(selection).to_contain_text("rf-medium")
    assert "n_estimators" in selection.inner_text()
    page.wait_for_function(  # the scatter greys out the runs not selected
        "[...document.querySelectorAll('.mlops-compare .scatterlayer path.point')]"
        ".filter(p => p.style.opacity && Number(p.style.opacity) < 1).length === 1"
    )
    # A header click sorts (by the kernel; numbers largest first) and redraws the page.
    page.locator(".mlops-runs-table th", has_text="loss").click()
    page.wait_for_function(
        "document.querySelector('.mlops-runs-table tbody tr td:nth-child(2)')"
        ".textContent === 'rf-small'"
    )
    # Brushing the top of the accuracy axis selects the runs inside the brush instead.
    widget.get_by_role("button", name="Clear selection").click()
    expect(page.locator(".mlops-runs-table tr.selected")).to_have_count(0)
    # Unselected, the lines are coloured by accuracy again: wait for that redraw, which
    # replaces the axes, before dragging on one.
    widget.locator(".js-plotly-plot .colorbar").first.wait_for()
    time.sleep(1.0)
    accuracy_axis = widget.locator(".parcoords .axis-brush").last
    accuracy_axis.scroll_into_view_if_needed()
    box = accuracy_axis.bounding_box()
    assert box is not None
    # From a third of the way down to past the top: the brush clamps at the axis maximum.
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] * 0.33)
    page.mouse.down()
    page.mouse.move(x, box["y"] - 20, steps=8)
    page.mouse.up()
    expect(page.locator(".mlops-runs-table tr.selected")).to_have_count(1)
    expect(page.locator(".mlops-runs-table tr.selected")).to_contain_text("rf-large")

    # Tall enough for the whole widget: the notebook scrolls inside the page.
    page.set_viewport_size({"width": 1500, "height": 2300})
    time.sleep(1.5)  # let plotly finish its transitions before the picture
    shot = shots / "compare-lab.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000

    # Saved, the notebook carries the static copy for viewers without a kernel.
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while True:
        saved = json.loads((lab.root / "compare.ipynb").read_text())
        outputs = saved["cells"][1].get("outputs", [])
        data = outputs[0]["data"] if outputs else {}
        if "text/html" in data or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "application/vnd.jupyter.widget-view+json" in data
    static = "".join(data["text/html"])
    assert all(name in static for name in tracked) and "<svg" in static
