"""Outcomes against a real deployment on 127.0.0.1: probabilities logged for every request,
``POST /feedback`` (late, batched; every refusal a 4xx that stores nothing), realised accuracy
per version equal to scikit-learn's, and outcomes that survive ``kill -9`` of the server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from jupyter_mlops import read_outcomes, record_outcomes
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.predlog import read_predictions
from jupyter_mlops.serving import Deployment, canary
from jupyter_mlops.serving.models import label_from_proba
from tests.helpers import register_iris, running
from tests.test_serving import FEATURES, fire

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A project with iris-rf v1 (champion, 100 trees) and v2 (challenger, 10 trees)."""
    root = tmp_path_factory.mktemp("outcomes") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = load_config(root)
        assert register_iris(cfg, 100, 0, "champion") == "1"
        assert register_iris(cfg, 10, 1, "challenger") == "2"
        yield cfg


@pytest.fixture(scope="module")
def server(config: Config) -> Iterator[Deployment]:
    """v1 primary, v2 canary on half the traffic."""
    with running("iris-rf@champion", config, name="iris-out") as dep:
        canary("iris-out", "iris-rf@challenger", 50, config=config)
        yield dep


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    noisy = frame.copy()  # rows near the class borders, so the two versions disagree
    noisy[FEATURES] += np.random.default_rng(0).normal(0, 0.4, (len(frame), 4))
    return pd.concat([frame, noisy], ignore_index=True).round(2)


def _stored(config: Config) -> int:
    path = config.mlops_dir / "predictions.db"
    return int(sqlite3.connect(path).execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])


def test_forest_labels_come_from_one_predict_proba_call(config: Config, iris: pd.DataFrame) -> None:
    import mlflow.pyfunc

    from jupyter_mlops.client import client

    client(config)
    model = mlflow.pyfunc.load_model("models:/iris-rf/1")
    label = label_from_proba(model)
    assert label is not None  # the provably identical case is taken
    native = model.get_raw_model()
    frame = iris[FEATURES]
    assert label(native.predict_proba(frame)).tolist() == model.predict(frame).tolist()


def test_realised_accuracy_per_version_equals_sklearn(
    server: Deployment, config: Config, iris: pd.DataFrame
) -> None:
    records = json.loads(iris[FEATURES].to_json(orient="records"))
    keys = [{"x-request-key": f"k{i}"} for i in range(len(records))]
    answers = fire(f"{server.url}/predict", records, headers=keys)
    assert all(a.status_code == 200 for a in answers)
    sent = pd.DataFrame(
        {
            "request_id": [a.json()["request_id"] for a in answers],
            "version": [a.json()["model"]["version"] for a in answers],
            "predicted": [a.json()["predictions"][0] for a in answers],
            "outcome": iris.target.tolist(),
        }
    )
    assert set(sent.version) == {"1", "2"}
    # probabilities logged for label requests too, equal to the model's own
    log = read_predictions("iris-out", config=config).set_index("request_id")
    first = sent.request_id[0]
    assert log.loc[first, ["proba_0", "proba_1", "proba_2"]].sum() == pytest.approx(1.0)
    # outcomes late and in batches: a third now over HTTP, a third later, the rest by API
    labelled = sent.sample(frac=0.9, random_state=1)
    third = len(labelled) // 3
    parts = [labelled.iloc[:third], labelled.iloc[third : 2 * third], labelled.iloc[2 * third :]]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        body = [
            {"request_id": r, "outcome": int(o), "arrived": 1_900_000_000 + i}
            for i, (r, o) in enumerate(zip(parts[0].request_id, parts[0].outcome, strict=True))
        ]
        answer = http.post("/feedback", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "accepted": len(body),
            "request_ids": [b["request_id"] for b in body],
        }
        one = parts[1].iloc[0]
        single = http.post(
            "/feedback", json={"request_id": one.request_id, "outcome": 1.0 * one.outcome}
        )
        assert single.status_code == 200 and single.json()["accepted"] == 1
        rest = [
            {"request_id": r, "outcome": int(o)}
            for r, o in zip(parts[1].request_id[1:], parts[1].outcome[1:], strict=True)
        ]
        assert http.post("/feedback", json=rest).status_code == 200
    receipt = record_outcomes("iris-out", parts[2][["request_id", "outcome"]], config=config)
    assert receipt.accepted == len(parts[2])
    frame = read_outcomes("iris-out", config=config)
    assert len(frame) == len(labelled)
    truth = labelled.set_index("request_id")
    for version in ("1", "2"):
        rows = frame[frame.model_version == version]
        expected = truth[truth.version == version]
        assert len(rows) == len(expected) > 10
        realised = float((rows.prediction == rows.outcome).mean())
        assert realised == accuracy_score(expected.outcome, expected.predicted)
        assert set(rows.role) == {"primary" if version == "1" else "canary"}
    assert frame.delay_s.gt(0).all()
    assert frame.proba_0.notna().all()


def _bad(case: str, fresh: str, labelled: str, third: str) -> bytes:
    """A /feedback body for ``case``: one good record for ``fresh`` plus one bad one."""
    good = {"request_id": fresh, "outcome": 0}
    bad = {
        "missing": {"outcome": 1},
        "unknown": {"request_id": "0" * 32, "outcome": 1},
        "stored": {"request_id": labelled, "outcome": 1},
        "twice": {"request_id": fresh, "outcome": 2},
        "class": {"request_id": third, "outcome": 7},
        "text": {"request_id": third, "outcome": "setosa"},
    }
    if case == "malformed":
        return b'[{"request_id": "' + fresh.encode() + b'", "outcome": 0}, {not json'
    return json.dumps([good, bad[case]]).encode()


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("malformed", 400, "BAD_PAYLOAD"),
        ("missing", 400, "BAD_PAYLOAD"),
        ("unknown", 404, "UNKNOWN_REQUEST_ID"),
        ("stored", 409, "DUPLICATE_OUTCOME"),
        ("twice", 409, "DUPLICATE_OUTCOME"),
        ("class", 422, "OUTCOME_TYPE"),
        ("text", 422, "OUTCOME_TYPE"),
    ],
)
def test_bad_feedback_is_a_4xx_storing_nothing(
    server: Deployment, config: Config, case: str, status: int, code: str
) -> None:
    row = dict.fromkeys(FEATURES, 5.0)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        fresh, labelled, third = (
            http.post("/predict", json=row).json()["request_id"] for _ in range(3)
        )
        # answered a moment ago: found even while only in the server's journal
        assert (
            http.post("/feedback", json={"request_id": labelled, "outcome": 0}).status_code == 200
        )
        before = _stored(config)
        answer = http.post(
            "/feedback",
            content=_bad(case, fresh, labelled, third),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == status, answer.text
        reply = answer.json()
        assert reply["error_code"] == code
        assert reply["request_id"] == answer.headers["x-request-id"]
        assert _stored(config) == before  # the good record went nowhere either
    if code == "UNKNOWN_REQUEST_ID":
        assert "no retention" in reply["message"]
    if case != "malformed":
        assert "nothing was stored" in reply["message"]
        assert reply["rejected"][0]["index"] == 1


def test_outcomes_survive_kill_9_and_feedback_needs_the_token(config: Config) -> None:
    token = "outcome-token"
    good = {"Authorization": f"Bearer {token}"}
    with running("iris-rf@champion", config, name="killed-out", token=token) as dep:
        rows = [dict.fromkeys(FEATURES, 1.0 + i / 10) for i in range(20)]
        answers = fire(f"{dep.url}/predict", rows, headers=[good] * len(rows))
        ids = [a.json()["request_id"] for a in answers]
        with httpx.Client(base_url=dep.url, timeout=30) as http:
            body = [{"request_id": i, "outcome": 0, "order_value": 10.5} for i in ids]
            assert http.post("/feedback", json=body).status_code == 401
            assert http.post("/feedback", json=body, headers=good).status_code == 200
            document = http.get("/openapi.json", headers=good).json()
        assert "/feedback" in document["paths"]
        assert document["paths"]["/feedback"]["post"]["security"] == [{"bearer": []}]
        os.killpg(dep.pid, signal.SIGKILL)
        frame = read_outcomes("killed-out", config=config)
        assert sorted(frame.request_id) == sorted(ids)
        assert frame.order_value.eq(10.5).all()
