"""%deploy and `jupyter-mlops deploy`: thin faces over the serving API, on a real server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import jupyter_mlops
from jupyter_mlops.cli import main


@pytest.mark.slow
def test_deploy_magic_serves_lists_and_stops(ip, capsys, tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    with jupyter_mlops.track(experiment="faces") as run:
        run.log_model(model, "model", X=X)
    jupyter_mlops.register(run.run_id, name="faces-model", aliases=["champion"])

    with pytest.raises(UsageError, match="--list"):
        ip.run_line_magic("deploy", "")
    with pytest.raises(UsageError, match="one of"):
        ip.run_line_magic("deploy", "x --promote --stop")
    with pytest.raises(UsageError, match="faces-model"):
        ip.run_line_magic("deploy", "faces-model@nosuchalias")

    dep = ip.run_line_magic("deploy", "faces-model@champion --name faces --strict-invocations")
    try:
        assert dep.url.startswith("http://127.0.0.1:")
        assert dep.strict_invocations  # /invocations validates as /predict does
        extra = {"dataframe_records": [{**X.iloc[0].to_dict(), "colour": 1.0}]}
        req = urllib.request.Request(
            f"{dep.url}/invocations",
            data=json.dumps(extra).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 422
        assert json.loads(refused.value.read())["error_code"] == "UNEXPECTED_COLUMN"
        rows = X.iloc[:5].to_dict(orient="records")
        req = urllib.request.Request(
            f"{dep.url}/predict",
            data=json.dumps(rows).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["predictions"] == model.predict(X.iloc[:5]).tolist()
        assert "faces" in str(ip.run_line_magic("deploy", "--list"))
        assert main(["deploy", "list"]) == 0
        assert "faces" in capsys.readouterr().out

        csv = tmp_path / "new.csv"
        X.iloc[:20].to_csv(csv, index=False)
        out = tmp_path / "preds.csv"
        ip.run_line_magic("deploy", f"faces-model@champion --batch {csv} --output {out}")
        import pandas as pd

        scored = pd.read_csv(out)
        assert len(scored) == 20
    finally:
        ip.run_line_magic("deploy", "faces --stop")
    assert main(["deploy", "status", "faces"]) == 0
    assert "running" not in capsys.readouterr().out.lower()
