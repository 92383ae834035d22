"""What a tracked run records so it can be reproduced (#19): the reproduction tag, the
``%%track`` line, the earlier cells the cell depends on (``mlops/context.py``).

Real IPython shell, real MLflow SQLite store, and a real kernel through papermill for the
notebook history; read back with plain MLflow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

import jupyter_mlops
from jupyter_mlops.config import load_config
from jupyter_mlops.reproduce import result
from jupyter_mlops.tracking import cell, lifecycle

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
    assert run.data.tags[cell.TAG_TRACK_ARGS] == line
    assert run.info.run_name == "first one"
    (bare,) = [r for r in _runs("Default")]
    assert bare.data.tags[cell.TAG_TRACK_ARGS] == ""


def test_the_api_without_a_line_or_history_records_neither(project: Path) -> None:
    ns: dict[str, object] = {}
    result_ = jupyter_mlops.track_code("x = 3", ns, lambda: exec("x = 3", ns), experiment="api")
    run = _client().get_run(result_.run.run_id)
    assert cell.TAG_TRACK_ARGS not in run.data.tags
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
    assert run.data.tags[cell.TAG_TRACK_ARGS] == "-e nb-ctx --name tree"
    context = _artifact(run.info.run_id, cell.CONTEXT_ARTIFACT)
    assert context is not None
    assert "load_ext" not in context and "plot_me" not in context
    headers = [line for line in context.splitlines() if line.startswith("# In[")]
    assert headers == ["# In[2]", "# In[3]", "# In[5]"]
    fresh: dict[str, object] = {}
    exec(compile(context, "context.py", "exec"), fresh)
    assert list(fresh["split"](fresh["df"])[1]) == [0, 0, 0, 1, 1, 1]  # type: ignore[operator,index]
