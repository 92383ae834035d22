"""The outcome store on real SQLite files, without a server: outcomes joined to logged
predictions (journal-only ones included), every refusal atomic, the old schema migrated in
place, prediction counts for label coverage."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jupyter_mlops import (
    OutcomeError,
    prediction_counts,
    read_outcomes,
    record_outcomes,
)
from jupyter_mlops._util.layout import JOURNAL_DIR, deployments_root
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.predlog import LogWriter, SQLitePredictionStore, read_predictions

T0 = 1_700_000_000.0


def _record(i: int, *, n_rows: int = 1, version: str = "1", proba: bool = True) -> dict:
    labels = [(i + k) % 3 for k in range(n_rows)]
    return {
        "request_id": f"r{i:05d}",
        "ts": T0 + i,
        "deployment": "dep",
        "model_name": "iris",
        "model_version": version,
        "run_id": "abc",
        "role": "primary" if version == "1" else "canary",
        "endpoint": "predict",
        "n_rows": n_rows,
        "latency_ms": 1.0,
        "inputs": {"x": [float(i + k) for k in range(n_rows)]},
        "outputs": labels,
        "proba": [{"0": 0.1, "1": 0.2, "2": 0.7} for _ in labels] if proba else None,
    }


@pytest.fixture
def logged(project: Path) -> Config:
    """A deployment folder ``dep`` whose log holds 40 requests: 30 stored (v1, with
    probabilities) and 10 still in a live journal (v2, one of them of 3 rows)."""
    config = load_config(project)
    folder = deployments_root(config.mlops_dir) / "dep"
    folder.mkdir(parents=True)
    url = f"sqlite:///{project / '.mlops' / 'predictions.db'}"
    SQLitePredictionStore(project / ".mlops" / "predictions.db").write(
        [_record(i) for i in range(30)]
    )
    writer = LogWriter(folder / JOURNAL_DIR, url, interval=3600)
    writer.append([_record(i, version="2", n_rows=3 if i == 30 else 1) for i in range(30, 40)])
    yield config
    writer.close()


def _stored(config: Config) -> int:
    path = config.mlops_dir / "predictions.db"
    return int(sqlite3.connect(path).execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])


def test_outcomes_join_predictions_journal_included(logged: Config) -> None:
    sent = pd.DataFrame(
        {
            "request_id": [f"r{i:05d}" for i in range(0, 40, 2) if i != 30],
            "outcome": [i % 3 if i % 4 else (i + 1) % 3 for i in range(0, 40, 2) if i != 30],
            "arrived": [T0 + 100 + i for i in range(0, 40, 2) if i != 30],
            "order_value": [float(i) for i in range(0, 40, 2) if i != 30],
        }
    )
    receipt = record_outcomes("dep", sent, config=logged)
    assert receipt.accepted == len(sent) and not receipt.rejected and not receipt.late
    # a three-row request labelled with a list, "1.0" naming class 1
    assert record_outcomes("dep", {"request_id": "r00030", "outcome": [0, 1.0, 2]}, config=logged)
    frame = read_outcomes("dep", config=logged)
    assert len(frame) == len(sent) + 3
    assert list(frame.columns[:12]) == [
        "request_id", "row", "timestamp", "arrived", "delay_s", "deployment", "model_name",
        "model_version", "run_id", "role", "prediction", "outcome",
    ]  # fmt: skip
    assert frame.timestamp.is_monotonic_increasing
    assert str(frame.timestamp.dt.tz) == "UTC"
    by_key = frame.set_index(["request_id", "row"])
    assert by_key.loc[("r00030", 1), "outcome"] == 1
    assert by_key.loc[("r00030", 2), "prediction"] == 2
    assert by_key.loc[("r00004", 0), "delay_s"] == pytest.approx(100.0)
    assert frame.outcome.dtype == np.int64 and frame.prediction.dtype == np.int64
    v1 = frame[frame.model_version == "1"]
    assert set(v1.role) == {"primary"} and v1.proba_2.eq(0.7).all()
    v2 = frame[frame.model_version == "2"]
    assert v2.proba_0.isna().sum() == 0  # the journal's records carried theirs too
    assert frame.order_value.dropna().tolist() == sent.order_value.tolist()
    # the window is on prediction time
    window = read_outcomes("dep", since=T0 + 10, until=T0 + 20, config=logged)
    assert sorted(set(window.request_id)) == [f"r{i:05d}" for i in range(10, 20, 2)]
    counts = prediction_counts("dep", config=logged).set_index("model_version")
    assert counts.loc["1", "n_predictions"] == 30 and counts.loc["2", "n_predictions"] == 12
    buckets = prediction_counts("dep", bucket_s=10, config=logged)
    assert buckets.n_predictions.sum() == 42 and len(buckets) == 4
    assert str(buckets.bucket.dt.tz) == "UTC"


@pytest.mark.parametrize(
    ("batch", "code", "status"),
    [
        ([{"request_id": "nope", "outcome": 1}], "UNKNOWN_REQUEST_ID", 404),
        ([{"request_id": "r00001", "outcome": 1, "row": 5}], "UNKNOWN_REQUEST_ID", 404),
        (
            [{"request_id": "r00001", "outcome": 1}, {"request_id": "r00001", "outcome": 2}],
            "DUPLICATE_OUTCOME",
            409,
        ),
        (
            [{"request_id": "r00002", "outcome": 1}, {"request_id": "r00009", "outcome": 1}],
            "DUPLICATE_OUTCOME",
            409,
        ),
        ([{"request_id": "r00003", "outcome": 7}], "OUTCOME_TYPE", 422),
        ([{"request_id": "r00003", "outcome": "setosa"}], "OUTCOME_TYPE", 422),
        ([{"request_id": "r00003"}], "BAD_PAYLOAD", 400),
        ([{"outcome": 1}], "BAD_PAYLOAD", 400),
        ([{"request_id": "r00003", "outcome": {"a": 1}}], "BAD_PAYLOAD", 400),
        ([{"request_id": "r00003", "outcome": 1, "arrived": "yesterday"}], "BAD_PAYLOAD", 400),
    ],
)
def test_refusals_store_nothing(logged: Config, batch: list, code: str, status: int) -> None:
    record_outcomes("dep", {"request_id": "r00009", "outcome": 0}, config=logged)
    good = {"request_id": "r00005", "outcome": 2}
    with pytest.raises(OutcomeError) as caught:
        record_outcomes("dep", [good, *batch], config=logged)
    assert caught.value.code == code and caught.value.http_status == status
    assert "nothing was stored" in str(caught.value)
    assert caught.value.details()["rejected"][0]["code"] == code
    assert _stored(logged) == 1  # r00009 only: the good record went nowhere either
    skipped = record_outcomes("dep", [good, *batch], on_error="skip", config=logged)
    assert "r00005" in skipped.request_ids and skipped.rejected[0]["code"] == code
    assert _stored(logged) == 1 + skipped.accepted  # the twice-sent id's first copy too


def test_regressor_and_label_only_models(project: Path) -> None:
    config = load_config(project)
    (deployments_root(config.mlops_dir) / "dep").mkdir(parents=True)
    store = SQLitePredictionStore(config.mlops_dir / "predictions.db")
    regression = {**_record(1, proba=False), "outputs": [2.5]}
    labels = {**_record(2, proba=False), "outputs": ["setosa"]}
    store.write([regression, labels])
    with pytest.raises(OutcomeError, match="not a number") as caught:
        record_outcomes("dep", {"request_id": "r00001", "outcome": "high"}, config=config)
    assert caught.value.http_status == 422
    record_outcomes("dep", {"request_id": "r00001", "outcome": 3}, config=config)
    record_outcomes("dep", {"request_id": "r00002", "outcome": "virginica"}, config=config)
    frame = read_outcomes("dep", config=config)
    assert frame.outcome.tolist() == [3, "virginica"]
    assert "proba_0" not in frame.columns


def test_old_schema_is_migrated_in_place(project: Path) -> None:
    path = project / ".mlops" / "predictions.db"
    old = sqlite3.connect(path)
    old.execute(  # the table as releases before #18 created it
        "CREATE TABLE predictions (request_id TEXT PRIMARY KEY, ts REAL NOT NULL, deployment "
        "TEXT NOT NULL, model_name TEXT, model_version TEXT, run_id TEXT, role TEXT, endpoint "
        "TEXT, n_rows INTEGER, latency_ms REAL, inputs TEXT, outputs TEXT)"
    )
    old.execute(
        "INSERT INTO predictions VALUES ('old', ?, 'dep', 'iris', '1', 'abc', 'primary', "
        "'predict', 1, 1.0, '{\"x\": [1.0]}', '[2]')",
        (T0,),
    )
    old.commit()
    old.close()
    config = load_config(project)
    (deployments_root(config.mlops_dir) / "dep").mkdir(parents=True)
    SQLitePredictionStore(path).write([_record(1)])  # opened: migrated, then written
    frame = read_predictions("dep", config=config)
    assert frame.request_id.tolist() == ["old", "r00001"]
    assert frame.proba_2.isna().tolist() == [True, False]
    receipt = record_outcomes(
        "dep", [{"request_id": "old", "outcome": 2}, {"request_id": "r00001", "outcome": 0}],
        config=config,
    )  # fmt: skip
    assert receipt.accepted == 2
    assert read_outcomes("dep", config=config).prediction.tolist() == [2, 1]


def test_cli_and_magic_record_outcomes(
    logged: Config, capsys: pytest.CaptureFixture[str], ip: Any
) -> None:
    from jupyter_mlops.cli import main

    Path("labels.csv").write_text("request_id,outcome,order_value\nr00001,1,12.5\nr00002,2,3\n")
    assert main(["outcomes", "dep", "labels.csv", "--json"]) == 0
    receipt = json.loads(capsys.readouterr().out)
    assert receipt["accepted"] == 2 and receipt["request_ids"] == ["r00001", "r00002"]
    Path("again.jsonl").write_text('{"request_id": "r00001", "outcome": 0}\n')
    assert main(["outcomes", "dep", "again.jsonl"]) == 1  # a duplicate: refused, one line
    assert "an outcome is already stored; nothing was stored" in capsys.readouterr().err
    ip.user_ns["labels_df"] = pd.DataFrame({"request_id": ["r00003"], "outcome": [0]})
    shown = ip.run_line_magic("outcomes", "dep labels_df")
    assert shown.accepted == 1
    frame = read_outcomes("dep", config=logged)
    assert frame.request_id.tolist() == ["r00001", "r00002", "r00003"]
    assert frame.order_value.tolist()[:2] == [12.5, 3.0]


def test_probability_answers_and_other_deployments(project: Path) -> None:
    config = load_config(project)
    (deployments_root(config.mlops_dir) / "dep").mkdir(parents=True)
    store = SQLitePredictionStore(config.mlops_dir / "predictions.db")
    answered = [{"0": 0.1, "1": 0.7, "2": 0.2}]  # a ?predict=proba answer, logged as such
    store.write(
        [
            {**_record(1), "outputs": answered, "proba": answered},
            {**_record(2), "deployment": "other"},
        ]
    )
    record_outcomes("dep", {"request_id": "r00001", "outcome": 1}, config=config)
    frame = read_outcomes("dep", config=config)
    assert frame.prediction.tolist() == [1] and frame.outcome.tolist() == [1]  # the argmax
    with pytest.raises(OutcomeError, match="answered by deployment 'other', not 'dep'"):
        record_outcomes("dep", {"request_id": "r00002", "outcome": 1}, config=config)


def test_a_damaged_block_hides_no_other(logged: Config, caplog: pytest.LogCaptureFixture) -> None:
    """One outcome block garbled on disk: the others are read, the damage is counted and
    logged in one line (never a pyarrow traceback to the user)."""
    for start in (0, 10):  # two batches: two blocks
        batch = [{"request_id": f"r{i:05d}", "outcome": i % 3} for i in range(start, start + 10)]
        record_outcomes("dep", batch, config=logged)
    whole = read_outcomes("dep", config=logged)
    assert len(whole) == 20 and whole.attrs["damaged_blocks"] == 0
    db = sqlite3.connect(logged.mlops_dir / "predictions.db")
    with db:
        first = db.execute("SELECT MIN(id) FROM outcome_blocks").fetchone()[0]
        db.execute("UPDATE outcome_blocks SET data = ? WHERE id = ?", (b"\x00garbled", first))
    db.close()
    with caplog.at_level("WARNING"):
        left = read_outcomes("dep", config=logged)
    assert len(left) == 10 and left.attrs["damaged_blocks"] == 1
    assert set(left["request_id"]) == {f"r{i:05d}" for i in range(10, 20)}
    assert "1 outcome block(s) could not be read" in caplog.text
