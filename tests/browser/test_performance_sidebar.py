"""The sidebar's deployment view shows model performance per version: a real deployment on
127.0.0.1 (primary and canary), predictions, outcomes recorded late; the Deployments section
then shows each version's realised accuracy and label coverage, equal to scikit-learn's on
the joined rows, and the JSON endpoint behind it answers the same, only with a token. A
screenshot is saved under ``build/test-artifacts/performance-sidebar/``."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright", reason="browser tests need Python playwright")
from playwright.sync_api import expect

from .conftest import Lab

REPO = Path(__file__).resolve().parents[2]
SIDEBAR_TAB = '.jp-SideBar .lm-TabBar-tab[data-id="jupyter-mlops-sidebar"]'
PANEL = "#jupyter-mlops-sidebar"
NAME = "perf-prod"


@pytest.fixture(scope="module")
def served(lab_root: Path) -> Iterator[dict[str, Any]]:
    """``perf-iris`` v1 (primary) and v2 (canary, 50%) served, 60 rows predicted, 40 of
    them labelled (a quarter of the labels flipped, so each version errs)."""
    import httpx
    from sklearn.datasets import load_iris
    from sklearn.metrics import accuracy_score

    from jupyter_mlops import predlog
    from jupyter_mlops.config import load_config
    from jupyter_mlops.serving import canary
    from tests.helpers import register_iris, running

    config = load_config(lab_root)
    register_iris(config, 10, 0, "champion", name="perf-iris")
    register_iris(config, 2, 1, "challenger", name="perf-iris")
    X, y = load_iris(return_X_y=True, as_frame=True)
    with running("perf-iris@champion", config, name=NAME) as dep:
        canary(NAME, "perf-iris@challenger", 50, config=config)
        answered = []
        with httpx.Client(base_url=dep.url, timeout=30) as http:
            for i in range(0, 150, 5):
                rows = X.iloc[i : i + 2]
                body = http.post(
                    "/predict", json=rows.to_dict("records"), headers={"x-request-key": f"k{i}"}
                ).json()
                answered.append((body, list(y.iloc[i : i + 2])))
        labels: dict[str, tuple[list[Any], list[Any]]] = {}
        outcomes = []
        for k, (body, truth) in enumerate(answered[:20]):
            for row in (0, 1):
                real = truth[row] if k % 4 else (truth[row] + 1) % 3
                predicted = body["predictions"][row]
                outcome = int(real)  # the iris forests answer class indices
                outcomes.append({"request_id": body["request_id"], "row": row, "outcome": outcome})
                side = labels.setdefault(body["model"]["version"], ([], []))
                side[0].append(str(outcome))
                side[1].append(str(predicted))
        predlog.record_outcomes(NAME, outcomes, config=config)
        predicted_rows: dict[str, int] = {}
        for body, _ in answered:
            predicted_rows[body["model"]["version"]] = (
                predicted_rows.get(body["model"]["version"], 0) + 2
            )
        yield {
            "accuracy": {v: accuracy_score(t, p) for v, (t, p) in labels.items()},
            "coverage": {v: len(t) / predicted_rows[v] for v, (t, _) in labels.items()},
        }


def _api(lab: Lab, path: str, token: str | None) -> tuple[int, Any]:
    query = f"?token={token}" if token else ""
    try:
        with urllib.request.urlopen(f"{lab.url}/jupyter-mlops/api/{path}{query}", timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_the_deployment_view_shows_performance_per_version(
    page: Any, lab: Lab, served: dict[str, Any]
) -> None:
    status, body = _api(lab, f"deployments/{NAME}/performance", lab.token)
    assert status == 200 and body["metric"] == "accuracy" and body["task"] == "classification"
    by_version = {v["model_version"]: v for v in body["versions"]}
    assert set(by_version) == set(served["accuracy"]) == {"1", "2"}
    for version, accuracy in served["accuracy"].items():
        assert by_version[version]["accuracy"] == pytest.approx(accuracy)
        assert by_version[version]["coverage"] == pytest.approx(served["coverage"][version])
    assert _api(lab, f"deployments/{NAME}/performance", None)[0] == 403
    assert _api(lab, "deployments/no-such-deployment/performance", lab.token)[0] == 404

    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    page.locator(SIDEBAR_TAB).wait_for(timeout=90_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=90_000)
    tab = page.locator(SIDEBAR_TAB)
    if tab.get_attribute("aria-selected") != "true":
        tab.click()
    item = page.locator(f'{PANEL} li.jp-mlops-deployment[data-deployment="{NAME}"]')
    table = item.locator("table.jp-mlops-performance")
    table.wait_for(timeout=60_000)
    expect(table.locator("thead th")).to_have_text(["version", "accuracy", "labels"])
    for version, role in (("1", "primary"), ("2", "canary")):
        row = table.locator(f'tr[data-version="{version}"][data-role="{role}"]')
        expect(row.locator("td").first).to_have_text(f"v{version} {role}")
        # three significant digits, as the sidebar's formatNumber / formatPercent write them
        score = row.locator(".jp-mlops-performance-score").inner_text()
        assert float(score) == pytest.approx(served["accuracy"][version], abs=0.0051)
        coverage = row.locator(".jp-mlops-performance-coverage").inner_text()
        assert coverage.endswith("%")
        assert float(coverage[:-1]) == pytest.approx(served["coverage"][version] * 100, abs=0.051)
    folder = Path(os.environ.get("MLOPS_TEST_ARTIFACTS") or REPO / "build" / "test-artifacts")
    folder = folder / "performance-sidebar"
    folder.mkdir(parents=True, exist_ok=True)
    item.screenshot(path=str(folder / "deployment-performance.png"))
