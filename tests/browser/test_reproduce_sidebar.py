"""The sidebar says whether a run reproduces, in a real JupyterLab: the verdict as a badge in
the runs list, "reproduced by <run> at <time>" in the run's details, the original named in a
reproduction's details, and the ``%reproduce <id>`` to type for a run never checked.

The verdicts are the tags ``%reproduce`` records (``tests/test_reproduce_faces.py`` checks
that a real reproduction writes them); here they are set on runs made through the API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright", reason="browser tests need Python playwright")
from playwright.sync_api import expect

from .conftest import Lab

SIDEBAR_TAB = '.jp-SideBar .lm-TabBar-tab[data-id="jupyter-mlops-sidebar"]'
PANEL = "#jupyter-mlops-sidebar"
AT = "2025-06-01T12:00:00Z"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checked(lab_root: Path) -> dict[str, str]:
    """A run reproduced (DIFFERENT), its reproduction, and a run never checked."""
    from mlflow import MlflowClient

    import jupyter_mlops
    from jupyter_mlops.config import load_config
    from jupyter_mlops.reproduction.result import (
        DIFFERENT,
        TAG_AT,
        TAG_BY,
        TAG_REPRODUCES,
        TAG_VERDICT,
    )

    config = load_config(lab_root)
    ids = {}
    for name in ("repro-original", "repro-again", "repro-never"):
        with jupyter_mlops.track("repro-sidebar", name=name, config=config) as run:
            run.log_metrics({"accuracy": 0.9})
        ids[name] = run.run_id
    client = MlflowClient(config.tracking_uri)
    original, again = ids["repro-original"], ids["repro-again"]
    client.set_tag(again, TAG_REPRODUCES, original)
    for key, value in ((TAG_VERDICT, DIFFERENT), (TAG_BY, again), (TAG_AT, AT)):
        client.set_tag(original, key, value)
    return ids


def _row(page: Any, name: str) -> Any:
    return page.locator(f"{PANEL} .jp-mlops-run").filter(
        has=page.locator(".jp-mlops-run-name", has_text=name)
    )


def _details(row: Any) -> Any:
    row.locator(".jp-mlops-run-open").press("Enter")
    shown = row.locator(".jp-mlops-details, .jp-mlops-error").first
    shown.wait_for(timeout=30_000)
    assert "jp-mlops-error" not in (shown.get_attribute("class") or ""), shown.inner_text()
    return shown


def test_the_verdict_in_the_runs_list_and_the_details(
    page: Any, lab: Lab, checked: dict[str, str]
) -> None:
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    page.locator(SIDEBAR_TAB).wait_for(timeout=90_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=90_000)
    tab = page.locator(SIDEBAR_TAB)
    if tab.get_attribute("aria-selected") != "true":
        tab.click()
    original = _row(page, "repro-original")
    original.wait_for(timeout=30_000)

    badge = original.locator(".jp-mlops-run-line .jp-mlops-verdict")
    expect(badge).to_have_text("different")
    expect(badge).to_have_class("jp-mlops-status jp-mlops-status-pending jp-mlops-verdict")
    expect(_row(page, "repro-never").locator(".jp-mlops-verdict")).to_have_count(0)

    details = _details(original)
    line = details.locator(".jp-mlops-reproduction")
    expect(line).to_contain_text(f"different by {checked['repro-again'][:8]} at ")
    expect(line.locator("code")).to_have_attribute("title", checked["repro-again"])

    again = _details(_row(page, "repro-again")).locator(".jp-mlops-reproduction")
    expect(again).to_have_text(f"reproduction of {checked['repro-original'][:8]}")

    never = _details(_row(page, "repro-never")).locator(".jp-mlops-reproduction")
    expect(never).to_have_text(f"never checked: %reproduce {checked['repro-never'][:8]}")
    # for a person to look at (as test_sidebar.py keeps its screenshots)
    folder = Path(os.environ.get("MLOPS_TEST_ARTIFACTS") or REPO / "build" / "test-artifacts")
    (folder / "sidebar").mkdir(parents=True, exist_ok=True)
    page.locator(PANEL).screenshot(path=str(folder / "sidebar" / "reproduction-details.png"))
