"""What a tracked run records so it can be reproduced (#19): the reproduction tag, the
``%%track`` line, the earlier cells the cell depends on (``mlops/context.py``).

Real IPython shell, real MLflow SQLite store, and a real kernel through papermill for the
notebook history; read back with plain MLflow.
"""

from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

import jupyter_mlops
from jupyter_mlops.commands import track as track_command
from jupyter_mlops.config import load_config
from jupyter_mlops.reproduction import result
from jupyter_mlops.tracking import cell, lifecycle
from jupyter_mlops.tracking.environment import REQUIREMENTS_ARTIFACT
from jupyter_mlops.tracking.risks import TAG_RISKS

from .conftest import IRIS_CELL
from .test_kernel import _notebook


def _client() -> MlflowClient:
    return MlflowClient(load_config().tracking_uri)


def _runs(experiment: str) -> list:
    client = _client()
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, experiment
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _artifact(run_id: str, path: str) -> str | None:
    client = _client()
    if path not in {a.path for a in client.list_artifacts(run_id, str(Path(path).parent))}:
        return None
    with tempfile.TemporaryDirectory() as folder:
        return Path(client.download_artifacts(run_id, path, folder)).read_text()


def test_tracking_spells_the_reproduce_constants_as_the_reproduce_package_does() -> None:
    # tracking/ sits below reproduce/ in the layers: it repeats the strings, kept equal here.
    assert lifecycle.ENV_REPRODUCES == result.ENV_REPRODUCES
    assert lifecycle.TAG_REPRODUCES == result.TAG_REPRODUCES


def test_a_reproduction_kernel_tags_its_run_with_the_original(
    ip, iris_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ip.run_cell_magic("track", "-e plain --quiet", "a = 1")
    monkeypatch.setenv(result.ENV_REPRODUCES, "0123abcd")
    ip.run_cell_magic("track", "-e again --quiet", "a = 1")
    (plain,), (again,) = _runs("plain"), _runs("again")
    assert result.TAG_REPRODUCES not in plain.data.tags
    assert again.data.tags[result.TAG_REPRODUCES] == "0123abcd"


def test_the_track_line_is_recorded_as_typed(ip, iris_csv: Path) -> None:
    line = "-e iris --data data/iris.csv --name 'first one' --quiet"
    ip.run_cell_magic("track", line, IRIS_CELL)
    ip.run_cell_magic("track", "", "b = 2")  # no options: an empty line, still recorded
    (run,) = _runs("iris")
    assert run.data.tags[lifecycle.TAG_TRACK_ARGS] == line
    assert run.info.run_name == "first one"
    (bare,) = [r for r in _runs("Default")]
    assert bare.data.tags[lifecycle.TAG_TRACK_ARGS] == ""


def test_the_api_without_a_line_or_history_records_neither(project: Path) -> None:
    ns: dict[str, object] = {}
    result_ = jupyter_mlops.track_code("x = 3", ns, lambda: exec("x = 3", ns), experiment="api")
    run = _client().get_run(result_.run.run_id)
    assert lifecycle.TAG_TRACK_ARGS not in run.data.tags
    assert _artifact(run.info.run_id, cell.CONTEXT_ARTIFACT) is None


def test_context_holds_the_earlier_cells_the_tracked_cell_depends_on(ip, project: Path) -> None:
    """Cells run with history, as a notebook runs them: the context has the imports, the
    frame, its later change and the helper, not the unrelated cell, with no IPython syntax."""
    first = ip.execution_count
    cells = [
        "import numpy as np\nimport pandas as pd\n"
        "from sklearn.linear_model import LinearRegression",
        "!echo shell\n%matplotlib inline\n"
        "df = pd.DataFrame({'x': np.arange(10.0)})\ndf['y'] = 2 * df.x",
        "unrelated = [1, 2, 3]\nprint(sum(unrelated))",
        "def features(frame):\n    return frame[COLUMNS]\nCOLUMNS = ['x']",
        "%%time\ndf['y'] = df.y + 1",
    ]
    for source in cells:
        assert ip.run_cell(source, store_history=True).success
    tracked = (
        "model = LinearRegression().fit(features(df), df.y)\nr2 = model.score(features(df), df.y)\n"
    )
    assert ip.run_cell(f"%%track -e ctx --quiet\n{tracked}", store_history=True).success
    (run,) = _runs("ctx")
    context = _artifact(run.info.run_id, cell.CONTEXT_ARTIFACT)
    assert context is not None
    numbers = [first + i for i in (0, 1, 3, 4)]
    assert [line for line in context.splitlines() if line.startswith("# In[")] == [
        f"# In[{n}]" for n in numbers
    ]
    assert "unrelated" not in context
    assert "%" not in context and "!echo" not in context
    assert "df['y'] = df.y + 1" in context
    # It is plain Python that rebuilds what the cell needs, in a fresh namespace.
    fresh: dict[str, object] = {}
    exec(compile(context, "context.py", "exec"), fresh)
    exec(compile(tracked, "cell.py", "exec"), fresh)
    assert fresh["r2"] == pytest.approx(ip.user_ns["r2"])


@pytest.mark.slow
def test_a_papermill_kernel_records_the_context_of_its_tracked_cell(project: Path) -> None:
    nb = _notebook(
        project / "ctx.ipynb",
        "%load_ext jupyter_mlops",
        "import pandas as pd\nfrom sklearn.tree import DecisionTreeClassifier",
        "df = pd.DataFrame({'a': [0, 1, 2, 3, 4, 5], 'label': [0, 0, 0, 1, 1, 1]})",
        "plot_me = df.describe()\nplot_me",
        "def split(frame):\n    return frame[['a']], frame.label",
        "%%track -e nb-ctx --name tree\nX, y = split(df)\n"
        "clf = DecisionTreeClassifier(random_state=0).fit(X, y)\nacc = clf.score(X, y)",
    )
    from jupyter_mlops.pipelines.execute import execute_notebook

    execute_notebook(nb, project / "ctx.out.ipynb")
    (run,) = _runs("nb-ctx")
    assert run.data.tags[lifecycle.TAG_TRACK_ARGS] == "-e nb-ctx --name tree"
    context = _artifact(run.info.run_id, cell.CONTEXT_ARTIFACT)
    assert context is not None
    assert "load_ext" not in context and "plot_me" not in context
    headers = [line for line in context.splitlines() if line.startswith("# In[")]
    assert headers == ["# In[2]", "# In[3]", "# In[5]"]
    fresh: dict[str, object] = {}
    exec(compile(context, "context.py", "exec"), fresh)
    assert list(fresh["split"](fresh["df"])[1]) == [0, 0, 0, 1, 1, 1]  # type: ignore[operator,index]


def test_requirements_pin_what_the_cell_used_with_what_that_requires(ip, iris_csv: Path) -> None:
    import joblib
    import numpy
    import pandas
    import sklearn

    # An import inside a function binds nothing in the namespace: read off the code.
    cell_ = IRIS_CELL + "def later():\n    import yaml\n    return yaml\n"
    ip.run_cell_magic("track", "-e reqs --data data/iris.csv --quiet", cell_)
    (run,) = _runs("reqs")
    text = _artifact(run.info.run_id, REQUIREMENTS_ARTIFACT)
    assert text is not None
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert f"# python {platform.python_version()}" in header
    pins = dict(line.split("==") for line in text.splitlines() if not line.startswith("#"))
    assert pins["scikit-learn"] == sklearn.__version__  # used by the cell
    assert pins["pandas"] == pandas.__version__ and pins["numpy"] == numpy.__version__
    assert pins["joblib"] == joblib.__version__  # required by scikit-learn
    assert "scipy" in pins and "threadpoolctl" in pins
    assert "PyYAML" in pins  # imported in the code only
    assert "jupyter-mlops" not in pins and "mlflow" not in pins  # the toolkit's own
    assert list(pins) == sorted(pins, key=str.lower)
    # environment.json is unchanged: the namespace's packages as the cell started
    env = json.loads(_artifact(run.info.run_id, "mlops/environment.json") or "{}")
    assert env["packages"]["scikit-learn"] == sklearn.__version__


def test_an_unseeded_estimator_is_recorded_shown_and_warned_once(
    ip, iris_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    track_command.WARNED.clear()
    unseeded = IRIS_CELL.replace(", random_state=42", "")
    shown = []
    ip.run_cell_magic("track", "-e risky --data data/iris.csv --quiet", unseeded)
    shown.append(capsys.readouterr().err)
    ip.run_cell_magic("track", "-e risky --data data/iris.csv", unseeded)
    out = capsys.readouterr()
    shown.append(out.err)
    first, second = _runs("risky")
    risks = json.loads(first.data.tags[TAG_RISKS])
    assert [(r["kind"], r["subject"]) for r in risks] == [("unseeded", "RandomForestClassifier")]
    assert second.data.tags[TAG_RISKS] == first.data.tags[TAG_RISKS]
    warning = "jupyter-mlops: this run may not reproduce: RandomForestClassifier is called"
    assert [err.count(warning) for err in shown] == [1, 0]  # once per kernel
    assert "may not reproduce: RandomForestClassifier" in out.out  # the card's notes
    # The same cell seeded (the iris cell, train_test_split seeded too) records no risk.
    ip.run_cell_magic("track", "-e seeded --data data/iris.csv --quiet", IRIS_CELL)
    (seeded,) = _runs("seeded")
    assert TAG_RISKS not in seeded.data.tags
    assert capsys.readouterr().err == ""


def test_an_unsnapshotted_read_is_recorded_and_a_snapshotted_one_is_not(
    ip, iris_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    track_command.WARNED.clear()
    ip.run_cell_magic("track", "-e reads --quiet", IRIS_CELL)
    ip.run_cell_magic("track", "-e reads --quiet --data data/iris.csv", IRIS_CELL)
    loose, snapped = _runs("reads")
    risks = json.loads(loose.data.tags[TAG_RISKS])
    assert [(r["kind"], r["subject"]) for r in risks] == [("unsnapshotted_read", "data/iris.csv")]
    assert "add --data data/iris.csv" in risks[0]["message"]
    assert TAG_RISKS not in snapped.data.tags
    assert capsys.readouterr().err.count("data/iris.csv is read but not recorded") == 1


def test_a_failure_in_the_risk_check_is_logged_and_the_run_recorded(
    ip, project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A callable whose signature cannot be read raises inside find_risks.
    ip.run_cell(
        "class Odd:\n"
        "    @property\n"
        "    def __signature__(self):\n"
        "        raise RuntimeError('no signature here')\n"
        "    def __call__(self, random_state=None):\n"
        "        return 1\n"
        "odd = Odd()\n"
    )
    ip.run_cell_magic("track", "-e odd --quiet", "acc = odd() * 0.5")
    (run,) = _runs("odd")
    assert run.info.status == "FINISHED" and run.data.metrics["acc"] == 0.5
    assert ip.user_ns["acc"] == 0.5
    assert TAG_RISKS not in run.data.tags
    assert run.data.tags[lifecycle.TAG_TRACK_ARGS] == "-e odd --quiet"  # recorded all the same
    assert _artifact(run.info.run_id, REQUIREMENTS_ARTIFACT) is not None
    assert any("risks not recorded" in r.getMessage() for r in caplog.records)
