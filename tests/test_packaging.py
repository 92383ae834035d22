"""A packaged model builds and serves: the Dockerfile's steps run in a fresh virtualenv.

No container engine can build here (no registry to pull the base image from), so the test
plays the Dockerfile itself: WORKDIR becomes a temp folder, COPY copies, ENV sets, RUN runs
with the fresh venv first on PATH (so the venv holds only the context's requirements and
its wheel), USER switches to that uid when the test runs as root, and CMD starts the server
on a free 127.0.0.1 port instead of 0.0.0.0:8080.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

import jupyter_mlops
from jupyter_mlops.packaging import package
from tests.helpers import free_port

pytestmark = pytest.mark.slow


def _base_python(uid: int) -> tuple[str, bool]:
    """A Python of this minor version for the venv, and whether the image's uid can run it
    (only root can switch to it; pyenv's Python under /root is closed to other users)."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if os.geteuid() == 0:
        for candidate in (sys.executable, shutil.which(minor, path="/usr/local/bin:/usr/bin")):
            try:
                probe = [candidate or "-", "-c", "import venv"]
                if subprocess.run(probe, user=uid, capture_output=True).returncode == 0:
                    return str(candidate), True
            except OSError:
                continue
    return sys.executable, False


def _play_dockerfile(
    context: Path, app_root: Path, venv: Path, port: int, *, switch_user: bool
) -> subprocess.Popen:
    """Run the Dockerfile's steps with /app mapped to ``app_root``; return the CMD process."""
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": "/"}  # HOME of a uid with no name
    workdir = app_root
    cmd: list[str] | None = None
    user: int | None = None

    def mapped(text: str) -> str:
        return re.sub(r"(?<![\w/])/app(?=/|\b)", str(app_root), text)

    for raw in context.joinpath("Dockerfile").read_text().replace("\\\n", "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        if instr == "FROM":
            assert rest == f"python:{platform.python_version()}-slim", rest
        elif instr == "WORKDIR":
            workdir = Path(mapped(rest))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instr == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = mapped(value)
        elif instr == "COPY":
            src, dst = rest.split()
            target = Path(mapped(dst))
            if (context / src).is_dir():
                shutil.copytree(context / src, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(context / src, target)
        elif instr == "RUN":
            # The image keeps no pip cache; the test reuses the machine's (same packages).
            run_env = {**env, "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip")}
            run_env.pop("PIP_NO_CACHE_DIR", None)
            subprocess.run(["sh", "-c", mapped(rest)], cwd=workdir, env=run_env, check=True)
        elif instr == "USER":
            user = int(rest)
        elif instr == "CMD":
            cmd = [mapped(part) for part in json.loads(rest)]
        elif instr != "EXPOSE":
            raise AssertionError(f"unexpected Dockerfile instruction {instr}")
    assert cmd is not None
    cmd[cmd.index("--host") + 1] = "127.0.0.1"  # the test never binds beyond loopback
    cmd[cmd.index("--port") + 1] = str(port)
    return subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=user if switch_user else None,
    )


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp folder other users can read (pytest's own is root-only when run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="mlops-pkg-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read(), dict(resp.headers)


def _wait_healthy(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            _get(f"{url}/health")
            return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode()[-3000:]) from None
            assert time.monotonic() < deadline, "packaged server did not start"
            time.sleep(0.5)


def test_package_builds_and_serves_with_its_identity(project: Path, open_tmp: Path) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    with jupyter_mlops.track(experiment="pkg") as run:
        run.log_model(model, "model", X=X)
    jupyter_mlops.register(run.run_id, name="iris-rf", aliases=["champion"])

    pkg = package("iris-rf@champion", project / "build" / "iris-rf")
    ctx = pkg.path
    assert {p.name for p in ctx.iterdir()} == {
        "Dockerfile", ".dockerignore", "requirements.txt", "model", "wheels",
        "package.json", "lineage.json",
    }  # fmt: skip
    identity = json.loads((ctx / "package.json").read_text())
    assert identity["name"] == "iris-rf" and identity["version"] == "1"
    assert identity["run_id"] == run.run_id and identity["alias"] == "champion"
    reqs = (ctx / "requirements.txt").read_text().split()
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in reqs
    assert f"mlflow-skinny=={dist_version('mlflow')}" in reqs
    assert not [r for r in reqs if r.startswith("mlflow==")], reqs
    assert all("==" in r for r in reqs), reqs  # every requirement pinned
    assert json.loads((ctx / "lineage.json").read_text())["run_id"] == run.run_id
    dockerfile = (ctx / "Dockerfile").read_text()
    (wheel,) = (ctx / "wheels").glob("jupyter_mlops-*.whl")
    assert f"RUN pip install --no-deps /app/wheels/{wheel.name}" in dockerfile
    assert "PYTHONPATH" not in dockerfile and "COPY src" not in dockerfile
    assert re.search(r"^USER [1-9]\d*$", dockerfile, re.M), dockerfile  # a non-root uid
    assert dockerfile.index("USER ") < dockerfile.index("CMD ")
    with pytest.raises(jupyter_mlops.MlopsError, match="not empty"):
        package("iris-rf@champion", ctx)

    uid = int(re.findall(r"^USER (\d+)$", dockerfile, re.M)[0])
    python, switch_user = _base_python(uid)
    venv = open_tmp / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    port = free_port()
    app = open_tmp / "app"
    proc = _play_dockerfile(ctx, app, venv, port, switch_user=switch_user)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        info = json.loads(_get(f"{url}/info")[0])
        assert (info["model_name"], info["model_version"], info["run_id"]) == (
            "iris-rf",
            "1",
            run.run_id,
        )
        assert info["models"][0]["uri"] == "models:/iris-rf/1"
        assert _get(f"{url}/version")[0].decode() == dist_version("mlflow")  # skinny's

        rows = X.iloc[::10]
        req = urllib.request.Request(
            f"{url}/predict",
            data=json.dumps(rows.to_dict(orient="records")).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.loads(resp.read())
            assert resp.headers["x-model-version"] == "1"
        assert body["predictions"] == model.predict(rows).tolist()
        assert body["model"]["name"] == "iris-rf" and body["model"]["run_id"] == run.run_id

        metrics: dict[str, list[Any]] = {}
        for family in text_string_to_metric_families(_get(f"{url}/metrics")[0].decode()):
            for sample in family.samples:
                metrics.setdefault(sample.name, []).append(sample.labels)
        (model_info,) = metrics["jupyter_mlops_model_info"]
        assert (model_info["model_name"], model_info["model_version"]) == ("iris-rf", "1")
        assert model_info["run_id"] == run.run_id
        assert {"model_name": "iris-rf", "model_version": "1"}.items() <= metrics[
            "jupyter_mlops_requests_total"
        ][0].items()
        assert "process_resident_memory_bytes" in metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    log = proc.stdout.read().decode()
    # The venv holds mlflow-skinny only, and the requirement check accepts it as mlflow.
    assert "is required but" not in log, log[-3000:]
    pip_list = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    installed = {d["name"].lower() for d in json.loads(pip_list)}
    assert {"mlflow-skinny", "jupyter-mlops"} <= installed and "mlflow" not in installed
    # The server ran the installed wheel, not sources from this checkout.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import jupyter_mlops; print(jupyter_mlops.__file__)"],
        capture_output=True, text=True, check=True, cwd=app, env={"PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    assert where.startswith(str(venv)), where
    # Its state and prediction log stayed in the deployment folder the image makes writable.
    assert (app / "deployment" / "state.json").is_file()
    if switch_user:  # it ran as the image's non-root uid, which could write there
        assert (app / "deployment" / "state.json").stat().st_uid == uid
    assert not (app / ".mlops").exists() and not (project / ".mlops" / "deployments").exists()


def test_package_served_here_with_two_workers(project: Path) -> None:
    """``--package`` in this environment with two workers: every worker reports the
    packaged identity, and state goes to the context's own deployment folder."""
    from jupyter_mlops.client import client
    from jupyter_mlops.config import load_config
    from tests.helpers import kill_process_group, register_iris

    config = load_config(project)
    register_iris(config, 10, 0, "champion")
    run_id = client(config).get_model_version("iris-rf", "1").run_id
    ctx = package("iris-rf@champion", project / "build" / "iris-rf").path
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(jupyter_mlops.__file__).parents[1])}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = ["--package", str(ctx), "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_mlops.serving", *command],
        cwd=project.parent,  # outside the project: nothing may be found from the cwd
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        deadline = time.monotonic() + 60
        while True:  # both workers up: each has its process_* series, labelled pid
            metrics = _get(f"{url}/metrics")[0].decode()
            workers = {
                sample.labels["pid"]
                for family in text_string_to_metric_families(metrics)
                for sample in family.samples
                if sample.name == "process_start_time_seconds"
            }
            if len(workers) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        pids = set()
        for _ in range(40):  # answers come from either worker
            info = json.loads(_get(f"{url}/info")[0])
            assert (info["model_name"], info["model_version"], info["run_id"]) == (
                "iris-rf",
                "1",
                run_id,
            )
            pids.add(info["pid"])
        assert len(workers) == 2 and {str(pid) for pid in pids} <= workers
        assert f'run_id="{run_id}"' in metrics
    finally:
        kill_process_group(proc.pid)
    assert (ctx / "deployment" / "state.json").is_file()
    assert not (project / ".mlops" / "deployments").exists()


def test_package_option_errors(tmp_path: Path) -> None:
    """``--package`` on a folder that is no packaged context, or with ``--model``: exit 1."""
    for args, message in (
        (["--package", str(tmp_path)], "is not a packaged model"),
        (["--package", str(tmp_path), "--model", "x@y"], "not both"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "jupyter_mlops.serving", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(jupyter_mlops.__file__).parents[1])},
            check=False,
        )
        assert done.returncode == 1 and message in done.stderr, done.stderr
