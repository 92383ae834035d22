"""Outcomes in PostgreSQL (team mode), against the session's real cluster: an old-schema
``predictions`` table migrated in place, then the same outcome semantics as SQLite."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from jupyter_mlops import OutcomeError, prediction_counts, read_outcomes, record_outcomes
from jupyter_mlops._util.layout import deployments_root
from jupyter_mlops.config import load_config
from jupyter_mlops.predlog.postgres import PostgresPredictionStore
from tests.team.pg import Cluster
from tests.test_outcomes_store import T0, _record

pytestmark = pytest.mark.slow


def test_outcomes_in_postgres_old_schema_migrated(postgres: Cluster, project: Path) -> None:
    url = postgres.create_database(f"outcomes_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(  # the table as releases before #18 created it
            "CREATE TABLE predictions (request_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT "
            "NULL, deployment TEXT NOT NULL, model_name TEXT, model_version TEXT, run_id TEXT, "
            "role TEXT, endpoint TEXT, n_rows INTEGER, latency_ms DOUBLE PRECISION, inputs "
            "TEXT, outputs TEXT)"
        )
        conn.execute(
            "INSERT INTO predictions VALUES ('old', %s, 'dep', 'iris', '1', 'abc', 'primary', "
            "'predict', 1, 1.0, '{\"x\": [1.0]}', '[2]')",
            (T0,),
        )
    (project / "pyproject.toml").write_text(f'[tool.jupyter-mlops]\nprediction_log = "{url}"\n')
    config = load_config(project)
    (deployments_root(config.mlops_dir) / "dep").mkdir(parents=True)
    store = PostgresPredictionStore(url)  # opened: migrated
    store.write([_record(i) for i in range(1, 20)])
    store.close()
    receipt = record_outcomes(
        "dep",
        [{"request_id": "old", "outcome": 2}]
        + [{"request_id": f"r{i:05d}", "outcome": i % 3, "order_value": i} for i in range(1, 10)],
        config=config,
    )
    assert receipt.accepted == 10
    with pytest.raises(OutcomeError) as caught:  # one duplicate: the whole batch refused
        record_outcomes(
            "dep",
            [{"request_id": "r00015", "outcome": 0}, {"request_id": "r00003", "outcome": 0}],
            config=config,
        )
    assert caught.value.code == "DUPLICATE_OUTCOME"
    frame = read_outcomes("dep", config=config)
    assert frame.request_id.tolist() == ["old", *(f"r{i:05d}" for i in range(1, 10))]
    assert frame.proba_2.isna().tolist() == [True] + [False] * 9
    assert frame.order_value.tolist()[1:] == list(range(1, 10))
    assert (frame.prediction == frame.outcome).all()
    assert prediction_counts("dep", config=config).n_predictions.sum() == 20
