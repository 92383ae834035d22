"""Monitoring against real parts: a git project, a model tracked with ``%%track --data``
and registered, a real deployment (primary + canary) on a free loopback port, real HTTP
predictions, the zero-configuration reference restored from DVC through lineage, alert
rules POSTing to a real local HTTP receiver, and the monitor widget over it all.

The deployment is shared by the module and stopped by its pid in teardown.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jupyter_mlops import monitoring
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError, NotFoundError
from tests.helpers import kill_process_group

from .conftest import IRIS_CELL, git

pytestmark = pytest.mark.slow

FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
N_GOOD_REQUESTS = 40  # of 10 rows each
N_BAD_REQUESTS = 2


class Served:
    """The module's deployment and what was sent to it."""

    def __init__(self, config: Config, deployment: Any, original: bytes) -> None:
        self.config = config
        self.deployment = deployment
        self.original = original
        self.sent = 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _shell: Any) -> Iterator[Served]:
    import jupyter_mlops
    from jupyter_mlops.serving import canary, deploy, stop

    root = tmp_path_factory.mktemp("monitoring") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("DVC_SITE_CACHE_DIR", str(root.parent / "dvc-site-cache"))
        git(root, "init", "-q")
        (root / ".gitignore").write_text(".mlops/\n")
        git(root, "add", ".gitignore")
        git(root, "commit", "-q", "-m", "init")
        from sklearn.datasets import load_iris

        (root / "data").mkdir()
        iris = root / "data" / "iris.csv"
        load_iris(as_frame=True).frame.to_csv(iris, index=False)
        original = iris.read_bytes()
        notebook = root / "train.ipynb"
        notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
        mp.setenv("JPY_SESSION_NAME", str(notebook))

        _shell.reset(new_session=False)
        _shell.run_cell(
            "import pandas as pd\n"
            "from sklearn.ensemble import RandomForestClassifier\n"
            "from sklearn.metrics import accuracy_score\n"
            "from sklearn.model_selection import train_test_split\n"
        )
        _shell.run_cell_magic("track", "-e iris --quiet --data data/iris.csv", IRIS_CELL)
        jupyter_mlops.register(name="iris-rf", aliases=["champion"])
        smaller = IRIS_CELL.replace("n_estimators = 100", "n_estimators = 5")
        _shell.run_cell_magic("track", "-e iris --quiet --data data/iris.csv", smaller)
        jupyter_mlops.register(name="iris-rf", aliases=["challenger"])
        # The drift reference must come from the DVC snapshot, not the working copy.
        iris.write_text("overwritten after training\n")

        config = load_config(root)
        dep = deploy("iris-rf@champion", name="iris-prod", config=config)
        try:
            canary("iris-prod", "iris-rf@challenger", 50.0, config=config)
            out = Served(config, dep, original)
            _send_traffic(out)
            yield out
        finally:
            with contextlib.suppress(Exception):
                stop("iris-prod", config=config)
            kill_process_group(dep.pid)
            import mlflow

            while mlflow.active_run() is not None:
                mlflow.end_run()


def _send_traffic(served: Served) -> None:
    """Iris rows with petal length and width shifted; sepals as in training; 2 bad requests."""
    import httpx
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame[FEATURES]
    rng = np.random.default_rng(0)
    rows = frame.iloc[rng.integers(0, len(frame), N_GOOD_REQUESTS * 10)].copy()
    rows["petal length (cm)"] += 1.5
    rows["petal width (cm)"] += 0.8
    records = json.loads(rows.to_json(orient="records"))
    url = f"{served.deployment.url}/predict"
    with httpx.Client(timeout=30) as client:
        for i in range(N_GOOD_REQUESTS):
            body = records[i * 10 : (i + 1) * 10]
            response = client.post(url, json=body, headers={"X-Request-Key": f"k{i}"})
            assert response.status_code == 200, response.text
        for _ in range(N_BAD_REQUESTS):
            bad = client.post(url, json=[{"sepal length (cm)": 1.0}])
            assert bad.status_code == 422
    served.sent = N_GOOD_REQUESTS


class Receiver:
    """A real webhook receiver on 127.0.0.1 (a thread serving http.server)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(
                    {"path": self.path, "type": self.headers["Content-Type"], **json.loads(body)}
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    try:
        yield rec
    finally:
        rec.close()


@pytest.fixture
def clean_rules(served: Served) -> Iterator[None]:
    monitoring.remove_rules("iris-prod", config=served.config)
    folder = served.config.mlops_dir / "monitoring" / "iris-prod"
    (folder / "alert-state.json").unlink(missing_ok=True)  # cooldowns of earlier tests
    yield
    monitoring.remove_rules("iris-prod", config=served.config)
    monitoring.set_rules("iris-prod", webhook="", config=served.config)


# -- drift through lineage -----------------------------------------------------------------


def test_zero_config_reference_is_the_training_data_from_dvc(served: Served) -> None:
    from jupyter_mlops.registry import lineage

    report = monitoring.drift_for_deployment("iris-prod", last="1h", config=served.config)
    (snapshot,) = lineage("iris-rf/1", config=served.config).data
    restored = served.config.mlops_dir / "monitoring" / "reference" / snapshot.md5 / "iris.csv"
    assert restored.read_bytes() == served.original  # byte for byte, from the DVC cache
    assert report.reference["md5"] == snapshot.md5
    assert report.reference["path"] == "data/iris.csv"
    assert sorted(f.name for f in report.features) == sorted(FEATURES)
    assert any("left out: target" in n for n in report.notes)  # not a model input
    status = {f.name: f.status for f in report.features}
    assert status["petal length (cm)"] == status["petal width (cm)"] == "drift"
    assert status["sepal length (cm)"] != "drift" and status["sepal width (cm)"] != "drift"
    assert report.dataset_drift is True and report.drift_share == 0.5
    assert report.current["deployment"] == "iris-prod"
    assert report.current["model_version"] == "1"
    # predictions of v1 in the window against v1's predictions on the training rows
    assert report.prediction is not None and report.prediction.kind == "categorical"
    assert report.prediction.n_ref == 150
    assert 0 < report.prediction.n_cur < served.sent * 10
    # the same profile is served from the cache the second time
    cache = served.config.mlops_dir / "monitoring" / "cache"
    assert (cache / f"{snapshot.md5}-b10" / "profile.json").is_file()
    again = monitoring.drift_for_deployment("iris-prod", last="1h", config=served.config)
    assert [f.psi for f in again.features] == [f.psi for f in report.features]


def test_reference_can_be_a_file_and_canary_has_its_own(served: Served, tmp_path: Path) -> None:
    copy = tmp_path / "iris.csv"
    copy.write_bytes(served.original)
    lineage_report = monitoring.drift_for_deployment("iris-prod", config=served.config)
    file_report = monitoring.drift_for_deployment(
        "iris-prod", reference=copy, prediction=False, config=served.config
    )
    assert [(f.name, f.psi) for f in file_report.features] == [
        (f.name, f.psi) for f in lineage_report.features
    ]
    canary = monitoring.drift_for_deployment("iris-prod", model="canary", config=served.config)
    assert canary.current["model_version"] == "2"
    assert canary.prediction is not None and canary.prediction.n_cur > 0


def test_drift_errors_are_clear(served: Served) -> None:
    with pytest.raises(NotFoundError, match="No deployment named 'nope'"):
        monitoring.drift_for_deployment("nope", config=served.config)
    time.sleep(1.1)
    with pytest.raises(MlopsError, match=r"logged no predictions in the last 1s \(the latest"):
        monitoring.drift_for_deployment("iris-prod", last="1s", config=served.config)
    with pytest.raises(MlopsError, match="No reference file"):
        monitoring.drift_for_deployment("iris-prod", reference="missing.csv", config=served.config)
    with pytest.raises(MlopsError, match="serves no model version '7'"):
        monitoring.drift_for_deployment("iris-prod", model="7", config=served.config)


# -- figures -------------------------------------------------------------------------------


def test_figures_of_the_deployment(served: Served) -> None:
    figs = monitoring.figures("iris-prod", last="1h", config=served.config)
    assert figs["requests"] == served.sent
    assert figs["requests_primary"] + figs["requests_canary"] == served.sent
    assert figs["requests_v1"] == figs["requests_primary"] > 0
    assert figs["rps"] > 0
    assert 0 < figs["p50_ms"] <= figs["p95_ms"] <= figs["p99_ms"]
    assert "p99_ms_canary" in figs and "p99_ms_v2" in figs
    # failures are only in /metrics; the server started inside the window: exact counts
    assert figs["errors"] == N_BAD_REQUESTS
    assert figs["error_rate"] == pytest.approx(N_BAD_REQUESTS / (served.sent + N_BAD_REQUESTS))
    assert figs["drift_share"] == 0.5 and figs["n_drifted"] == 2
    assert isinstance(figs, dict) and all(isinstance(v, float) for v in figs.values())
    # a retraining trigger as the pipelines evaluate it
    from jupyter_mlops.conditions import Condition

    assert Condition("drift_share > 0.3").evaluate(figs).passed
    assert "drift_share" in str(figs) and "<table>" in figs._repr_html_()


def test_figures_explain_what_is_absent(served: Served) -> None:
    time.sleep(1.1)
    figs = monitoring.figures("iris-prod", last="1s", config=served.config)
    assert figs["requests"] == 0 and figs["rps"] == 0
    assert "p99_ms" not in figs and "no requests" in figs.notes["p99_ms"]
    assert "drift_share" not in figs and "no predictions" in figs.notes["drift_share"]


def test_timeseries_per_version(served: Served) -> None:
    series = monitoring.timeseries("iris-prod", last="1h", config=served.config)
    assert set(series["role"].dropna()) == {"primary", "canary"}
    assert set(series["model_version"].dropna()) == {"1", "2"}
    assert series["requests"].sum() == served.sent
    assert {"rps", "p50_ms", "p95_ms", "p99_ms", "error_rate"} <= set(series.columns)


# -- alerts --------------------------------------------------------------------------------


def test_rules_fire_quiet_and_post_to_the_webhook(
    served: Served, receiver: Receiver, clean_rules: None
) -> None:
    stored = monitoring.set_rules(
        "iris-prod",
        ["drift_share > 0.3", "p99_ms > 100000", "error_rate > 0.5"],
        webhook=receiver.url,
        config=served.config,
    )
    assert [r.expression for r in stored.rules] == [
        "drift_share > 0.3", "p99_ms > 100000", "error_rate > 0.5",
    ]  # fmt: skip
    result = monitoring.check("iris-prod", config=served.config)  # the stored rules
    status = {r.rule.expression: r.status for r in result}
    assert status == {
        "drift_share > 0.3": "firing",
        "p99_ms > 100000": "quiet",
        "error_rate > 0.5": "quiet",
    }
    (post,) = receiver.posts
    assert post["path"] == "/hook" and post["type"] == "application/json"
    assert post["deployment"] == "iris-prod"
    assert [a["rule"] for a in post["alerts"]] == ["drift_share > 0.3"]
    assert post["alerts"][0]["value"] == 0.5
    assert post["figures"]["requests"] == served.sent
    assert result.webhook == {"url": receiver.url, "status": 204}
    (recorded,) = monitoring.alert_history("iris-prod", config=served.config)
    assert recorded["rule"] == "drift_share > 0.3" and recorded["value"] == 0.5
    assert recorded["time"] and recorded["notified"] is True
    assert "1 firing, 2 quiet" in str(result)
    explained = {r.rule.expression: r.explanation for r in result}
    assert explained["drift_share > 0.3"] == "drift_share = 0.5 > 0.3: true"
    assert explained["p99_ms > 100000"].endswith("> 100000: false")
    from IPython.lib.pretty import pretty

    assert pretty(result) == str(result)  # a summary in notebooks, not a list of objects


def test_nothing_firing_posts_nothing(
    served: Served, receiver: Receiver, clean_rules: None
) -> None:
    figs = {"drift_share": 0.1, "p99_ms": 3.0, "error_rate": 0.0}
    result = monitoring.check(
        "iris-prod", ["drift_share > 0.3", "p99_ms > 50"], figures=figs,
        webhook=receiver.url, config=served.config,
    )  # fmt: skip
    assert [r.status for r in result] == ["quiet", "quiet"]
    assert receiver.posts == [] and result.webhook is None


def test_absent_figure_is_unknown_not_quiet(served: Served, clean_rules: None) -> None:
    result = monitoring.check(
        "iris-prod", ["p99_ms > 5"], figures={"requests": 0.0}, config=served.config
    )
    (only,) = result
    assert only.status == "unknown" and "p99_ms" in only.explanation
    assert result.unknown == [only]


def test_actions_cooldown_and_failing_webhook(
    served: Served, receiver: Receiver, clean_rules: None
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    monitoring.register_action("record", lambda arg, event: calls.append((arg, event)) or "ok")
    rules = [
        monitoring.AlertRule("drift_share > 0.3", action="record:retrain", cooldown_s=3600),
        monitoring.AlertRule("n_drifted >= 1", action="nosuch:thing"),
    ]
    figs = {"drift_share": 0.5, "n_drifted": 2.0}
    recorded = len(monitoring.alert_history("iris-prod", config=served.config))
    first = monitoring.check("iris-prod", rules, figures=figs, webhook=receiver.url,
                             config=served.config)  # fmt: skip
    assert [r.status for r in first] == ["firing", "firing"]
    ((arg, event),) = calls
    assert arg == "retrain" and event["rule"] == "drift_share > 0.3" and event["value"] == 0.5
    assert "no action 'nosuch' is registered" in (first[1].action_error or "")
    assert len(receiver.posts) == 1 and len(receiver.posts[0]["alerts"]) == 2
    # within the cooldown: recorded, not notified again; the other rule has none
    second = monitoring.check("iris-prod", rules, figures=figs, webhook=receiver.url,
                              config=served.config)  # fmt: skip
    assert second[0].suppressed and not second[0].notified and len(calls) == 1
    assert [a["rule"] for a in receiver.posts[1]["alerts"]] == ["n_drifted >= 1"]
    # an unreachable webhook is reported, not raised
    receiver.close()
    third = monitoring.check("iris-prod", ["n_drifted >= 1"], figures=figs,
                             webhook=receiver.url, config=served.config)  # fmt: skip
    assert third.webhook is not None and "unreachable" in third.webhook["error"]
    assert len(monitoring.alert_history("iris-prod", config=served.config)) == recorded + 5


def test_an_action_named_by_reference_loads_when_it_fires(
    served: Served, clean_rules: None
) -> None:
    monitoring.register_action("is-not", "operator:is_not")
    monitoring.register_action("missing", "jupyter_mlops.no_such_module:run")
    assert "pipeline" in monitoring.registered_actions()  # built in, not imported yet
    rules = [
        monitoring.AlertRule("n_drifted >= 1", action="is-not:x"),
        monitoring.AlertRule("drift_share > 0.3", action="missing:x"),
    ]
    result = monitoring.check("iris-prod", rules, figures={"drift_share": 0.5, "n_drifted": 2.0},
                              webhook="", record=False, config=served.config)  # fmt: skip
    assert result[0].action_error is None and result[0].action_result is True
    assert "cannot be loaded" in (result[1].action_error or "")
    assert "jupyter_mlops.no_such_module" in (result[1].action_error or "")


def test_rule_storage_validates(served: Served, clean_rules: None) -> None:
    from jupyter_mlops.conditions import ConditionError

    with pytest.raises(ConditionError):
        monitoring.set_rules("iris-prod", ["p99_ms >"], config=served.config)
    with pytest.raises(ConditionError, match="only comparisons"):
        monitoring.set_rules("iris-prod", ["__import__('os')"], config=served.config)
    with pytest.raises(MlopsError, match="http"):
        monitoring.set_rules("iris-prod", webhook="ftp://x", config=served.config)
    with pytest.raises(NotFoundError):
        monitoring.set_rules("nope", ["p99_ms > 1"], config=served.config)
    assert monitoring.get_rules("iris-prod", config=served.config).rules == []
    monitoring.set_rules("iris-prod", ["p99_ms > 50", "error_rate > 0.01"], config=served.config)
    monitoring.set_rules("iris-prod", ["p99_ms > 50"], config=served.config)  # no duplicate
    left = monitoring.remove_rules("iris-prod", ["error_rate > 0.01"], config=served.config)
    assert [r.expression for r in left.rules] == ["p99_ms > 50"]
    path = served.config.mlops_dir / "monitoring" / "iris-prod" / "rules.json"
    assert json.loads(path.read_text())["rules"][0]["expression"] == "p99_ms > 50"


# -- the monitor widget --------------------------------------------------------------------


def test_live_monitor_throttles_drift_and_carries_it_over(
    served: Served, clean_rules: None
) -> None:
    live = monitoring.LiveMonitor("iris-prod", last="1h", drift_every=3600, config=served.config)
    first = live.snapshot()
    assert first.drift_fresh and first.figures["drift_share"] == 0.5
    assert first.drift_report is not None and first.checks is None  # no stored rules
    second = live.snapshot()
    assert not second.drift_fresh and second.drift_report is first.drift_report
    assert second.figures["drift_share"] == 0.5 and second.figures["n_drifted"] == 2
    assert "drift_share" not in live.snapshot(drift=False).figures


def test_monitor_widget_traces_and_refresh(served: Served) -> None:
    from jupyter_mlops.widgets.monitor import MonitorWidget

    monitoring.set_rules("iris-prod", ["drift_share > 0.3"], config=served.config)
    try:
        widget = MonitorWidget("iris-prod", interval=0.2, autostart=False, config=served.config)
        assert [t.name for t in widget.rps.data] == ["v1 (primary)", "v2 (canary)"]
        assert [t.line.dash for t in widget.rps.data] == ["solid", "dash"]
        assert len(widget.latency.data) == 6  # p50/p95/p99 per version
        assert {t.name for t in widget.predictions.data} == {"v1 (primary)", "v2 (canary)"}
        (bars,) = widget.drift.data
        assert sorted(bars.x) == sorted(FEATURES)
        assert "#cf222e" in bars.marker.color  # drifted features in red
        assert "firing" in widget.alerts.value and "drift_share" in widget.alerts.value
        assert "40 requests" in widget.header.value
        bundle = widget._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert "mlops-monitor-static" in bundle["text/html"]
        before = widget.refreshes
        widget.start()
        assert widget.running
        deadline = time.monotonic() + 30
        while widget.refreshes < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert widget.refreshes >= before + 2  # refreshed in the background
        widget.close()
        assert not widget.running and widget._thread is not None
        assert not widget._thread.is_alive()
    finally:
        monitoring.remove_rules("iris-prod", config=served.config)


def test_drift_widget_of_a_deployment(served: Served) -> None:
    from jupyter_mlops.widgets.drift import DriftWidget

    report = monitoring.drift_for_deployment("iris-prod", config=served.config)
    widget = DriftWidget(report)
    names = [t.meta["feature"] for t in widget.figure.data]
    assert names[:2] == [report.features[0].name] * 2
    assert names[-1] == "prediction"
    frame = report.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 5
