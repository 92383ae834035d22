"""A bad record never hides the good ones (issue 17): each record is damaged on disk, in a
real store or file, and read back through the real CLI, API and server-extension views.

A damaged record is listed or flagged with its path and the fix; the others are shown as
before; no command answers with a traceback or a 500.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_mlops import client as client_module
from jupyter_mlops.cli import main
from jupyter_mlops.config import load_config
from tests.helpers import kill_process_group, register_iris

REPO = Path(__file__).resolve().parents[1]


def _truncate(path: Path, keep: float = 0.5) -> None:
    text = path.read_bytes()
    path.write_bytes(text[: int(len(text) * keep)])


# -- deployments ---------------------------------------------------------------------------
@pytest.mark.slow
def test_damaged_deployment_state_is_listed_stopped_and_its_predictions_read(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_mlops import serving
    from jupyter_mlops._util.processes import pid_alive
    from jupyter_mlops.server.views import SidebarViews

    config = load_config()
    register_iris(config, 5, 0, "champion")
    good = serving.deploy("iris-rf@champion", name="good", config=config)
    bad = serving.deploy("iris-rf@champion", name="bad", config=config)
    try:
        from sklearn.datasets import load_iris

        assert bad.predict(load_iris(as_frame=True).data.head(3))["predictions"]
        state = bad.folder / "state.json"
        _truncate(state)
        capsys.readouterr()

        assert main(["deploy", "list"]) == 0
        out = capsys.readouterr().out
        assert "No deployments." not in out
        assert "good" in out and "running" in out
        assert "corrupt" in out and str(state) in out and "deploy start MODEL --name bad" in out

        assert main(["deploy", "list", "--json"]) == 0
        listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
        assert listed["good"]["problem"] is None
        assert listed["bad"]["status"] == "corrupt" and str(state) in listed["bad"]["problem"]
        assert listed["bad"]["pid"] == bad.pid  # found from what is left of the file

        views = SidebarViews(project, config)
        panel = views.deployments()
        assert [d["name"] for d in panel["deployments"]] == ["good"]
        assert "bad" in panel["message"] and panel["damaged"][0]["path"] == str(state)

        assert main(["deploy", "status", "bad"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and str(state) in err

        # The predictions are in predictions.db, not in the state: they can still be read.
        frame = serving.read_predictions("bad", config=config)
        assert len(frame) >= 1

        # Nothing left of the state: the server is found from its workers' acknowledgements.
        state.write_text("{")
        assert main(["deploy", "list", "--json"]) == 0
        listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
        assert listed["bad"]["pid"] == bad.pid

        assert main(["deploy", "stop", "bad"]) == 1
        err = capsys.readouterr().err
        assert "stopped its server" in err and err.count("\n") == 1
        for _ in range(100):
            if not pid_alive(bad.pid or 0):
                break
            time.sleep(0.05)
        assert not pid_alive(bad.pid or 0)

        # A mistyped field is damage too; a new deployment under the name is the fix.
        state.write_text(json.dumps({"name": "bad", "primary": {}, "port": "eighty"}))
        assert main(["deploy", "status", "bad"]) == 1
        assert "'port'" in capsys.readouterr().err
        again = serving.deploy("iris-rf@champion", name="bad", config=config)
        kill_process_group(again.pid)
        assert main(["deploy", "list", "--json"]) == 0
        assert all(d["problem"] is None for d in json.loads(capsys.readouterr().out))
    finally:
        serving.stop("good", config=config)
        kill_process_group(good.pid)
        kill_process_group(bad.pid)


# -- the registry --------------------------------------------------------------------------
def _two_versions(name: str) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import jupyter_mlops

    X, y = load_iris(return_X_y=True, as_frame=True)
    for c in (0.5, 1.0):
        with jupyter_mlops.track(experiment="records") as run:
            run.log_model(LogisticRegression(C=c, max_iter=300).fit(X, y), "model", X=X)
        jupyter_mlops.register(run.run_id, name=name, aliases=["champion"])


def test_odd_model_and_damaged_history_never_hide_the_rest(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_mlops.client import client
    from jupyter_mlops.server.views import SidebarViews

    config = load_config()
    _two_versions("iris")
    mlflow_client = client(config)
    mlflow_client.create_registered_model("my model")  # legal in MLflow, refused here
    log = json.loads(mlflow_client.get_registered_model("iris").tags["mlops.alias.champion.log"])
    damaged = [{"alias": "champion", "surprise": [1]}, *log, 7]
    mlflow_client.set_registered_model_tag("iris", "mlops.alias.champion.log", json.dumps(damaged))
    mlflow_client.set_registered_model_tag("iris", "mlops.history.0001", '{"model": "iris",')
    capsys.readouterr()

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "iris " in out and "my model" in out and "rename_registered_model" in out
    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["iris"]["problem"] is None and "not here" in listed["my model"]["problem"]

    panel = {m["name"]: m for m in SidebarViews(project, config).models()}
    assert set(panel) == {"iris", "my model"}
    assert "mlops.history.0001" in panel["iris"]["problem"]
    assert len(panel["iris"]["history"]) == 2  # the two good events are still shown

    assert main(["history", "iris"]) == 0
    out = capsys.readouterr().out
    assert out.count("register") == 2 and out.count("note: ") == 3
    assert main(["history", "iris", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 2
    assert captured.err.count("jupyter-mlops: warning: ") == 3 and "Traceback" not in captured.err

    assert main(["rollback", "iris", "champion"]) == 0
    out = capsys.readouterr().out
    assert "version 2 -> 1" in out and "note: " in out
    tags = mlflow_client.get_registered_model("iris").tags
    assert json.loads(tags["mlops.alias.champion.damaged.0"]) == damaged  # kept, not lost
    assert str(mlflow_client.get_model_version_by_alias("iris", "champion").version) == "1"


# -- pipeline runs and buffered runs -------------------------------------------------------
def _pipeline_run(status: str = "SUCCEEDED") -> Path:
    from jupyter_mlops.pipelines.records import PipelineRun, StepRun, new_run_id, runs_root

    run_id = new_run_id()
    return PipelineRun(
        run_id,
        "train",
        "pipeline.yaml",
        str(runs_root(load_config()) / run_id),
        status=status,
        steps={"fit": StepRun("fit", "fit.ipynb", "local", status=status, metrics={"acc": 0.9})},
        ended=1.0,
    ).save()


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: _truncate(p),
        lambda p: p.write_text(
            p.read_text().replace('"started": ', '"started": "yesterday", "x":')
        ),
        lambda p: p.write_text(p.read_text().replace('"acc": 0.9', '"acc": "high"')),
        lambda p: p.write_text("[]"),
    ],
    ids=["truncated", "started-text", "metric-text", "a-list"],
)
def test_damaged_pipeline_record_is_flagged_and_the_others_listed(
    project: Path, capsys: pytest.CaptureFixture[str], damage
) -> None:
    from jupyter_mlops.server.views import SidebarViews

    good = _pipeline_run()
    bad = _pipeline_run("FAILED")
    damage(bad)

    assert main(["pipeline", "history"]) == 0
    out = capsys.readouterr().out
    assert good.parent.name in out and "corrupt" in out and str(bad) in out
    assert main(["pipeline", "history", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[good.parent.name]["status"] == "SUCCEEDED"
    assert rows[bad.parent.name]["status"] == "corrupt"

    views = SidebarViews(project, load_config())
    panel = views.pipelines()
    assert [r["run_id"] for r in panel["runs"]] == [good.parent.name]
    assert str(bad) in panel["message"] and panel["damaged"][0]["path"] == str(bad)
    from jupyter_mlops.errors import PipelineError

    with pytest.raises(PipelineError, match="is damaged"):
        views.pipeline(bad.parent.name)


def test_damaged_buffered_run_is_listed_by_retry(
    ip, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    ip.run_cell_magic("track", "--quiet -e buffered", "acc = 0.5")
    ip.run_cell_magic("track", "--quiet -e buffered", "acc = 0.7")
    capsys.readouterr()
    from jupyter_mlops.tracking.buffer import pending, pending_dir

    first, second = pending(load_config())
    _truncate(second.folder / "run.json")

    assert main(["retry", "--list"]) == 0
    out = capsys.readouterr().out
    assert first.id in out and "corrupt" in out and str(second.folder) in out
    assert main(["retry", "--list", "--json"]) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[first.id]["metrics"] == {"acc": 0.5}
    assert listed[second.id]["status"] == "corrupt" and "delete" in listed[second.id]["reason"]
    assert pending_dir(load_config()) == first.folder.parent


# -- damaged SQLite stores -----------------------------------------------------------------
def _garble(path: Path) -> None:
    """Overwrite the middle of ``path`` (all but its first and last eighth) with garbage,
    as a bad disk or a bad copy would."""
    data = bytearray(path.read_bytes())
    start, end = len(data) // 8, len(data) - len(data) // 8
    data[start:end] = bytes((i * 7 + 3) % 256 for i in range(end - start))
    path.write_bytes(bytes(data))


def _one_line_naming(err: str, path: Path) -> None:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and "sqlalchemy" not in err.lower()
    assert str(path) in err and ".recover" in err and "jupyter-mlops doctor" in err


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_garble, _truncate], ids=["garbled", "truncated"])
def test_damaged_databases_are_named_with_the_way_to_recover(
    ip, project: Path, capsys: pytest.CaptureFixture[str], damage
) -> None:
    from IPython.core.error import UsageError
    from sklearn.datasets import load_iris

    from jupyter_mlops import serving
    from jupyter_mlops.server.handlers import error_reply
    from jupyter_mlops.server.views import SidebarViews

    config = load_config()
    register_iris(config, 5, 0, "champion")
    X = load_iris(as_frame=True).data
    dep = serving.deploy("iris-rf@champion", name="iris", config=config)
    try:
        for start in range(0, 150, 10):
            dep.predict(X.iloc[start : start + 10])
    finally:
        serving.stop("iris", config=config)
        kill_process_group(dep.pid)
    capsys.readouterr()

    predictions = config.mlops_dir / "predictions.db"
    damage(predictions)
    for argv in (["monitor", "check", "iris"], ["drift", "iris"]):
        assert main(argv) == 1, argv
        _one_line_naming(capsys.readouterr().err, predictions)

    # As a new process (a command, a new kernel) finds it: written back, no client open.
    store = config.mlops_dir / "mlflow.db"
    client_module._client_for.cache_clear()
    gc.collect()
    with contextlib.closing(sqlite3.connect(store)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(store)
    for argv in (["runs"], ["models"]):
        cli = subprocess.run(
            [sys.executable, "-m", "jupyter_mlops.cli", *argv],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"},
        )
        assert cli.returncode == 1, argv
        _one_line_naming(cli.stderr, store)
    with pytest.raises(UsageError, match=r"mlflow\.db is damaged"):
        ip.run_cell_magic("track", "--quiet -e damaged", "acc = 0.5")
    with pytest.raises(Exception) as raised:  # what the sidebar's handler answers with
        SidebarViews(project, config).models()
    status, body = error_reply(raised.value, config)
    assert status == 503 and str(store) in body["message"]


# -- jupyter-mlops doctor ------------------------------------------------------------------
def test_doctor_names_every_damaged_store_and_file(
    ip, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dvc.repo import Repo

    from jupyter_mlops.client import client

    config = load_config()
    _two_versions("iris")
    good_record = _pipeline_run()
    assert main(["doctor"]) == 0
    assert "Everything is sound." in capsys.readouterr().out

    # One damaged record of each kind, on disk and in the store.
    client(config).create_registered_model("my model")
    bad_record = _pipeline_run("FAILED")
    _truncate(bad_record)
    state = config.mlops_dir / "deployments" / "gone" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"name": "gone", "primary": {"name": "iris", "ver')
    (project / "data.csv").write_text("a,b\n1,2\n")
    with Repo.init(str(project), no_scm=True) as repo:
        repo.add(str(project / "data.csv"))
    md5 = (project / "data.csv.dvc").read_text().split("md5: ")[1].split()[0]
    (project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink()
    with monkeypatch.context() as offline:
        offline.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
        ip.run_cell_magic("track", "--quiet -e buffered", "acc = 0.5")
        from jupyter_mlops.tracking.buffer import pending

        (buffered,) = pending(load_config())
    (buffered.folder / "run.json").write_text("{")
    capsys.readouterr()

    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    kinds = {p["kind"]: p for p in report["problems"]}
    assert set(kinds) == {
        "model name",
        "pipeline run record",
        "deployment state",
        ".dvc pointer",
        "buffered run",
    }
    assert kinds["pipeline run record"]["path"] == str(bad_record)
    assert kinds["deployment state"]["path"] == str(state)
    assert kinds[".dvc pointer"]["path"] == str(project / "data.csv.dvc")
    assert "dvc pull" in kinds[".dvc pointer"]["fix"]
    assert kinds["buffered run"]["path"] == str(buffered.folder)
    assert str(good_record) not in json.dumps(report["problems"])

    store = config.mlops_dir / "mlflow.db"
    client_module._client_for.cache_clear()
    gc.collect()
    with contextlib.closing(sqlite3.connect(store)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _garble(store)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED  database {store} is damaged" in out and ".recover" in out
    assert "5 problems found." in out and "registered models: not checked" in out
    shown = ip.run_line_magic("mlops", "doctor")
    assert not shown.ok and str(store) in str(shown)
