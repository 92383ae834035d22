"""Binder, played without a container engine: what repo2docker would do with ``binder/``.

repo2docker's Python 3.11 image (its conda buildpack, ``environment.py-3.11.yml``) brings
Python 3.11, pip, Node.js 20, JupyterLab 4, Notebook 7, jupyter_server 2 and ipywidgets 8
(plus jupyterhub-singleuser, jupyter-resource-usage and jupyter-offlinenotebook, which play
no part here). It then installs ``binder/requirements.txt``, copies the repository, runs
``binder/postBuild`` from its root, and starts sessions through ``binder/start``.

Here: a fresh virtual environment with that base stack and exactly the requirements file,
a copy of the tracked files of this checkout (``git ls-files``) as a new git repository,
``postBuild`` run there with the environment's ``bin`` first on PATH (Node.js from the
machine). Then the sidebar and the server extension must be enabled, a JupyterLab started
from that environment must serve the quickstart at Binder's ``urlpath`` with the news toast
off, and the quickstart must run top to bottom with papermill in that environment's kernel.
Slow (a fresh ``pip install``, the sidebar's build): minutes with a warm pip cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

from .conftest import git

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
# What repo2docker's Python 3.11 environment provides that matters to the demos.
BINDER_BASE = ["jupyterlab>=4,<5", "notebook>=7,<8", "jupyter_server>=2,<3", "ipywidgets>=8,<9"]
QUICKSTART = "notebooks/01-quickstart.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{output[-4000:]}"
    return output


def copy_checkout(dest: Path) -> Path:
    """The tracked files of this checkout, as a fresh repository (Binder clones one)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git(dest, "init", "-q")
    git(dest, "add", ".")
    git(dest, "commit", "-q", "-m", "binder")
    return dest


@pytest.fixture(scope="module")
def binder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """(repository, environment) after the whole Binder build; its timings are printed."""
    base = tmp_path_factory.mktemp("binder")
    repo = copy_checkout(base / "repo")
    venv = base / "venv"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VIRTUAL_ENV", "PYTHON", "JUPYTER", "MLFLOW_", "JPY_"))
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(base / "dvc-site-cache"),
        HOME=os.environ.get("HOME", str(base)),  # the pip cache stays warm between runs
    )
    timings = {}
    started = time.monotonic()
    run([sys.executable, "-m", "venv", str(venv)], base, env, 120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    run([*pip, *BINDER_BASE, "-r", str(repo / "binder" / "requirements.txt")], repo, env, 1800)
    timings["venv + requirements"] = time.monotonic() - started
    started = time.monotonic()
    run(["bash", "binder/postBuild"], repo, env, 1800)
    timings["postBuild"] = time.monotonic() - started
    print(f"\nBinder build: {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}")
    yield repo, env


def test_requirements_agree_with_the_package() -> None:
    """Every package binder/requirements.txt pre-installs has the bounds pyproject gives it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0].lower(): d for d in project["dependencies"]}
    listed = [
        line.split("#")[0].strip()
        for line in (BINDER / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert listed
    for requirement in listed:
        name = re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0].lower()
        if name in declared:
            assert requirement == declared[name], f"{requirement!r} vs pyproject {declared[name]!r}"
    for script in ("postBuild", "start"):
        assert os.access(BINDER / script, os.X_OK), f"binder/{script} must be executable"
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"


def test_postbuild_enables_the_sidebar_and_its_server_extension(
    binder: tuple[Path, dict[str, str]],
) -> None:
    repo, env = binder
    bin_dir = Path(env["VIRTUAL_ENV"]) / "bin"
    labext = run([str(bin_dir / "jupyter"), "labextension", "list"], repo, env, 120)
    assert re.search(r"jupyter-mlops v\S+ enabled OK", labext), labext
    serverext = run([str(bin_dir / "jupyter"), "server", "extension", "list"], repo, env, 120)
    assert re.search(r"jupyter_mlops enabled", serverext), serverext
    assert re.search(r"jupyter_mlops \S+ OK", serverext), serverext
    # built in the copy and installed into the Binder environment, not into this checkout's
    prefix = Path(env["VIRTUAL_ENV"]) / "share" / "jupyter" / "labextensions" / "jupyter-mlops"
    assert (prefix / "package.json").is_file()
    assert (repo / "jupyter_mlops" / "labextension" / "static" / "style.js").is_file()


def get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_lab_opens_the_quickstart_without_the_news_toast(
    binder: tuple[Path, dict[str, str]],
) -> None:
    repo, env = binder
    port, token = free_port(), secrets.token_hex(16)
    lab = subprocess.Popen(
        [
            str(Path(env["VIRTUAL_ENV"]) / "bin" / "jupyter"),
            "lab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
        ],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if get(f"{base}/api/status", token)[0] == 200:
                    break
            assert lab.poll() is None and time.monotonic() < deadline, "lab did not start"
            time.sleep(0.3)
        status, page = get(f"{base}/lab/tree/{QUICKSTART}", token)  # Binder's urlpath
        assert status == 200 and b"jupyter-mlops" in page  # the sidebar is in the page config
        _, raw = get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification", token)
        # overrides.json replaces the schema's defaults (stock: "none" = ask, and True)
        defaults = {k: v["default"] for k, v in json.loads(raw)["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
        status, raw = get(f"{base}/jupyter-mlops/api/status", token)
        assert status == 200 and json.loads(raw)
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(lab.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                lab.wait(wait)
                break


def test_quickstart_runs_in_the_binder_environment(binder: tuple[Path, dict[str, str]]) -> None:
    repo, env = binder
    venv_python = Path(env["VIRTUAL_ENV"]) / "bin" / "python"
    # as a Binder user runs it: the kernel starts in the notebook's folder, below the root
    run(
        [
            str(venv_python),
            "-m",
            "papermill",
            QUICKSTART,
            "notebooks/01-quickstart.out.ipynb",
            "--cwd",
            "notebooks",
            "--kernel",
            "python3",
            "--no-progress-bar",
        ],
        repo,
        env,
        600,
    )
    check = (
        "import json, mlflow\n"
        "from jupyter_mlops.config import load_config\n"
        "config = load_config('notebooks')\n"
        "client = mlflow.MlflowClient(config.tracking_uri)\n"
        "(run,) = [r for r in client.search_runs([client.get_experiment_by_name("
        "'Iris_Classification').experiment_id]) if 'mlops.reproduces' not in r.data.tags]\n"
        "env = json.loads(open(client.download_artifacts(run.info.run_id, "
        "'mlops/environment.json')).read())\n"
        "print('RESULT', json.dumps({'root': str(config.root), 'status': run.info.status, "
        "'executable': env['executable'], 'champion': client.get_registered_model('iris-rf')"
        ".aliases['champion']}))\n"
    )
    output = run([str(venv_python), "-c", check], repo, env, 120)
    (line,) = [ln for ln in output.splitlines() if ln.startswith("RESULT ")]
    found = json.loads(line.removeprefix("RESULT "))
    assert found["root"] == str(repo.resolve()) and found["status"] == "FINISHED"
    assert found["executable"].startswith(env["VIRTUAL_ENV"]), found  # that venv's kernel
    assert str(found["champion"]) == "1"
