"""A canary decided on live outcomes: ``promote(..., when="challenger.accuracy >
primary.accuracy")``.

The condition language's role names, the decision on synthetic outcome frames (the columns
of :func:`jupyter_mlops.predlog.read_outcomes`), then a real deployment on 127.0.0.1 with
real outcomes: a worse canary is not promoted and the history says why, a better one with
enough labels is, too few labels are refused.
"""

from __future__ import annotations

import pytest

from jupyter_mlops.conditions import Condition
from jupyter_mlops.errors import ConditionError

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
