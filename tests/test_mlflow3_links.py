"""MLflow 3's own links, read back through MlflowClient from a real SQLite store: a
registered version names its logged model (and the logged model its versions), data
files are the run's dataset inputs, alias moves are readable tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import jupyter_mlops
from jupyter_mlops.config import load_config
from jupyter_mlops.data import DataSnapshot
from jupyter_mlops.tracking.file_datasets import file_dataset

X, Y = load_iris(return_X_y=True, as_frame=True)


def _client() -> MlflowClient:
    return MlflowClient(load_config().tracking_uri)


def _run(*, data: list[str] | None = None, acc: float = 0.9) -> str:
    with jupyter_mlops.track(experiment="links") as run:
        if data:
            run.log_data(data)
        run.log_metrics({"accuracy": acc})
        run.log_model(LogisticRegression(max_iter=300).fit(X, Y), "model", X=X)
    return run.run_id


def _inputs(run_id: str) -> dict[str, tuple[object, dict[str, str]]]:
    """Name -> (dataset, input tags) of a run's dataset inputs, as MLflow returns them."""
    run = _client().get_run(run_id)
    return {
        i.dataset.name: (i.dataset, {t.key: t.value for t in i.tags})
        for i in run.inputs.dataset_inputs
    }


def test_version_links_its_logged_model_both_ways(project: Path) -> None:
    run_id = _run()
    reg = jupyter_mlops.register(run_id, name="links-model")
    jupyter_mlops.register(_run(acc=0.95), name="links-model")
    client = _client()
    version = client.get_model_version("links-model", reg.version)
    (output,) = client.get_run(run_id).outputs.model_outputs
    # The SQLite registry keeps the logged model in the version's source (not model_id).
    assert version.run_id == run_id
    assert version.source == f"models:/{output.model_id}"
    logged = client.get_logged_model(output.model_id)
    assert logged.source_run_id == run_id
    # The logged model's source is the run's (the notebook), not the kernel's launcher.
    run_tags = client.get_run(run_id).data.tags
    assert logged.tags["mlflow.source.name"] == run_tags["mlflow.source.name"]
    # What mlflow.register_model writes, and the UI's logged-model page reads.
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [
        {"name": "links-model", "version": 1}
    ]
    # A second registration of the same logged model is appended, not overwritten.
    jupyter_mlops.register(run_id, name="links-other")
    links = json.loads(client.get_logged_model(output.model_id).tags["mlflow.modelVersions"])
    assert links == [{"name": "links-model", "version": 1}, {"name": "links-other", "version": 1}]
    found = client.search_model_versions(f"run_id = '{run_id}'")
    assert sorted((v.name, int(v.version)) for v in found) == [
        ("links-model", 1),
        ("links-other", 1),
    ]


def test_data_files_are_dataset_inputs_with_dvc_digest(project: Path, iris_csv: Path) -> None:
    notes = project / "data" / "notes.txt"
    notes.write_text("not a table\n")
    run_id = _run(data=["data/iris.csv", "data/notes.txt"])
    snaps = {s["path"]: s for s in json.loads(_client().get_run(run_id).data.tags["mlops.data"])}
    inputs = _inputs(run_id)
    # The data files, and the in-memory frame the model was fitted on, side by side.
    assert set(inputs) == {"iris.csv", "notes.txt", "model-training"}
    iris, tags = inputs["iris.csv"]
    assert iris.digest == snaps["data/iris.csv"]["md5"]
    assert iris.source_type == "local"
    assert json.loads(iris.source) == {"uri": "data/iris.csv"}
    assert tags == {"mlflow.data.context": "training", "mlops.dvc.path": "data/iris.csv"}
    profile = json.loads(iris.profile)
    assert (profile["num_rows"], profile["num_columns"]) == (150, 5)
    assert profile["size_bytes"] == iris_csv.stat().st_size
    columns = [c["name"] for c in json.loads(iris.schema)["mlflow_colspec"]]
    assert columns == [*X.columns, "target"]
    text, _ = inputs["notes.txt"]
    assert text.digest == snaps["data/notes.txt"]["md5"] and text.schema is None
    # The profile is cached by content: a second run on the same data reads nothing.
    cached = project / ".mlops" / "datasets" / f"{iris.digest}.json"
    assert json.loads(cached.read_text())["profile"]["num_rows"] == 150
    cached.write_text(json.dumps({"profile": {"num_rows": 7}}))
    snap = DataSnapshot.from_dict(snaps["data/iris.csv"])
    assert json.loads(file_dataset(snap, load_config()).profile) == {"num_rows": 7}


def test_csv_rows_are_counted_exactly(project: Path) -> None:
    from jupyter_mlops.tracking.file_datasets import _describe_file

    plain = project / "plain.csv"
    plain.write_text("a,b\n" + "".join(f"{i},x{i}\n" for i in range(2500)) + "2500,end")
    quoted = project / "quoted.csv"
    quoted.write_text("a,b\n" + "".join(f'{i},"line\nbreak"\n' for i in range(1200)))
    for path, rows in ((plain, 2501), (quoted, 1200)):
        profile = _describe_file(path, path.stat().st_size)["profile"]
        assert profile["num_rows"] == rows, path


def test_large_csv_has_schema_but_no_row_count(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jupyter_mlops.tracking.file_datasets as file_datasets

    path = project / "data" / "big.csv"
    path.parent.mkdir()
    path.write_text("a,b\n" + "".join(f"{i},{i * 0.5}\n" for i in range(5000)))
    monkeypatch.setattr(file_datasets, "COUNT_ROWS_LIMIT", 1000)  # bytes: the file is larger
    big, _ = _inputs(_run(data=["data/big.csv"]))["big.csv"]
    profile = json.loads(big.profile)
    assert "not counted" in profile["num_rows"] and profile["num_columns"] == 2
    spec = json.loads(big.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in spec] == [("a", "long"), ("b", "double")]


def test_alias_moves_are_one_line_and_one_log_per_alias(project: Path) -> None:
    for acc in (0.8, 0.85, 0.9):
        jupyter_mlops.register(_run(acc=acc), name="moves")
    jupyter_mlops.promote("moves/1", "champion")
    jupyter_mlops.promote("moves/2", "champion")
    jupyter_mlops.promote("moves/3", "champion", gate="accuracy > 0.85")
    jupyter_mlops.rollback("moves", "champion")
    jupyter_mlops.promote("moves/3", "staging")
    client = _client()
    tags = client.get_registered_model("moves").tags
    # The model's page: per alias one line for people and one log; no tag per move.
    assert sorted(k for k in tags if k.startswith("mlops.")) == [
        "mlops.alias.champion",
        "mlops.alias.champion.log",
        "mlops.alias.staging",
        "mlops.alias.staging.log",
    ]
    line = tags["mlops.alias.champion"]
    assert line.startswith("v2 since ") and "rollback by " in line and "(was v3)" in line
    assert line.endswith("4 moves in mlops.alias.champion.log")
    log = json.loads(tags["mlops.alias.champion.log"])
    assert [(e["action"], e["previous"], e["version"]) for e in log] == [
        ("promote", None, "1"),
        ("promote", "1", "2"),
        ("promote", "2", "3"),
        ("rollback", "3", "2"),
    ]
    assert log[2]["gate"]["expression"] == "accuracy > 0.85"
    # Each version's page says when it held the alias.
    v2 = client.get_model_version("moves", "2").tags["mlops.alias.champion"]
    v3 = client.get_model_version("moves", "3").tags
    assert v2.startswith("champion since ") and "rollback" in v2
    assert v3["mlops.alias.champion"].startswith("champion until ")
    assert v3["mlops.alias.champion"].endswith("to v2")
    assert v3["mlops.alias.staging"].startswith("staging since ")
    assert not [k for k in v3 if k.startswith(("mlops.promote.", "mlops.rollback."))]
    assert [e.alias for e in jupyter_mlops.history("moves")] == ["champion"] * 4 + ["staging"]


def test_long_log_is_split_and_read_whole(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_mlops.registry import alias_log

    monkeypatch.setattr(alias_log, "TAG_LIMIT", 400)  # a few events per tag
    for _ in range(2):
        jupyter_mlops.register(_run(), name="long")
    for i in range(8):
        jupyter_mlops.promote(f"long/{1 + i % 2}", "champion")
    tags = _client().get_registered_model("long").tags
    parts = sorted(k for k in tags if k.startswith("mlops.alias.champion.log"))
    assert len(parts) >= 3 and all(len(tags[k]) <= 400 for k in parts)
    assert all(isinstance(json.loads(tags[k]), list) for k in parts)  # each part is JSON
    versions = [e.version for e in jupyter_mlops.history("long")]
    assert versions == ["1", "2"] * 4
    assert str(_client().get_model_version_by_alias("long", "champion").version) == "2"
    jupyter_mlops.rollback("long", "champion")
    assert str(_client().get_model_version_by_alias("long", "champion").version) == "1"


def test_history_of_older_projects_is_still_read(project: Path) -> None:
    """A model whose moves were written as one ``mlops.history.*`` tag each (before the
    alias log) keeps its history, and new moves continue it."""
    for _ in range(3):
        jupyter_mlops.register(_run(), name="old")
    client = _client()
    for i, version in enumerate(["1", "2"]):
        event = {
            "model": "old",
            "alias": "champion",
            "version": version,
            "previous": None if i == 0 else "1",
            "action": "promote",
            "time": f"2025-01-0{i + 1}T10:00:00.000000+00:00",
            "user": "old-user",
        }
        client.set_registered_model_tag(
            "old", f"mlops.history.2025010{i + 1}T100000.ab{i}", json.dumps(event)
        )
    client.set_registered_model_alias("old", "champion", "2")
    jupyter_mlops.promote("old/3", "champion")
    events = jupyter_mlops.history("old")
    assert [(e.user == "old-user", e.version) for e in events] == [
        (True, "1"),
        (True, "2"),
        (False, "3"),
    ]
    tags = client.get_registered_model("old").tags
    assert tags["mlops.alias.champion"].endswith("3 moves in mlops.alias.champion.log")
    jupyter_mlops.rollback("old", "champion")  # walks back into the old tags
    assert str(client.get_model_version_by_alias("old", "champion").version) == "2"
    jupyter_mlops.rollback("old", "champion")
    assert str(client.get_model_version_by_alias("old", "champion").version) == "1"


def test_buffered_run_replays_its_dataset_inputs(project: Path, iris_csv: Path) -> None:
    """A run that lost its store before logging its data is replayed by ``retry`` with
    the same dataset inputs as a run that never went offline."""
    from jupyter_mlops.tracking import buffer, store

    uri = load_config().tracking_uri
    with jupyter_mlops.track(experiment="buffered") as run:
        run.go_offline("the store went away")  # what a failed store call does
        run.log_data(["data/iris.csv"])
        run.log_model(LogisticRegression(max_iter=300).fit(X, Y), "model", X=X)
    assert run.status == "BUFFERED" and not _inputs(run.orphan_run_id or run.run_id)
    store._DOWN.discard(uri)  # it is back
    (replayed,) = buffer.retry()
    inputs = _inputs(replayed.run_id)
    assert set(inputs) == {"iris.csv", "model-training"}
    md5 = json.loads(_client().get_run(replayed.run_id).data.tags["mlops.data"])[0]["md5"]
    assert inputs["iris.csv"][0].digest == md5
    assert json.loads(inputs["iris.csv"][0].profile)["num_rows"] == 150
