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
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jupyter_mlops.conditions import Condition
from jupyter_mlops.errors import ConditionError
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.decision import Decision, PromotionCondition, decide

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
