"""A packaged model builds and serves: the Dockerfile's steps run in a fresh virtualenv.

No container engine runs here, so the test plays the Dockerfile itself: WORKDIR becomes a
temp folder, COPY copies, ENV sets, RUN runs with the fresh venv first on PATH, and CMD
starts the server on a free 127.0.0.1 port instead of 0.0.0.0:8080.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

import jupyter_mlops
from jupyter_mlops.packaging import package
from tests.helpers import free_port


def _play_dockerfile(context: Path, app_root: Path, venv: Path, port: int) -> subprocess.Popen:
    """Run the Dockerfile's steps with /app mapped to ``app_root``; return the CMD process."""
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(app_root),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    workdir = app_root
    cmd: list[str] | None = None

    def mapped(path: str) -> str:
        return path.replace("/app", str(app_root), 1) if path.startswith("/app") else path

    for raw in context.joinpath("Dockerfile").read_text().replace("\\\n", "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        if instr == "FROM":
            assert rest.startswith("python:3."), rest
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
            cmdline = [mapped(part) for part in shlex.split(rest)]
            subprocess.run(cmdline, cwd=workdir, env=env, check=True, timeout=900)
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
    )


@pytest.mark.slow
def test_package_builds_and_serves(project: Path, tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    with jupyter_mlops.track(experiment="pkg") as run:
        run.log_model(model, "model", X=X)
    jupyter_mlops.register(run.run_id, name="iris-rf", aliases=["champion"])

    pkg = package("iris-rf@champion", project / "build" / "iris-rf")
    ctx = pkg.path
    assert {p.name for p in ctx.iterdir()} >= {
        "Dockerfile",
        "requirements.txt",
        "model",
        "src",
        "lineage.json",
    }
    reqs = (ctx / "requirements.txt").read_text().split()
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in reqs
    assert all("==" in r for r in reqs), reqs  # every requirement pinned
    assert json.loads((ctx / "lineage.json").read_text())["run_id"] == run.run_id
    with pytest.raises(jupyter_mlops.MlopsError, match="not empty"):
        package("iris-rf@champion", ctx)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    port = free_port()
    proc = _play_dockerfile(ctx, tmp_path / "app", venv, port)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stdout.read().decode()[-3000:]) from None
                assert time.monotonic() < deadline, "packaged server did not start"
                time.sleep(0.5)
        rows = X.iloc[::10]
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps(rows.to_dict(orient="records")).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["predictions"] == model.predict(rows).tolist()
        # The server runs from the context alone: the project's modules are not on its path.
        assert not (tmp_path / "app" / ".mlops" / "mlflow.db").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
