"""Small helpers shared by tests and benchmarks (no fixtures: plain functions)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_mlops.config import Config
    from jupyter_mlops.serving import Deployment


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_process_group(pid: int | None) -> None:
    """Teardown safety net: SIGTERM ``pid``'s process group, then SIGKILL, until it is gone."""
    if not pid:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        for _ in range(100):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def register_iris(
    config: Config, n_estimators: int, seed: int, alias: str, name: str = "iris-rf"
) -> str:
    """Fit, log (plain MLflow) and register an iris forest under ``name@alias``; its version."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from jupyter_mlops.client import client

    mlflow_client = client(config)
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed).fit(X, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="cloudpickle",
            signature=infer_signature(X, model.predict(X)),
            input_example=X.head(2),
            pip_requirements=["scikit-learn"],
        )
    version = mlflow.register_model(info.model_uri, name)
    mlflow_client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


@contextlib.contextmanager
def running(target: str, config: Config, **options: Any) -> Iterator[Deployment]:
    """A deployment of ``target`` for the ``with`` block; stopped (or killed) after it."""
    from jupyter_mlops.serving import deploy, stop

    deployment = deploy(target, config=config, **options)
    try:
        yield deployment
    finally:
        with contextlib.suppress(Exception):
            stop(deployment.name, config=config)
        kill_process_group(deployment.pid)
