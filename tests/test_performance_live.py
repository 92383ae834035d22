"""Performance and business metrics against real parts: a git project whose iris forest was
tracked with ``%%track --data`` (so input drift has its zero-configuration reference from
DVC), registered and served on a free loopback port; predictions over real HTTP, outcomes
recorded late through ``record_outcomes`` and through ``POST /feedback``; alert rules that
POST to a real local HTTP receiver; the magic and the command line.

Scenarios: realised accuracy equals scikit-learn's on the joined rows; concept drift (labels
flipped for a region of the input space while the inputs stay as in training) is caught by
performance ("accuracy < 0.9" fires) and not by input drift (drift_share stays low); a
business-metric alert ("revenue_per_1k < 500") fires to the webhook, from the stored metric.

The deployment is shared by the module and stopped by its pid in teardown.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import metrics

from jupyter_mlops import monitoring, record_outcomes
from jupyter_mlops.cli import main
from jupyter_mlops.conditions import Condition
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import ConditionError
from tests.helpers import kill_process_group
from tests.test_monitoring import FEATURES, Receiver

from .conftest import IRIS_CELL, git

pytestmark = pytest.mark.slow

DEP = "iris-live"
EXAMPLES = Path(__file__).resolve().parents[1] / "notebooks" / "pipeline"
ROWS = 10  # per request


class Live:
    """The module's deployment and the rows it answered."""

    def __init__(self, config: Config, deployment: Any) -> None:
        self.config = config
        self.deployment = deployment
        self.sent: list[pd.DataFrame] = []  # per phase: request_id, row, inputs, prediction
        self.drift_started = 0.0  # time.time() when the concept drift began


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, _shell: Any) -> Iterator[Live]:
    import jupyter_mlops
    from jupyter_mlops.serving import deploy, stop

    root = tmp_path_factory.mktemp("performance") / "proj"
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
        load_iris(as_frame=True).frame.to_csv(root / "data" / "iris.csv", index=False)
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
        config = load_config(root)
        dep = deploy("iris-rf@champion", name=DEP, config=config)
        try:
            yield Live(config, dep)
        finally:
            with contextlib.suppress(Exception):
                stop(DEP, config=config)
            kill_process_group(dep.pid)
            import mlflow

            while mlflow.active_run() is not None:
                mlflow.end_run()


def predict(live: Live, n_requests: int, seed: int) -> pd.DataFrame:
    """``n_requests`` requests of iris rows as in training (no input drift); what came back."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True).frame
    rng = np.random.default_rng(seed)
    rows = iris.iloc[rng.integers(0, len(iris), n_requests * ROWS)].reset_index(drop=True)
    records = json.loads(rows[FEATURES].to_json(orient="records"))
    answered = []
    with httpx.Client(base_url=live.deployment.url, timeout=30) as http:
        for i in range(n_requests):
            response = http.post("/predict", json=records[i * ROWS : (i + 1) * ROWS])
            assert response.status_code == 200, response.text
            body = response.json()
            for row, pred in enumerate(body["predictions"]):
                answered.append({"request_id": body["request_id"], "row": row, "prediction": pred})
    sent = pd.concat([pd.DataFrame(answered), rows], axis=1)
    live.sent.append(sent)
    return sent


@pytest.fixture(scope="module")
def honest(live: Live) -> pd.DataFrame:
    """Phase 1: 20 requests, each row's true class recorded later through the API."""
    sent = predict(live, 20, seed=0)
    outcomes = sent[["request_id", "row", "target"]].rename(columns={"target": "outcome"})
    outcomes["order_value"] = np.where(sent["target"] == 2, 80.0, 20.0)
    receipt = record_outcomes(DEP, outcomes, config=live.config)
    assert receipt.accepted == len(outcomes)
    return sent


def test_realised_accuracy_equals_sklearn_on_the_joined_rows(
    live: Live, honest: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    report = monitoring.performance(DEP, last="1h", config=live.config)
    assert report.task == "classification" and report.classes == ["0", "1", "2"]
    (total,) = report.totals.to_dict("records")
    assert total["model_version"] == "1" and total["role"] == "primary"
    assert total["n_labelled"] == total["n_predictions"] == len(honest)
    assert total["coverage"] == 1.0 and total["delay_s_median"] >= 0
    truth, pred = honest["target"], honest["prediction"]
    assert total["accuracy"] == pytest.approx(metrics.accuracy_score(truth, pred))
    assert total["f1"] == pytest.approx(metrics.f1_score(truth, pred, average="macro"))
    joined = monitoring.performance(DEP, last="1h", config=live.config)
    assert "log_loss" in joined.totals and "roc_auc" in joined.totals  # probabilities logged
    # the command line: text table and JSON
    assert main(["monitor", "performance", DEP, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["figures"]["accuracy_v1"] == pytest.approx(total["accuracy"])
    assert main(["monitor", "performance", DEP, "--every", "10m"]) == 0
    out = capsys.readouterr().out
    assert "Performance of iris-live" in out and "coverage" in out and "100.0%" in out


def test_unlabelled_predictions_lower_the_coverage(live: Live, honest: pd.DataFrame) -> None:
    watch = monitoring.LiveMonitor(DEP, performance_every=3600, rules=False, config=live.config)
    before = watch.snapshot(drift=False).figures
    sent = predict(live, 2, seed=9)  # answered, never labelled
    after = monitoring.figures(DEP, last="1h", drift=False, config=live.config)
    labelled = sum(len(s) for s in live.sent) - len(sent)
    assert after["label_coverage"] == pytest.approx(labelled / (labelled + len(sent)))
    assert after["label_coverage"] < before["label_coverage"] == 1.0
    # the live monitor (widget, sidebar) reads the outcome store at most every 3600 s here:
    # in between it carries the last performance figures over
    carried = watch.snapshot(drift=False).figures
    assert carried["label_coverage"] == 1.0 and carried["accuracy"] == before["accuracy"]


@pytest.fixture(scope="module")
def drifted(live: Live, honest: pd.DataFrame) -> pd.DataFrame:
    """Phase 2: inputs as in training, but the world changed for long petals: there, the
    true class is now 1 (versicolor) whatever the model (trained on the old world) says.
    The outcomes arrive late, in batches, over ``POST /feedback``."""
    live.drift_started = time.time()
    sent = predict(live, 60, seed=1)
    flipped = sent["petal length (cm)"] > 4.8
    sent["outcome"] = np.where(flipped, 1, sent["target"])
    body = [
        {"request_id": r, "row": int(i), "outcome": int(o), "order_value": 20.0}
        for r, i, o in zip(sent["request_id"], sent["row"], sent["outcome"], strict=True)
    ]
    with httpx.Client(base_url=live.deployment.url, timeout=30) as http:
        for start in range(0, len(body), 200):
            answer = http.post("/feedback", json=body[start : start + 200])
            assert answer.status_code == 200, answer.text
    return sent


def test_concept_drift_is_caught_by_performance_not_by_input_drift(
    live: Live, honest: pd.DataFrame, drifted: pd.DataFrame
) -> None:
    figs = monitoring.figures(DEP, last="1h", config=live.config)
    assert figs["accuracy"] < 0.9, figs  # performance sees it
    assert figs["drift_share"] < 0.3, figs  # input drift does not: the inputs stayed put
    assert figs["accuracy_v1"] == figs["accuracy_primary"] == figs["accuracy"]
    result = monitoring.check(
        DEP, ["accuracy < 0.9", "drift_share > 0.3"], record=False, notify=False,
        config=live.config,
    )  # fmt: skip
    assert [r.status for r in result] == ["firing", "quiet"]
    # the retraining trigger reads the same figures
    trigger = Condition("accuracy < 0.9 or drift_share > 0.3").evaluate(figs)
    assert trigger.passed and "accuracy" in trigger.explain()
    from jupyter_mlops import pipelines

    root = live.config.root
    (root / "nb").mkdir(exist_ok=True)
    shutil.copy(EXAMPLES / "train.ipynb", root / "nb" / "train.ipynb")
    spec = {"name": "p", "steps": {"train": {"notebook": "nb/train.ipynb"}}}
    (root / "retrain.yaml").write_text(yaml.safe_dump(spec))
    quiet = pipelines.retrain(
        "iris-rf", root / "retrain.yaml", when="accuracy < 0.1 or drift_share > 0.3",
        deployment=DEP, config=live.config,
    )  # fmt: skip
    assert quiet.action == "not-triggered" and quiet.pipeline_run is None
    assert quiet.figures["accuracy"] == pytest.approx(figs["accuracy"])
    assert "accuracy = " in quiet.reason and "< 0.1: FAILED" in quiet.reason
    # the window of phase 2 alone says the same, per window
    report = monitoring.performance(DEP, last="1h", every="1h", config=live.config)
    assert report.rows["accuracy"].min() < 0.9


def test_estimate_beside_the_realised_accuracy(
    live: Live, honest: pd.DataFrame, drifted: pd.DataFrame
) -> None:
    # the window of the drift; the honest phase before it is the estimate's reference
    window = time.time() - live.drift_started
    report = monitoring.performance(DEP, last=window, estimate=True, config=live.config)
    (total,) = report.totals.to_dict("records")
    assert total["n_labelled"] == len(drifted)
    low, high = total["estimated_accuracy_low"], total["estimated_accuracy_high"]
    assert low <= total["estimated_accuracy"] <= high
    # concept drift: the inputs look as before, so the estimate stays high while the
    # realised accuracy falls below its band (the sign the estimate's assumption broke)
    assert total["estimated_accuracy"] > 0.9 > total["accuracy"]
    assert total["accuracy"] < low
    figs = report.figures()
    assert figs["estimated_accuracy"] == figs["estimated_accuracy_v1"] > 0.9
    rules = ["estimated_accuracy < 0.88", "accuracy < 0.9"]
    assert [monitoring.alerts.evaluate(monitoring.AlertRule(r), figs, figs.notes).status
            for r in rules] == ["quiet", "firing"]  # fmt: skip
    # the same rules checked as `monitor check` checks them: the estimate is computed for
    # the rule that reads it (without it, that rule would be "unknown")
    window = time.time() - live.drift_started  # the same rows: the drift phase alone
    checked = monitoring.check(DEP, rules, last=window, notify=False, config=live.config)
    assert [r.status for r in checked] == ["quiet", "firing"]
    assert checked[0].value == pytest.approx(figs["estimated_accuracy"], abs=0.02)
    # over all time there is no "before": said, not made up
    everything = monitoring.performance(DEP, last=None, estimate=True, config=live.config)
    assert "estimated_accuracy" not in everything.figures()
    assert "no reference" in everything.notes["estimated_accuracy"]


def test_estimate_calibrated_on_a_holdout_scored_by_the_served_model(
    live: Live, honest: pd.DataFrame, drifted: pd.DataFrame
) -> None:
    """``reference=`` a plain holdout (inputs and target): the served version's own
    ``predict_proba`` scores it, and the estimate is the one fitted on those scores."""
    import mlflow.sklearn
    from sklearn.datasets import load_iris

    from jupyter_mlops.predlog import read_predictions

    holdout = load_iris(as_frame=True).frame.sample(60, random_state=3)
    window = time.time() - live.drift_started
    report = monitoring.performance(
        DEP, last=window, estimate=True, reference=holdout, target="target", config=live.config
    )
    (total,) = report.totals.to_dict("records")
    # by hand: the registered model's probabilities of the holdout calibrate the estimator
    mlflow.set_tracking_uri(live.config.tracking_uri)
    forest = mlflow.sklearn.load_model("models:/iris-rf/1")
    classes = [str(c) for c in forest.classes_]
    estimator = monitoring.fit_estimator(
        forest.predict_proba(holdout[FEATURES]), holdout["target"].astype(str), classes
    )
    logged = read_predictions(DEP, since=live.drift_started, config=live.config)
    proba = logged[[f"proba_{c}" for c in classes]].to_numpy(dtype=float)
    expected = estimator.estimate(proba, y_pred=logged["prediction"].astype(str).to_numpy())
    assert len(logged) == total["n_predictions"]
    assert total["estimated_accuracy"] == pytest.approx(expected["estimated_accuracy"])
    # without its target column the holdout cannot calibrate: a note, not a crash
    unlabelled = monitoring.performance(
        DEP, last=window, estimate=True, reference=holdout[FEATURES], config=live.config
    )
    assert "estimated_accuracy" not in unlabelled.figures()
    assert "target column" in unlabelled.notes["estimated_accuracy"]
    # the command line: --reference/--target only with --estimate (a usage error, exit 2)
    path = live.config.root / "holdout.csv"
    holdout.to_csv(path, index=False)
    assert main(["monitor", "performance", DEP, "--reference", str(path)]) == 2


def test_business_metric_alert_fires_to_the_webhook(
    live: Live, honest: pd.DataFrame, drifted: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver = Receiver()
    try:
        # as %monitor iris-live --business ... --alert ... --webhook ... stores them
        business = ["--business", "revenue = 12*tp - 5*fp", "--business", "avg = mean(order_value)"]
        assert main(["monitor", "performance", DEP, *business]) == 0
        assert "revenue_per_1k" in capsys.readouterr().out
        assert [m.name for m in monitoring.get_business(DEP, config=live.config)] == [
            "revenue",
            "avg",
        ]
        monitoring.set_rules(
            DEP, ["revenue_per_1k < 500", "avg > 1000"], webhook=receiver.url, config=live.config
        )
        # cron's view: the command line evaluates the stored rules over the stored metrics
        assert main(["monitor", "check", DEP]) == 1  # a rule fires
        out = capsys.readouterr().out
        assert "[ firing] revenue_per_1k < 500" in out and "[  quiet] avg > 1000" in out
        assert len(receiver.posts) == 1, receiver.posts
        (post,) = receiver.posts
        assert [a["rule"] for a in post["alerts"]] == ["revenue_per_1k < 500"]
        figures = post["figures"]
        # what it should be: the confusion counts of every labelled row, by scikit-learn
        truth = pd.concat([honest["target"], drifted["outcome"]]).astype(int)
        pred = pd.concat([honest["prediction"], drifted["prediction"]]).astype(int)
        matrix = metrics.confusion_matrix(truth, pred, labels=[0, 1, 2])
        tp, fp = matrix[2, 2], matrix[:2, 2].sum()  # positive: the last class, 2
        assert figures["revenue"] == 12 * tp - 5 * fp
        assert figures["revenue_per_1k"] == pytest.approx((12 * tp - 5 * fp) / len(truth) * 1e3)
        assert figures["n_labelled"] == len(truth) and "accuracy" in figures
    finally:
        receiver.close()
        monitoring.remove_rules(DEP, config=live.config)
        monitoring.set_rules(DEP, webhook="", config=live.config)
        monitoring.remove_business(DEP, config=live.config)


def test_magic_performance_and_bad_business_expression(
    live: Live, honest: pd.DataFrame, _shell: Any
) -> None:
    view = _shell.run_line_magic("monitor", f"{DEP} --performance --every 30m")
    report = view.report  # the widget over the report
    assert report.task == "classification" and not report.rows.empty
    assert "accuracy" in view.static_html()
    with pytest.raises(ConditionError, match="only \\+ - \\* /"):
        monitoring.set_business(DEP, ["x = tp ** 2"], config=live.config)
    assert monitoring.get_business(DEP, config=live.config) == []  # nothing stored
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="functions are mean"):  # one line, not a traceback
        _shell.run_line_magic("monitor", f"{DEP} --business \"x = __import__('os')\"")
    assert monitoring.get_business(DEP, config=live.config) == []
