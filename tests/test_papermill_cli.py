"""Notebooks run by the ecosystem's own command lines, not by jupyter-mlops: papermill (with
and without ``--inject-paths``, with ``--cwd`` inside and outside the project, with
parameters), ``jupyter nbconvert --to notebook --execute`` and ``jupyter execute``. Each
starts a real kernel whose ``%%track`` cell must record the notebook (not
``ipykernel_launcher.py``), a copy of it, where its output went, papermill's parameters, and
write nothing outside the project's ``.mlops/``. The launcher's command line is also parsed
on its own (no kernel) for the spellings a kernel's parent may have.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient

from jupyter_mlops.tracking.notebook import (
    NOTEBOOK_ENV,
    NotebookSource,
    find_notebook,
    from_command_line,
)

from .conftest import git

BIN = Path(sys.executable).parent
NOTEBOOK = "notebooks/sub/train.ipynb"
TRACK_CELL = """\
%%track
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
X, y = load_iris(return_X_y=True)
model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X, y)
acc = model.score(X, y)
"""


@pytest.fixture
def nb_project(project: Path) -> Path:
    """A git project with ``notebooks/sub/train.ipynb``: a tagged parameters cell (depth,
    label) and a ``%%track`` cell."""
    git(project, "init", "-q")
    params = nbformat.v4.new_code_cell('depth = 2\nlabel = "base"')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext jupyter_mlops"),
        params,
        nbformat.v4.new_code_cell(TRACK_CELL),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = project / NOTEBOOK
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    return project


def run_cli(cwd: Path, *argv: str, pwd: Path | None = None) -> None:
    # PWD as a shell sets it (papermill --cwd moves its own process, not what it was given),
    # or, with ``pwd``, as a program that starts papermill in another folder leaves it.
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PWD": str(pwd or cwd), "PATH": path}
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]


def the_run(root: Path) -> tuple[MlflowClient, object]:
    client = MlflowClient(f"sqlite:///{root / '.mlops' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [r.data.tags.get("mlflow.source.name") for r in runs]
    return client, runs[0]


def assert_notebook_recorded(client: MlflowClient, run: object, root: Path, via: str) -> None:
    tags = run.data.tags  # type: ignore[attr-defined]
    run_id = run.info.run_id  # type: ignore[attr-defined]
    assert tags["mlflow.source.name"] == NOTEBOOK
    assert tags["mlflow.source.type"] == "NOTEBOOK"
    assert tags["mlops.notebook"] == NOTEBOOK
    assert tags["mlops.notebook.input"] == NOTEBOOK
    assert tags["mlops.notebook.via"] == via
    assert [a.path for a in client.list_artifacts(run_id, "mlops/notebook")] == [
        "mlops/notebook/train.ipynb"
    ]
    experiment = client.get_experiment(run.info.experiment_id)  # type: ignore[attr-defined]
    assert experiment.name == "train"  # named after the notebook, not "Default"
    # The model's page in the MLflow UI names the notebook too.
    (model,) = client.search_logged_models([experiment.experiment_id])
    assert model.tags["mlflow.source.name"] == NOTEBOOK
    assert model.tags["mlops.notebook.via"] == via


def assert_only_under_mlops(client: MlflowClient, *folders: Path) -> None:
    mlops = folders[0] / ".mlops"
    for folder in folders:
        strays = [
            p
            for p in folder.rglob("*")
            if p.name in ("mlruns", "mlflow.db") and not p.is_relative_to(mlops)
        ]
        assert strays == []
    for experiment in client.search_experiments():
        location = experiment.artifact_location.removeprefix("file://")
        assert Path(location).is_relative_to(mlops), (experiment.name, location)
    default = client.get_experiment_by_name("Default")
    assert default is not None
    assert default.artifact_location.removeprefix("file://") == str(mlops / "artifacts" / "0")


@pytest.mark.slow
def test_papermill_with_cwd_and_parameters(nb_project: Path, tmp_path: Path) -> None:
    params = nb_project / "params.yaml"
    params.write_text("extra: 1.5\n")
    (nb_project / "out").mkdir()  # papermill writes into an existing folder only
    # a stale PWD (subprocess with cwd=) naming a folder with a notebook of the same name:
    # the launch folder is papermill's own working folder less its --cwd, not PWD
    decoy = tmp_path / "decoy"
    (decoy / NOTEBOOK).parent.mkdir(parents=True)
    (decoy / NOTEBOOK).write_bytes((nb_project / NOTEBOOK).read_bytes())
    run_cli(
        nb_project,
        "papermill",
        NOTEBOOK,
        "out/train.out.ipynb",
        "--cwd",
        "notebooks/sub",
        "-f",
        "params.yaml",
        "-y",
        "label: tuned",
        "-p",
        "depth",
        "3",
        pwd=decoy,
    )
    client, run = the_run(nb_project)
    assert_notebook_recorded(client, run, nb_project, "papermill")
    tags = run.data.tags  # type: ignore[attr-defined]
    assert tags["mlops.notebook.output"] == "out/train.out.ipynb"
    assert json.loads(tags["mlops.papermill.parameters"]) == ["extra", "label", "depth"]
    params_logged = run.data.params  # type: ignore[attr-defined]
    assert (params_logged["depth"], params_logged["label"]) == ("3", "tuned")
    assert params_logged["extra"] == "1.5"
    assert params_logged["max_depth"] == "3"  # the model saw the injected value
    assert_only_under_mlops(client, nb_project)


@pytest.mark.slow
def test_papermill_inject_paths_with_cwd_outside_the_project(
    nb_project: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_cli(
        nb_project,
        "papermill",
        NOTEBOOK,
        "train.out.ipynb",
        "--inject-paths",
        "--cwd",
        str(elsewhere),
    )
    client, run = the_run(nb_project)  # the notebook's project, not the kernel's folder
    assert_notebook_recorded(client, run, nb_project, "papermill")
    tags = run.data.tags  # type: ignore[attr-defined]
    assert tags["mlops.notebook.output"] == "train.out.ipynb"
    assert "mlops.papermill.parameters" not in tags  # the paths are not parameters
    assert "PAPERMILL_INPUT_PATH" not in run.data.params  # type: ignore[attr-defined]
    assert list(elsewhere.iterdir()) == []
    assert_only_under_mlops(client, nb_project, elsewhere)


@pytest.mark.slow
def test_nbconvert_execute(nb_project: Path) -> None:
    run_cli(nb_project, "jupyter", "nbconvert", "--to", "notebook", "--execute", NOTEBOOK)
    client, run = the_run(nb_project)
    assert_notebook_recorded(client, run, nb_project, "nbconvert")
    tags = run.data.tags  # type: ignore[attr-defined]
    assert tags["mlops.notebook.output"] == "notebooks/sub/train.nbconvert.ipynb"
    assert (nb_project / "notebooks/sub/train.nbconvert.ipynb").is_file()
    assert "mlops.papermill.parameters" not in tags
    assert_only_under_mlops(client, nb_project)


@pytest.mark.slow
def test_jupyter_execute(nb_project: Path) -> None:
    run_cli(nb_project, "jupyter", "execute", NOTEBOOK)
    client, run = the_run(nb_project)
    assert_notebook_recorded(client, run, nb_project, "jupyter-execute")
    assert "mlops.notebook.output" not in run.data.tags  # type: ignore[attr-defined]
    assert_only_under_mlops(client, nb_project)


def test_launcher_command_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/x.ipynb", "y.ipynb"):
        (tmp_path / name).write_text("{}")
    monkeypatch.chdir(tmp_path / "a")  # nbconvert starts each kernel in its notebook's folder
    py, bases = "/venv/bin/python", [tmp_path]
    found = from_command_line(
        [py, "-m", "papermill", "a/x.ipynb", "o.ipynb", "-p", "n", "5"], bases
    )
    assert found is not None
    assert (found.path, found.via, found.output) == (
        str(tmp_path / "a/x.ipynb"),
        "papermill",
        str(tmp_path / "o.ipynb"),
    )
    assert dict(found.parameters) == {"n": 5}
    found = from_command_line([py, "/venv/bin/papermill", "a/x.ipynb", "-", "-r", "s", "5"], bases)
    assert found is not None and found.output is None and dict(found.parameters) == {"s": "5"}
    # Two notebooks on one nbconvert command line: the one in the kernel's folder.
    argv = [py, "/venv/bin/jupyter-nbconvert", "--execute", "--to=notebook", "y.ipynb", "a/x.ipynb"]
    found = from_command_line(argv, bases)
    assert found is not None and found.path == str(tmp_path / "a/x.ipynb")
    assert found.output == str(tmp_path / "a/x.nbconvert.ipynb")
    argv = [py, "-m", "nbconvert", "--execute", "--output", "done", "a/x.ipynb"]
    found = from_command_line(argv, bases)
    assert found is not None and found.output == str(tmp_path / "a/done.ipynb")
    argv = [py, "/venv/bin/jupyter-execute", "--inplace", "a/x.ipynb"]
    found = from_command_line(argv, bases)
    assert found is not None and (found.via, found.output) == ("jupyter-execute", found.path)
    assert from_command_line([py, "-m", "ipykernel_launcher", "-f", "k.json"], bases) is None
    assert from_command_line([py, "/venv/bin/jupyter-lab"], bases) is None


def test_fallback_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest's own process tree runs no notebook launcher: the namespace and environment decide.
    for var in (NOTEBOOK_ENV, "JPY_SESSION_NAME", "PAPERMILL_INPUT_PATH", "PAPERMILL_OUTPUT_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    assert find_notebook({}) is None
    namespace: dict[str, object] = {"__session__": str(tmp_path / "lab.ipynb")}
    assert find_notebook(namespace) == NotebookSource(str(tmp_path / "lab.ipynb"), "lab")
    namespace["__vsc_ipynb_file__"] = str(tmp_path / "code.ipynb")
    found = find_notebook(namespace)
    assert found is not None and (found.via, found.path) == ("vscode", str(tmp_path / "code.ipynb"))
    # papermill --inject-paths: relative to the folder papermill was started in
    namespace.update(PAPERMILL_INPUT_PATH="in.ipynb", PAPERMILL_OUTPUT_PATH="-")
    found = find_notebook(namespace)
    assert found is not None and (found.via, found.path) == (
        "papermill",
        str(tmp_path / "in.ipynb"),
    )
    assert found.output is None  # written to stdout
    monkeypatch.setenv(NOTEBOOK_ENV, str(tmp_path / "step.ipynb"))
    found = find_notebook(namespace)
    assert found is not None and (found.via, found.path) == ("env", str(tmp_path / "step.ipynb"))
    assert found.relative(tmp_path) == "step.ipynb"


def papermill_own_parameters(argv: list[str]) -> dict[str, object]:
    """What papermill's own CLI would inject for ``argv`` (its click parser, its merging)."""
    import base64

    import yaml
    from papermill.cli import _resolve_type, papermill
    from papermill.iorw import NoDatesSafeLoader, read_yaml_file

    opts = papermill.make_context("papermill", list(argv), resilient_parsing=True).params
    params: dict[str, object] = {}
    for blob in opts["parameters_base64"] or ():
        params.update(yaml.load(base64.b64decode(blob), Loader=NoDatesSafeLoader) or {})
    for path in opts["parameters_file"] or ():
        params.update(read_yaml_file(path) or {})
    for text in opts["parameters_yaml"] or ():
        params.update(yaml.load(text, Loader=NoDatesSafeLoader) or {})
    params.update({k: _resolve_type(v) for k, v in opts["parameters"] or ()})
    params.update(dict(opts["parameters_raw"] or ()))
    return params


def test_papermill_parameters_as_papermill_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("when: 2024-01-02\nsizes: [1, 2]\ndepth: 1\n")
    blob = base64.b64encode(b"seed: 7\nname: b64").decode()
    argv = [
        "in.ipynb", "out.ipynb", "-k", "python3", "--cwd", "sub", "--log-output",
        "-p", "depth", "4", "-p", "rate", "1e-3", "-p", "flag", "False", "-p", "neg", "-1",
        "-r", "raw", "007", "-y", "label: x", "--parameters_yaml=extra: null",
        "-f", "p.yaml", "-b", blob, "--no-progress-bar", "--start-timeout", "60",
    ]  # fmt: skip
    found = from_command_line(["/venv/bin/papermill", *argv], [tmp_path])
    assert found is not None and found.output == str(tmp_path / "out.ipynb")
    expected = papermill_own_parameters(argv)
    assert dict(found.parameters) == expected
    assert list(found.parameters) == list(expected)  # papermill's order, for the tag
    assert expected["when"] == "2024-01-02" and expected["depth"] == 4
