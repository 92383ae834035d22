"""Shared fixtures: a fresh project folder per test and one real IPython shell."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

# `import dvc` binds DVC's log handlers to the sys.stdout/stderr of that moment. Imported
# first inside a test using capsys, they would keep that test's stream, closed after it,
# and every later DVC log line would fail; imported here, they get the session's stream.
import dvc  # noqa: F401


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty jupyter-mlops project (``.mlops/``) as the working directory."""
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("JUPYTER_MLOPS_NOTEBOOK", raising=False)
    # DVC keeps per-repo state in the system temp dir unless told otherwise.
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    yield root
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def git_project(project: Path) -> Path:
    """``project`` as a git repository with one commit."""
    git(project, "init", "-q")
    (project / "README.md").write_text("demo\n")
    (project / ".gitignore").write_text(".mlops/\n")
    git(project, "add", "README.md", ".gitignore")
    git(project, "commit", "-q", "-m", "init")
    return project


@pytest.fixture(scope="session")
def _shell():  # type: ignore[no-untyped-def]
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "jupyter_mlops")
    return shell


@pytest.fixture
def ip(_shell, project):  # type: ignore[no-untyped-def]
    """The real IPython shell with the extension loaded and a clean namespace."""
    _shell.reset(new_session=False)
    _shell.run_cell(
        "import pandas as pd\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "from sklearn.metrics import accuracy_score\n"
        "from sklearn.model_selection import train_test_split\n"
    )
    return _shell


IRIS_CELL = """\
df = pd.read_csv("data/iris.csv")
X_train, X_test, y_train, y_test = train_test_split(
    df.drop(columns="target"), df.target, test_size=0.2, random_state=0
)
n_estimators = 100
model = RandomForestClassifier(n_estimators=n_estimators, random_state=42)
model.fit(X_train, y_train)
acc = accuracy_score(y_test, model.predict(X_test))
"""


@pytest.fixture
def iris_csv(project: Path) -> Path:
    from sklearn.datasets import load_iris

    path = project / "data" / "iris.csv"
    path.parent.mkdir(exist_ok=True)
    load_iris(as_frame=True).frame.to_csv(path, index=False)
    return path
