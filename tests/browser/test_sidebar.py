"""The MLOps sidebar in a real JupyterLab: runs appear after a %%track cell runs through the
UI without a reload, run details open (notebook link included), markup in run names stays
text, and an alias is promoted from the Models section. Screenshots are saved under
``build/test-artifacts/sidebar/`` (or ``$MLOPS_TEST_ARTIFACTS/sidebar``) for a person to look
at; the time from opening the panel to the first runs page is written there too."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright", reason="browser tests need Python playwright")
from playwright.sync_api import expect

from .conftest import Lab, write_notebook

XSS_NAME = "<img src=x onerror=alert(1)>"
REPO = Path(__file__).resolve().parents[2]
SIDEBAR_TAB = '.jp-SideBar .lm-TabBar-tab[data-id="jupyter-mlops-sidebar"]'
PANEL = "#jupyter-mlops-sidebar"


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("MLOPS_TEST_ARTIFACTS") or REPO / "build" / "test-artifacts")
    folder = folder / "sidebar"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def registered(lab_root: Path) -> dict[str, str]:
    """Two runs with models registered as iris-clf v1 (@champion) and v2 (@challenger), and a
    run whose name, param and tag are markup; written through the public API."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import jupyter_mlops
    from jupyter_mlops.config import load_config

    config = load_config(lab_root)
    (lab_root / "nb").mkdir(exist_ok=True)
    write_notebook(lab_root / "nb" / "train.ipynb", ["# trained here"])
    X, y = load_iris(return_X_y=True, as_frame=True)
    ids = {}
    for name, acc, c in (("sidebar-baseline", 0.82, 0.01), ("sidebar-better", 0.96, 1.0)):
        with jupyter_mlops.track(
            "sidebar-iris", name=name, notebook="nb/train.ipynb", config=config
        ) as run:
            run.log_params({"C": c})
            run.log_metrics({"accuracy": acc})
            run.log_model(LogisticRegression(C=c, max_iter=300).fit(X, y), "model", X=X)
            run.log_source(f"model = LogisticRegression(C={c}).fit(X, y)\naccuracy = {acc}\n")
        ids[name] = run.run_id
    jupyter_mlops.register(
        ids["sidebar-baseline"], name="iris-clf", aliases=["champion"], config=config
    )
    jupyter_mlops.register(
        ids["sidebar-better"], name="iris-clf", aliases=["challenger"], config=config
    )
    with jupyter_mlops.track(
        "sidebar-iris", name=XSS_NAME, config=config, tags={"note": "<script>alert(2)</script>"}
    ) as run:
        run.log_params({"html": "<b>bold</b>"})
        run.log_metrics({"accuracy": 0.5})
    ids["xss"] = run.run_id
    return ids


def _dialogs(page: Any) -> list[str]:
    """Every alert/confirm the page raises (none may fire), dismissed."""
    fired: list[str] = []

    def on_dialog(dialog: Any) -> None:
        fired.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return fired


def _open_lab(page: Any, lab: Lab, path: str = "lab") -> None:
    """Open JupyterLab on a reset workspace: the suite shares one server, whose saved
    workspace would otherwise bring back the notebooks other tests left open."""
    page.goto(f"{lab.url}/{path}?reset&token={lab.token}")
    page.locator(SIDEBAR_TAB).wait_for(timeout=90_000)


def _open_notebook(page: Any, lab: Lab, relative: str) -> Any:
    """Open a notebook alone and wait for its kernel's ``| Idle`` (see conftest)."""
    _open_lab(page, lab, f"lab/tree/{relative}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    notebook.locator(".jp-Cell").first.wait_for(timeout=90_000)
    page.get_by_text("| Idle").first.wait_for(timeout=90_000)
    return notebook


def _open_panel(page: Any) -> float:
    """Show the sidebar (if hidden) and return seconds until the first run row is drawn."""
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=90_000)
    panel, tab = page.locator(PANEL), page.locator(SIDEBAR_TAB)
    start = time.perf_counter()
    if tab.get_attribute("aria-selected") != "true":  # a click on the current tab hides it
        tab.click()
    panel.locator(".jp-mlops-run").first.wait_for(timeout=30_000)
    return time.perf_counter() - start


def _run(page: Any, name: str) -> Any:
    return page.locator(f"{PANEL} .jp-mlops-run").filter(
        has=page.locator(".jp-mlops-run-name", has_text=name)
    )


def _expand(row: Any) -> Any:
    """Open a run's details (Enter on its button: keyboard access) and return them."""
    row.locator(".jp-mlops-run-open").press("Enter")
    shown = row.locator(".jp-mlops-details, .jp-mlops-error").first
    shown.wait_for(timeout=30_000)
    if "jp-mlops-error" in (shown.get_attribute("class") or ""):
        pytest.fail(f"the run's details failed: {shown.inner_text()}")
    return shown


def test_runs_details_and_markup_shown_as_text(
    page: Any, lab: Lab, registered: dict[str, str], artifacts: Path
) -> None:
    fired = _dialogs(page)
    _open_lab(page, lab)
    seconds = _open_panel(page)
    (artifacts / "timing.json").write_text(
        json.dumps({"panel_open_to_first_runs_page_s": seconds}, indent=2)
    )
    panel = page.locator(PANEL)
    expect(panel.locator(".jp-mlops-title")).to_have_text("MLOps")

    # The run named like an <img> tag is listed by that text; no element was made of it.
    xss_row = _run(page, XSS_NAME)
    expect(xss_row.locator(".jp-mlops-run-name")).to_have_text(XSS_NAME)
    assert panel.locator("img[src='x']").count() == 0
    details = _expand(xss_row)
    expect(details).to_contain_text("<b>bold</b>")
    expect(details).to_contain_text("<script>alert(2)</script>")
    assert details.locator("b", has_text="bold").count() == 0
    assert panel.locator("script").count() == 0
    page.screenshot(path=str(artifacts / "01-runs-markup-as-text.png"))
    xss_row.locator(".jp-mlops-run-open").click()  # close it again

    # Details of a tracked run: params, metrics, model, data, cell source, notebook link.
    details = _expand(_run(page, "sidebar-better"))
    expect(details).to_contain_text("LogisticRegression(C=1.0)")
    expect(details).to_contain_text("accuracy")
    expect(details).to_contain_text("registered as iris-clf v2")
    panel.screenshot(path=str(artifacts / "02-run-details.png"))
    details.locator(".jp-mlops-open-notebook").click()
    expect(
        page.locator(
            ".jp-MainAreaWidget .lm-TabBar-tab.jp-mod-current, "
            ".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current"
        ).filter(has_text="train.ipynb")
    ).to_have_count(1, timeout=30_000)
    assert fired == []


def test_track_cell_run_in_the_ui_appears_without_reload(
    page: Any, lab: Lab, registered: dict[str, str], artifacts: Path
) -> None:
    cells = ["%load_ext jupyter_mlops", "%%track -e sidebar-live -n live-from-ui\nacc = 0.91"]
    write_notebook(lab.root / "live.ipynb", cells)
    notebook = _open_notebook(page, lab, "live.ipynb")
    # Through the command palette: "MLOps: Open sidebar".
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("MLOps: Open sidebar")
    page.keyboard.press("Enter")
    _open_panel(page)
    assert _run(page, "live-from-ui").count() == 0
    notebook.locator(".jp-InputArea-editor").first.click()
    for _ in cells:
        page.keyboard.press("Shift+Enter")
    row = _run(page, "live-from-ui")
    row.wait_for(timeout=90_000)  # the panel refreshed itself after the %%track cell
    expect(row).to_contain_text("acc=0.91")
    expect(row.locator(".jp-mlops-status")).to_have_text("finished")
    page.screenshot(path=str(artifacts / "03-track-cell-appears.png"))


def test_promote_alias_from_the_models_section(
    page: Any, lab: Lab, registered: dict[str, str], artifacts: Path
) -> None:
    from jupyter_mlops.client import client as project_client
    from jupyter_mlops.config import load_config

    fired = _dialogs(page)
    _open_lab(page, lab)
    _open_panel(page)
    models = page.locator(f"{PANEL} .jp-mlops-section-models")
    model = models.locator(".jp-mlops-model[data-model='iris-clf']")
    model.wait_for(timeout=30_000)
    expect(model.locator(".jp-mlops-alias[data-alias='champion']")).to_contain_text("v1")

    # A gate the version fails: refused, nothing moves.
    model.get_by_role("button", name="Promote iris-clf v2").click()
    dialog = page.locator(".jp-Dialog")
    dialog.get_by_label("Alias").fill("champion")
    dialog.get_by_label("Gate (optional)").fill("accuracy >= 0.99")
    dialog.get_by_role("button", name="Promote").click()
    expect(page.locator(".Toastify__toast").filter(has_text="Not promoted")).to_be_visible()

    model.get_by_role("button", name="Promote iris-clf v2").click()
    dialog.get_by_label("Alias").fill("champion")
    dialog.get_by_label("Gate (optional)").fill("accuracy >= 0.9")
    dialog.get_by_role("button", name="Promote").click()
    expect(model.locator(".jp-mlops-alias[data-alias='champion']")).to_contain_text("v2")
    client = project_client(load_config(lab.root))
    assert str(client.get_model_version_by_alias("iris-clf", "champion").version) == "2"
    model.locator(".jp-mlops-history summary").click()
    models.screenshot(path=str(artifacts / "04-models-promoted.png"))

    # The same panel in JupyterLab's dark theme, then back to light for the other tests.
    for theme in ("JupyterLab Dark", "JupyterLab Light"):
        page.keyboard.press("Control+Shift+C")
        page.locator(".lm-CommandPalette-input").fill(f"Use Theme: {theme}")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "t => document.body.dataset.jpThemeName === t", arg=theme, timeout=20_000
        )
        page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=30_000)
        if theme == "JupyterLab Dark":
            page.wait_for_timeout(500)  # the theme's fade-in
            page.screenshot(path=str(artifacts / "05-dark-theme.png"))
    assert fired == []
