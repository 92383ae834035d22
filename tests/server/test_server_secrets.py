"""The sidebar's JSON never shows the password of the project's tracking URI or a token.

The served project's store is a server with credentials in its URI where nothing listens;
the environment holds MLflow's token and password. Every endpoint is asked (what fails
fails with a message), and each reply body and the server's log lines are searched.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.helpers import free_port
from tests.test_secrets import PASSWORD, credentials, leaks, log_texts

API = ("jupyter-mlops", "api")


@pytest.fixture
def jp_root_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # the plugin's
    root = tmp_path / "proj"
    (root / ".mlops").mkdir(parents=True)
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}"
    (root / "pyproject.toml").write_text(f'[tool.jupyter-mlops]\ntracking_uri = "{uri}"\n')
    for var in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME", "JUPYTER_MLOPS_NOTEBOOK"):
        monkeypatch.delenv(var, raising=False)
    credentials(monkeypatch)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.chdir(root)
    return root


async def _reply(jp_fetch: Any, *parts: str, method: str = "GET") -> tuple[int, str]:
    body = json.dumps({"alias": "champion", "version": "1"}) if method == "POST" else None
    try:
        response = await jp_fetch(*API, *parts, method=method, body=body)
    except HTTPClientError as exc:
        assert exc.response is not None
        return exc.code, exc.response.body.decode()
    return response.code, response.body.decode()


async def test_no_endpoint_shows_a_secret(
    jp_fetch: Any, jp_serverapp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jupyter_mlops")
    replies = {}
    for parts, method in (
        (("status",), "GET"),
        (("experiments",), "GET"),
        (("runs",), "GET"),
        (("runs", "0123456789abcdef"), "GET"),
        (("models",), "GET"),
        (("models", "iris"), "GET"),
        (("models", "iris", "promote"), "POST"),
        (("models", "iris", "rollback"), "POST"),
        (("deployments",), "GET"),
        (("pipelines",), "GET"),
    ):
        replies[parts] = await _reply(jp_fetch, *parts, method=method)
    assert leaks(replies.values()) == []
    assert leaks(log_texts(caplog)) == []
    for parts in (("status",), ("runs",), ("models",)):  # a 503 naming the store, not a 500
        code, body = replies[parts]
        message = json.loads(body)["message"]
        assert code == 503 and "http://alice:***@127.0.0.1:" in message, parts
        assert "is unreachable (" in message and "Traceback" not in message
