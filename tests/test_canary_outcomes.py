"""A canary decided on live outcomes: ``promote(..., when="challenger.accuracy >
primary.accuracy")``.

The condition language's role names, the decision on synthetic outcome frames (the columns
of :func:`jupyter_mlops.predlog.read_outcomes`), then a real deployment on 127.0.0.1 with
real outcomes: a worse canary is not promoted and the history says why, a better one with
enough labels is, too few labels are refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from jupyter_mlops.conditions import Condition
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import ConditionError
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving import (
    Deployment,
    PromotionRefused,
    canary,
    get_deployment,
    promote,
)
from jupyter_mlops.serving.decision import Decision, PromotionCondition, canary_since, decide
from tests.helpers import register_iris, running

# -- role names in conditions ---------------------------------------------------------------


def test_conditions_name_role_figures() -> None:
    condition = Condition("challenger.accuracy > primary.accuracy and metrics.f1 >= 0.5")
    assert condition.metrics == ["challenger.accuracy", "f1", "primary.accuracy"]
    assert list(condition.comparisons()) == [
        ("challenger.accuracy", ">", "primary.accuracy"),
        ("f1", ">=", 0.5),
    ]
    figures = {"challenger.accuracy": 0.9, "primary.accuracy": 0.8, "f1": 0.6}
    result = condition.evaluate(figures)
    assert result.passed
    assert "challenger.accuracy = 0.9 > 0.8: ok" in result.explain()
    # a judge decides what counts as true (a promotion: significant too)
    assert not condition.evaluate(figures, judge=lambda check: check["right_text"] == "0.5").passed
    assert (
        Condition("canary.rmse < primary.rmse")
        .evaluate({"canary.rmse": 1.0, "primary.rmse": 2.0})
        .passed
    )
    assert not condition.negates and Condition("not canary.a > 1").negates
    with pytest.raises(ConditionError, match=r"challenger.<name>, canary.<name>, primary"):
        Condition("champion.accuracy > 0.9")
    with pytest.raises(ConditionError, match=r"needs \['challenger.accuracy'\]"):
        Condition("challenger.accuracy > 0.9").evaluate({"accuracy": 0.95})


# -- the decision on synthetic outcome frames ---------------------------------------------

PRIMARY, CANARY = ModelRef("iris-rf", version="1"), ModelRef("iris-rf", version="2")
SINCE = float(int(time.time()) - 86_400)  # a day ago: the window ends now


def outcome_rows(
    role: str,
    version: str,
    n: int,
    accuracy: float,
    *,
    seed: int,
    start: float = SINCE + 1,
    classes: int = 3,
) -> pd.DataFrame:
    """``n`` labelled predictions of one model, right on ``round(accuracy * n)`` of them, in
    the columns of ``read_outcomes`` (probabilities and an outcome column included)."""
    rng = np.random.default_rng(seed)
    outcome = rng.integers(0, classes, n)
    right = rng.permutation(n) < round(accuracy * n)
    prediction = np.where(right, outcome, (outcome + rng.integers(1, classes, n)) % classes)
    proba = np.full((n, classes), 0.1 / (classes - 1))
    proba[np.arange(n), prediction] = 0.9
    stamp = start + np.arange(n) * 0.5
    frame = pd.DataFrame(
        {
            "request_id": [f"{role}-{version}-{seed}-{i}" for i in range(n)],
            "row": 0,
            "timestamp": pd.to_datetime(stamp, unit="s", utc=True),
            "arrived": pd.to_datetime(stamp + 60, unit="s", utc=True),
            "delay_s": 60.0,
            "deployment": "iris",
            "model_name": "iris-rf",
            "model_version": version,
            "run_id": f"run{version}",
            "role": role,
            "prediction": prediction,
            "outcome": outcome,
        }
    )
    for c in range(classes):
        frame[f"proba_{c}"] = proba[:, c]
    frame["order_value"] = rng.normal(100 if right.mean() > 0.8 else 90, 10, n)
    return frame


def frame_of(*parts: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)


def judged(
    frame: pd.DataFrame, when: str = "challenger.accuracy > primary.accuracy", **kw: Any
) -> Decision:
    return decide(frame, when, primary=PRIMARY, canary=CANARY, since=SINCE, **kw)


def test_worse_canary_is_not_promoted_and_says_why() -> None:
    frame = frame_of(
        outcome_rows("primary", "1", 400, 0.95, seed=1),
        outcome_rows("canary", "2", 400, 0.60, seed=2),
    )
    decision = judged(frame, min_labels=100)
    assert not decision.promoted
    assert decision.reason.startswith("condition false: challenger.accuracy = 0.6 > 0.95: false")
    assert decision.roles["primary"]["labels"] == decision.roles["canary"]["labels"] == 400
    assert decision.roles["canary"]["figures"]["accuracy"] == pytest.approx(0.60)
    (test,) = decision.comparisons
    assert test["p_value"] > 0.999 and not test["holds"]


def test_better_canary_with_enough_labels_is_promoted_with_its_evidence() -> None:
    from scipy.stats import chi2_contingency

    frame = frame_of(
        outcome_rows("primary", "1", 500, 0.86, seed=3),
        outcome_rows("canary", "2", 400, 0.93, seed=4),
        # neither before the window nor another version's rows count
        outcome_rows("canary", "2", 300, 0.10, seed=5, start=SINCE - 3600),
        outcome_rows("primary", "7", 300, 0.10, seed=6),
    )
    decision = judged(frame)
    assert decision.promoted, decision.reason
    (test,) = decision.comparisons
    assert test["n"] == [400, 500] and test["test"] == "two-proportion z-test"
    assert test["difference"] == pytest.approx(0.93 - 0.86)
    # the pooled z-test's one-sided p is half the uncorrected chi-squared test's p
    table = [[372, 28], [430, 70]]
    chi2 = chi2_contingency(table, correction=False)
    assert test["p_value"] == pytest.approx(chi2.pvalue / 2, rel=1e-9)
    assert "p = " in decision.reason and "n = [400, 500]" in decision.reason
    evidence = decision.to_dict()
    assert evidence["window"] == {"since": SINCE, "until": decision.until}
    assert evidence["alpha"] == 0.05 and evidence["expression"] == decision.expression
    json.dumps(evidence, allow_nan=False)  # JSON for the state file


def test_small_difference_is_not_significant_and_few_labels_are_refused() -> None:
    close = frame_of(
        outcome_rows("primary", "1", 300, 0.90, seed=7),
        outcome_rows("canary", "2", 300, 0.92, seed=8),
    )
    decision = judged(close)
    assert not decision.promoted
    assert decision.reason.startswith("not significant: challenger.accuracy > primary.accuracy")
    assert decision.comparisons[0]["holds"] and decision.comparisons[0]["p_value"] > 0.05
    # the same difference is significant at a looser level
    assert judged(close, alpha=0.5).promoted
    few = frame_of(
        outcome_rows("primary", "1", 300, 0.80, seed=9),
        outcome_rows("canary", "2", 40, 1.0, seed=10),
    )
    decision = judged(few, min_labels=50)
    assert not decision.promoted and decision.comparisons == []
    assert decision.reason.startswith("not enough labels: canary 40, primary 300 labelled rows")
    assert "(at least 50 per side)" in decision.reason
    assert judged(few, "canary.accuracy > 0.5", min_labels=50).reason.startswith(
        "not enough labels: canary 40 labelled"
    )


def test_equal_models_are_rarely_promoted() -> None:
    """The test's false-positive rate: A/A trials promote about alpha of the time."""
    promoted = sum(
        judged(
            frame_of(
                outcome_rows("primary", "1", 200, 0.9, seed=100 + i).assign(
                    outcome=lambda f, i=i: _noisy(f, 0.9, i)
                ),
                outcome_rows("canary", "2", 200, 0.9, seed=500 + i).assign(
                    outcome=lambda f, i=i: _noisy(f, 0.9, 1000 + i)
                ),
            ),
            min_labels=100,
        ).promoted
        for i in range(60)
    )
    assert promoted <= 10  # Binomial(60, 0.05): 3 expected, P(> 10) < 1e-3


def _noisy(frame: pd.DataFrame, accuracy: float, seed: int) -> np.ndarray:
    """Outcomes right with probability ``accuracy`` (not exactly that share: A/A noise)."""
    rng = np.random.default_rng(seed)
    right = rng.random(len(frame)) < accuracy
    wrong = (frame["prediction"] + rng.integers(1, 3, len(frame))) % 3
    return np.where(right, frame["prediction"], wrong)


def test_other_figures_use_their_tests() -> None:
    frame = frame_of(
        outcome_rows("primary", "1", 400, 0.80, seed=11),
        outcome_rows("canary", "2", 400, 0.95, seed=12),
    )
    decision = judged(
        frame,
        "challenger.f1 > primary.f1 and canary.log_loss < primary.log_loss "
        "and challenger.order_value > primary.order_value and canary.accuracy >= 0.9",
    )
    assert decision.promoted, decision.reason
    tests = {c["comparison"]: c["test"] for c in decision.comparisons}
    assert tests == {
        "challenger.f1 > primary.f1": "bootstrap (1000 resamples)",
        "canary.log_loss < primary.log_loss": "bootstrap (500 resamples)",  # of rows
        "challenger.order_value > primary.order_value": "Welch t-test",
        "canary.accuracy >= 0.9": "one-proportion z-test",
    }
    # a comparison the wrong way round is false whatever its p-value
    assert not judged(frame, "challenger.f1 < primary.f1").promoted


def test_regression_figures() -> None:
    rng = np.random.default_rng(13)
    parts = []
    for role, version, noise in (("primary", "1", 2.0), ("canary", "2", 1.0)):
        truth = rng.normal(50, 10, 300)
        parts.append(
            outcome_rows(role, version, 300, 1.0, seed=14).assign(
                outcome=truth, prediction=truth + rng.normal(0, noise, 300)
            )
        )
    frame = frame_of(*parts).drop(columns=["proba_0", "proba_1", "proba_2"])
    decision = judged(frame, "challenger.rmse < primary.rmse and canary.mae < 1.5")
    assert decision.promoted, decision.reason
    assert {c["test"] for c in decision.comparisons} == {"Welch t-test", "one-sample t-test"}
    assert set(decision.roles["canary"]["figures"]) >= {"rmse", "mae", "r2"}
    assert not judged(frame, "challenger.r2 < primary.r2").promoted


def test_window_starts_when_the_canary_began_to_serve() -> None:
    model = CANARY.to_dict()
    events = [
        {"at": 10.0, "action": "canary", "canary": "iris-rf v2", "weight": 0.0},
        {"at": 20.0, "action": "canary", "canary": "iris-rf v2", "weight": 10.0},
        {"at": 30.0, "action": "canary", "canary": "iris-rf v3", "weight": 10.0},
    ]
    assert canary_since({"canary": model, "canary_since": 42.0, "events": events}) == 42.0
    assert canary_since({"canary": model, "canary_since": None, "events": events}) is None
    # a state written before canary_since: its last canary event with a weight
    assert canary_since({"canary": model, "events": events}) == 20.0
    assert canary_since({"canary": model, "events": events[:1]}) is None


def test_unknown_figures_and_single_rows() -> None:
    few = frame_of(
        outcome_rows("primary", "1", 3, 0.5, seed=15), outcome_rows("canary", "2", 3, 1, seed=16)
    )
    with pytest.raises(ConditionError, match=r"no figure acuracy for a classification model"):
        judged(few, "challenger.acuracy > primary.acuracy")  # before the labels are counted
    # one row a side: Welch has no variance to go on, so no evidence
    one = few.groupby("role").head(1)
    decision = judged(one, "challenger.order_value > primary.order_value", min_labels=1)
    assert decision.comparisons[0]["p_value"] == 1.0 and not decision.promoted


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("not challenger.accuracy < primary.accuracy", "the other way round"),
        ("challenger.accuracy == primary.accuracy", "cannot show equality"),
        ("accuracy > 0.9", "must name a role's figure"),
        ("challenger.accuracy > primary.f1", "compare one figure between the two roles"),
        ("canary.accuracy > challenger.accuracy", "compare one figure between the two roles"),
        ("0.5 < 0.9", "must name a role's figure"),
    ],
)
def test_untestable_conditions_are_refused(when: str, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        PromotionCondition(when)


# -- a real deployment on 127.0.0.1 ----------------------------------------------------------

FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
WHEN = "challenger.accuracy > primary.accuracy"


def register_constant(config: Config, alias: str) -> str:
    """A deliberately bad iris model (always class 0, about 1/3 right), registered as
    ``iris-rf@alias``; its version."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.dummy import DummyClassifier

    from jupyter_mlops.client import client

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = DummyClassifier(strategy="constant", constant=0).fit(X, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="cloudpickle",
            signature=infer_signature(X, model.predict(X)),
            input_example=X.head(2),
            pip_requirements=["scikit-learn"],
        )
    version = mlflow.register_model(info.model_uri, "iris-rf")
    client(config).set_registered_model_alias("iris-rf", alias, version.version)
    return str(version.version)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Deployment]]:
    """A project with iris-rf v1 (a forest, champion) and v2 (always class 0, challenger),
    and a deployment ``live`` serving v1."""
    root = tmp_path_factory.mktemp("canary") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        config = load_config(root)
        assert register_iris(config, 30, 0, "champion") == "1"
        assert register_constant(config, "challenger") == "2"
        with running("iris-rf@champion", config, name="live") as deployment:
            yield config, deployment


def serve(url: str, requests: int) -> list[dict[str, Any]]:
    """Send ``requests`` requests of 8 iris rows each; their outcomes (the true classes),
    to record later."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True).frame
    rng = np.random.default_rng(requests)
    outcomes = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(requests):
            rows = iris.iloc[rng.choice(len(iris), 8, replace=False)]
            body = json.loads(rows[FEATURES].to_json(orient="records"))
            answer = http.post("/predict", json=body)
            assert answer.status_code == 200, answer.text
            outcomes.append(
                {"request_id": answer.json()["request_id"], "outcome": rows["target"].tolist()}
            )
    return outcomes


def label(config: Config, outcomes: list[dict[str, Any]], url: str | None = None) -> None:
    """Record ``outcomes``: with ``record_outcomes``, or posted to ``url``'s /feedback."""
    from jupyter_mlops.predlog import record_outcomes

    if url is not None:
        answer = httpx.post(f"{url}/feedback", json=outcomes, timeout=30)
        assert answer.status_code == 200, answer.text
        return
    receipt = record_outcomes("live", outcomes, config=config)
    assert receipt.accepted in (len(outcomes), 8 * len(outcomes)) and not receipt.rejected


@pytest.mark.slow
def test_worse_canary_is_refused_and_a_better_one_promoted(
    live: tuple[Config, Deployment],
) -> None:
    from jupyter_mlops.predlog import read_outcomes  # the outcome store (#18 part A)

    config, deployment = live
    before = canary("live", "iris-rf@challenger", 50, config=config)
    assert before.canary is not None and before.canary.version == "2"

    # too few labels: refused, and recorded
    outcomes = serve(deployment.url, 60)
    label(config, outcomes[:4])
    with pytest.raises(PromotionRefused, match=r"^Not promoted: not enough labels: canary \d+"):
        promote("live", when=WHEN, min_labels=50, config=config)
    state = get_deployment("live", config=config)
    assert state.decisions[-1]["action"] == "promotion refused"
    assert state.generation == before.generation  # a refusal changes nothing served

    # every label in: the constant model's live accuracy is far worse, refused
    label(config, outcomes[4:])
    frame = read_outcomes("live", config=config)
    with pytest.raises(PromotionRefused, match=r"condition false: challenger.accuracy = 0\.\d+"):
        promote("live", when=WHEN, min_labels=50, config=config)
    state = get_deployment("live", config=config)
    assert (state.primary.version, state.canary and state.canary.version) == ("1", "2")
    event = state.decisions[-1]
    assert event["action"] == "promotion refused" and event["canary"] == "iris-rf v2"
    evidence = event["decision"]
    labelled = frame.groupby("role").size()
    assert evidence["roles"]["canary"]["labels"] == labelled["canary"] >= 50
    assert evidence["roles"]["primary"]["labels"] == labelled["primary"] >= 50
    canary_rows = frame[frame["role"] == "canary"]
    assert evidence["roles"]["canary"]["figures"]["accuracy"] == pytest.approx(
        (canary_rows["prediction"] == canary_rows["outcome"]).mean()
    )
    (test,) = evidence["comparisons"]
    assert test["test"] == "two-proportion z-test" and test["p_value"] > 0.5
    assert evidence["window"]["since"] <= evidence["window"]["until"]
    shown = str(state)
    assert "not promoted (challenger.accuracy > primary.accuracy): condition false" in shown

    # the other way round: the bad model primary, the forest its canary
    promote("live", config=config)
    canary("live", "iris-rf@champion", 50, config=config)
    label(config, serve(deployment.url, 60), url=deployment.url)  # as POST /feedback
    with pytest.raises(PromotionRefused, match=r"not significant: .* p = .* >= alpha 1e-200"):
        promote("live", when=WHEN, alpha=1e-200, min_labels=50, config=config)
    promoted = promote("live", when=WHEN, min_labels=50, config=config)
    assert promoted.primary.version == "1" and promoted.canary is None
    event = promoted.decisions[-1]
    assert event["action"] == "promote" and event["decision"]["promoted"]
    (test,) = event["decision"]["comparisons"]
    assert test["p_value"] < 1e-6 and test["n"][0] >= 50 and test["difference"] > 0.5
    # only rows since this canary began count: fewer than all labelled rows of the log
    assert sum(event["decision"]["roles"][r]["labels"] for r in ("canary", "primary")) < len(
        read_outcomes("live", config=config)
    )
    with httpx.Client(base_url=deployment.url, timeout=30) as http:
        row = json.loads(
            pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=FEATURES).to_json(orient="records")
        )
        assert http.post("/predict", json=row).json()["model"]["version"] == "1"


@pytest.mark.slow
def test_faces_refuse_in_one_line_and_show_the_decision(
    live: tuple[Config, Deployment], capsys: pytest.CaptureFixture[str], _shell: Any
) -> None:
    from IPython.core.error import UsageError as MagicUsageError

    from jupyter_mlops.cli import main

    config, _ = live
    canary("live", "iris-rf@challenger", 0, config=config)  # loaded, serving nothing
    with pytest.raises(PromotionRefused, match="iris-rf v2 has served no traffic yet"):
        promote("live", when=WHEN, config=config)
    canary("live", None, 50, config=config)  # its window starts now
    assert main(["deploy", "promote", "live", "--if", WHEN, "--min-labels", "100000"]) == 1
    err = capsys.readouterr().err.strip()
    assert "Not promoted: not enough labels: canary 0, primary 0 labelled rows since" in err
    assert "\n" not in err and "Traceback" not in err
    assert main(["deploy", "status", "live"]) == 0
    assert "decision " in capsys.readouterr().out
    assert main(["deploy", "status", "live", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["decisions"][-1]
    assert shown["action"] == "promotion refused" and shown["at"].endswith("+00:00")
    assert shown["decision"]["min_labels"] == 100000
    assert main(["deploy", "promote", "live", "--if", WHEN, "--alpha", "1"]) == 2
    assert "alpha must be below 1" in capsys.readouterr().err
    with pytest.raises(MagicUsageError, match="not enough labels"):
        _shell.run_line_magic("deploy", f'live --promote --if "{WHEN}" --min-labels 100000')
    with pytest.raises(MagicUsageError, match="use it with --promote"):
        _shell.run_line_magic("deploy", f'live --if "{WHEN}"')
    with pytest.raises(MagicUsageError, match="write the comparison the other way round"):
        _shell.run_line_magic("deploy", 'live --promote --if "not canary.accuracy < 0.5"')
    state = get_deployment("live", config=config)
    assert state.canary is not None and state.canary.version == "2"
    assert [e["action"] for e in state.decisions[-3:]] == ["promotion refused"] * 3
    assert state.to_dict()["decisions"][-1]["decision"]["min_labels"] == 100000
