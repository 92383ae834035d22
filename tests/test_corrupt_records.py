"""A bad record never hides the good ones (issue 17): each record is damaged on disk, in a
real store or file, and read back through the real CLI, API and server-extension views.

A damaged record is listed or flagged with its path and the fix; the others are shown as
before; no command answers with a traceback or a 500.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jupyter_mlops.cli import main
from jupyter_mlops.config import load_config
from tests.helpers import kill_process_group, register_iris


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
