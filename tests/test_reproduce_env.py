"""Issue 19, the environment a reproduction runs in: recorded pins, differences, and fresh
environments built by the real uv from the real package index.

The fresh environments live in a session-wide folder under tmp (``JUPYTER_MLOPS_ENV_CACHE``)
so each is built once per session; uv's own download cache stays the shared default, so
CI downloads each wheel once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient

from jupyter_mlops.config import load_config
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.pipelines.execute import execute_notebook
from jupyter_mlops.reproduction.environment import (
    package_differences,
    prepare_environment,
    recorded_packages,
)
from jupyter_mlops.reproduction.pipconfig import index_options
from jupyter_mlops.reproduction.result import EnvironmentReport, PackageChange
from jupyter_mlops.reproduction.uvenv import CACHE_ENV, EnvironmentBuildError

from .conftest import IRIS_CELL
from .helpers import free_port

OLD_SKLEARN = "1.5.2"  # older than the running scikit-learn, with cp311..cp313 wheels
RUNNING_SKLEARN = metadata.version("scikit-learn")


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's fresh environments (built once, reused by every test here)."""
    root = tmp_path_factory.mktemp("envs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(root))
        yield root


@pytest.fixture(scope="session")
def old_sklearn_env(env_cache: Path) -> EnvironmentReport:
    started = time.perf_counter()
    report = prepare_environment({"scikit-learn": OLD_SKLEARN}, mode="fresh", python_version=None)
    print(
        f"\nfresh environment with scikit-learn=={OLD_SKLEARN}: built in "
        f"{time.perf_counter() - started:.1f} s (cached={report.cached})"
    )
    return report


def _run_python(python: str, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no checkout on the path
    done = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _runs(client: MlflowClient) -> list:  # type: ignore[type-arg]
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps) if exps else []


def test_recorded_packages_of_a_tracked_run(ip, iris_csv: Path) -> None:  # type: ignore[no-untyped-def]
    ip.run_cell_magic("track", "-e iris --data data/iris.csv", IRIS_CELL)
    client = MlflowClient(load_config().tracking_uri)
    (run,) = _runs(client)
    pins = recorded_packages(run.info.run_id)
    assert pins["scikit-learn"] == RUNNING_SKLEARN
    assert pins["pandas"] == metadata.version("pandas")
    assert "jupyter-mlops" not in pins and "jupyter_mlops" not in pins
    assert package_differences(pins) == []  # recorded here, so nothing differs here


def test_requirements_artifact_wins_over_the_environment_record(project: Path) -> None:
    import mlflow

    config = load_config()
    client = MlflowClient(config.tracking_uri)
    mlflow.set_tracking_uri(config.tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_text(
            "# python 3.11.7\nnumpy==1.26.4\nScikit_Learn==1.5.2  # a comment\n\nrich>=13\n",
            "mlops/requirements.txt",
        )
        mlflow.log_text(json.dumps({"packages": {"pandas": "2.2.0"}}), "mlops/environment.json")
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert recorded_packages(run.info.run_id, config) == {
        "numpy": "1.26.4",
        "Scikit_Learn": "1.5.2",
    }


def test_current_mode_lists_the_differences() -> None:
    recorded = {
        "Scikit_Learn": OLD_SKLEARN,  # another spelling of the same distribution
        "pandas": metadata.version("pandas"),
        "surely-not-installed-dist": "1.0",
    }
    report = prepare_environment(recorded, mode="current", python_version=None)
    assert report.mode == "current" and report.python == sys.executable
    assert report.changes == [
        PackageChange("Scikit_Learn", OLD_SKLEARN, RUNNING_SKLEARN),
        PackageChange("surely-not-installed-dist", "1.0", None),
    ]
    assert report.unavailable == [] and not report.cached
    # No recorded pin differs: the running environment is chosen without building.
    same = prepare_environment(
        {"pandas": metadata.version("pandas")}, mode=None, python_version=None
    )
    assert same.mode == "current" and same.changes == []
    with pytest.raises(MlopsError, match="Unknown environment mode 'docker'"):
        prepare_environment(recorded, mode="docker", python_version=None)


@pytest.mark.slow
def test_fresh_environment_has_the_old_pin_and_tracks_into_the_project(
    old_sklearn_env: EnvironmentReport, git_project: Path, iris_csv: Path
) -> None:
    report = old_sklearn_env
    assert report.mode == "fresh" and report.python != sys.executable
    assert report.changes == [] and report.unavailable == []  # the pin was had
    assert Path(report.python).is_file()
    code = "import sklearn, jupyter_mlops, mlflow; print(sklearn.__version__, mlflow.__version__)"
    assert _run_python(report.python, code) == f"{OLD_SKLEARN} {metadata.version('mlflow')}"
    # The running site-packages is not visible there: only jupyter_mlops is linked in.
    assert (
        _run_python(report.python, "import importlib.util as u; print(u.find_spec('dask'))")
        == "None"
    )

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("max_iter = 50", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("%load_ext jupyter_mlops"),
        nbformat.v4.new_code_cell(
            "%%track -e fresh --data data/iris.csv\n"
            "import pandas as pd, sklearn\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "df = pd.read_csv('data/iris.csv')\n"
            "X, y = df.drop(columns='target'), df.target\n"
            "model = LogisticRegression(max_iter=max_iter).fit(X, y)\n"
            "acc = model.score(X, y)\n"
            "print('SKLEARN', sklearn.__version__)"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "gone"}  # no language
    nbformat.write(nb, git_project / "fresh.ipynb")
    out = execute_notebook(
        git_project / "fresh.ipynb", parameters={"max_iter": 500}, python=report.python
    )
    text = "".join(o.get("text", "") for o in nbformat.read(out, as_version=4).cells[-1].outputs)
    assert f"SKLEARN {OLD_SKLEARN}" in text
    assert "TqdmWarning" not in text and "Resolved" not in text  # no chatter in the output

    client = MlflowClient(load_config().tracking_uri)
    (run,) = _runs(client)  # recorded into this project's store
    assert run.info.status == "FINISHED"
    assert run.data.params["max_iter"] == "500"
    assert json.loads(run.data.tags["mlops.data"])[0]["path"] == "data/iris.csv"
    assert recorded_packages(run.info.run_id)["scikit-learn"] == OLD_SKLEARN

    # That run, recorded with the older scikit-learn, reproduced with no --env: the pins
    # differ from the running interpreter's, so a fresh environment is built from them.
    from jupyter_mlops.reproduction import REPRODUCED, reproduce

    result = reproduce(run.info.run_id)
    assert result.environment.mode == "fresh", str(result)
    assert result.environment.python != sys.executable
    assert not [c for c in result.environment.changes if c.name == "scikit-learn"], str(result)
    assert result.verdict == REPRODUCED, str(result)
    assert result.checked["predictions"] >= 1 and result.checked["metrics"] >= 1
    assert result.run_id is not None
    assert recorded_packages(result.run_id)["scikit-learn"] == OLD_SKLEARN


@pytest.mark.slow
def test_second_prepare_is_cached(old_sklearn_env: EnvironmentReport, capfd) -> None:  # type: ignore[no-untyped-def]
    again = prepare_environment({"scikit-learn": OLD_SKLEARN}, mode=None, python_version=None)
    assert again.mode == "fresh"  # the recorded pin differs from the running one
    assert again.cached and again.python == old_sklearn_env.python
    assert again.changes == [] and again.unavailable == []
    assert capfd.readouterr().out == ""  # uv's output never reaches the user's
    with capfd.disabled():
        print(f"\ncached fresh environment: {again.seconds:.2f} s")


@pytest.mark.slow
def test_exact_python_missing_uses_the_same_minor(old_sklearn_env: EnvironmentReport) -> None:
    minor = ".".join(map(str, sys.version_info[:2]))
    report = prepare_environment(
        {"scikit-learn": OLD_SKLEARN}, mode="fresh", python_version=f"{minor}.99"
    )
    assert report.unavailable == [f"python=={minor}.99"]
    assert _run_python(report.python, "import sys; print(sys.version_info[:2])") == str(
        sys.version_info[:2]
    )
    with pytest.raises(EnvironmentBuildError, match=r"Python 3\.4\.0 is not installed here"):
        prepare_environment({}, mode="fresh", python_version="3.4.0")


@pytest.mark.slow
def test_a_pin_that_does_not_exist_is_relaxed_once_for_concurrent_builders(
    env_cache: Path,
) -> None:
    recorded = {"scikit-learn": "0.0.999", "surely-not-a-dist-xyz": "1.0"}
    reports: list[EnvironmentReport] = []

    def prepare() -> None:
        reports.append(prepare_environment(recorded, mode="fresh", python_version=None))

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reports) == 2
    assert sorted(r.cached for r in reports) == [False, True]  # one built, one waited
    first, second = reports
    assert first.python == second.python
    assert first.unavailable == ["scikit-learn==0.0.999", "surely-not-a-dist-xyz==1.0"]
    assert second.unavailable == first.unavailable
    # The environment is still built, with the relaxed name at whatever version resolved.
    version = _run_python(first.python, "import sklearn; print(sklearn.__version__)")
    assert PackageChange("scikit-learn", "0.0.999", version) in first.changes
    assert PackageChange("surely-not-a-dist-xyz", "1.0", None) in first.changes
    assert not list(env_cache.glob(".*.building"))  # nothing half-built left behind


@pytest.mark.slow
def test_unreachable_index_is_one_line(env_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    monkeypatch.setenv("UV_OFFLINE", "0")
    with pytest.raises(EnvironmentBuildError) as caught:
        prepare_environment({"six": "1.10.0"}, mode="fresh", python_version=None)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("The package index could not be reached:")
    log = Path(message.rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.is_file() and log.parent == env_cache and "127.0.0.1" in log.read_text()


def test_pip_settings_are_handed_to_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.0\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://mirror.example/simple\n"
        f"extra-index-url = file:///a/simple\n  file:///b/simple\nconstraint = {constraints}\n"
        "[install]\nfind-links = /wheels\n"
    )
    for key in ("UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("UV_FIND_LINKS", raising=False)
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_FIND_LINKS", "/env-wheels")  # the environment wins over files
    assert index_options() == [
        "--index-url", "https://mirror.example/simple",
        "--extra-index-url", "file:///a/simple",
        "--extra-index-url", "file:///b/simple",
        "--index-strategy", "unsafe-best-match",
        "--find-links", "/env-wheels",
        "--constraint", str(constraints),
    ]  # fmt: skip
    monkeypatch.setenv("UV_INDEX_URL", "https://uv.example/simple")
    assert index_options() == []  # uv's own settings are left alone
