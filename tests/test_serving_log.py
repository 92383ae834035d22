"""The prediction journal and store on real files, without a server: group commit, replay of
what a killed writer left (a torn last line included), idempotent ingestion, the reader."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from jupyter_mlops._util.layout import JOURNAL_DIR, deployments_root
from jupyter_mlops.config import load_config
from jupyter_mlops.predlog import Journal, LogWriter, replay_journal
from jupyter_mlops.serving import (
    ServingError,
    SQLitePredictionStore,
    open_prediction_store,
    read_predictions,
    register_prediction_store,
)


def _record(i: int, deployment: str = "dep") -> dict:
    return {
        "request_id": f"r{i:05d}",
        "ts": 1_700_000_000.0 + i,
        "deployment": deployment,
        "model_name": "m",
        "model_version": "1",
        "run_id": "abc",
        "role": "primary",
        "endpoint": "predict",
        "n_rows": 2,
        "latency_ms": 1.5,
        "inputs": {"x": [i, i + 0.5], "kind": ["a", "b"]},
        "outputs": [i % 3, (i + 1) % 3],
    }


@pytest.mark.parametrize("durability", ["write", "fsync"])
def test_journal_group_commit_then_replay(tmp_path: Path, durability: str) -> None:
    journal = Journal(tmp_path / "journal", durability=durability)
    futures = []
    lock = threading.Lock()

    def writer(start: int) -> None:
        for i in range(start, start + 50):
            future = journal.append_synced([_record(i)])
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=writer, args=(k * 50,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for future in futures:
        assert future.result(timeout=10) is None
    store = SQLitePredictionStore(tmp_path / "p.db")
    # The writer still holds its segment: a reader stores it but leaves the file.
    assert replay_journal(tmp_path / "journal", store) == 400
    assert len(list((tmp_path / "journal").glob("*.jsonl"))) == 1
    journal.close()
    assert replay_journal(tmp_path / "journal", store) == 400  # now free: stored again, deleted
    assert not list((tmp_path / "journal").glob("*.jsonl"))
    rows = store.read("dep")
    assert [r["request_id"] for r in rows] == [f"r{i:05d}" for i in range(400)]


def test_torn_last_line_is_skipped_and_unknown_scheme_refused(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    journal = Journal(folder)
    journal.append([_record(1), _record(2)])
    journal.close()
    segment = next(folder.glob("*.jsonl"))
    with segment.open("ab") as fh:  # a write cut short by kill -9: never answered
        fh.write(b'{"request_id": "r99999", "ts": 1')
    store = SQLitePredictionStore(tmp_path / "p.db")
    assert replay_journal(folder, store) == 2
    assert [r["request_id"] for r in store.read("dep")] == ["r00001", "r00002"]
    with pytest.raises(ServingError, match="No prediction store for 'mysql'"):
        open_prediction_store("mysql://localhost/db")


def test_log_writer_and_reader(project: Path) -> None:
    config = load_config(project)
    folder = deployments_root(config.mlops_dir) / "dep"
    folder.mkdir(parents=True)
    url = f"sqlite:///{project / '.mlops' / 'predictions.db'}"
    writer = LogWriter(folder / JOURNAL_DIR, url, interval=0.05)
    for i in range(30):
        writer.append([_record(i)])
    frame = read_predictions("dep", config=config)  # journal still live: read, not moved
    assert len(frame) == 60
    writer.close()
    assert not list((folder / JOURNAL_DIR).glob("*.jsonl"))
    frame = read_predictions("dep", config=config)
    assert len(frame) == 60
    assert list(frame.columns[:10]) == [
        "request_id", "row", "timestamp", "deployment", "model_name", "model_version",
        "run_id", "role", "endpoint", "latency_ms",
    ]  # fmt: skip
    assert frame.x.tolist()[:4] == [0, 0.5, 1, 1.5]
    assert frame.kind.tolist()[:2] == ["a", "b"]
    assert frame.prediction.tolist()[:4] == [0, 1, 1, 2]
    window = read_predictions("dep", since=1_700_000_010.0, until=1_700_000_020.0, config=config)
    assert sorted(set(window.request_id)) == [f"r{i:05d}" for i in range(10, 20)]
    assert list(read_predictions("dep", limit=3, config=config).request_id.unique()) == [
        "r00027", "r00028", "r00029",
    ]  # fmt: skip


def test_stores_are_pluggable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_mlops.predlog import base

    monkeypatch.setattr(base, "_STORES", dict(base._STORES))  # undo the registration
    seen: list[str] = []

    def factory(url: str) -> SQLitePredictionStore:
        seen.append(url)
        return SQLitePredictionStore(tmp_path / "custom.db")

    register_prediction_store("custom", factory)
    store = open_prediction_store("custom://anything")
    store.write([_record(1)])
    store.write([_record(1)])  # idempotent per request id
    assert [r["request_id"] for r in store.read("dep")] == ["r00001"]
    assert seen == ["custom://anything"]
    assert os.path.exists(tmp_path / "custom.db")
