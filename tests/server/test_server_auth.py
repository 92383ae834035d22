"""Every endpoint needs a Jupyter token: no auth warning at load, 403 without a token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_mlops.server.handlers import ROUTES

# As the JupyterLab extension template's CI does: a server that refuses unauthenticated
# access warns about each handler verb that is not authenticated; any such warning fails.
CHECK_AUTH = """
import warnings
from jupyter_server.serverapp import ServerApp
from jupyter_server.utils import JupyterServerAuthWarning

app = ServerApp(
    allow_unauthenticated_access=False,
    jpserver_extensions={"jupyter_mlops": True},
    reraise_server_extension_failures=True,
)
with warnings.catch_warnings(record=True) as records:
    warnings.simplefilter("always")
    app.initialize(argv=[], find_extensions=False, new_httpserver=False)
problems = [str(r.message) for r in records if issubclass(r.category, JupyterServerAuthWarning)]


def handlers(router):
    for rule in getattr(router, "rules", []):
        if isinstance(rule.target, type):
            yield rule.target
        else:
            yield from handlers(rule.target)


routes = [h.__name__ for h in handlers(app.web_app.default_router)
          if h.__module__ == "jupyter_mlops.server.handlers"]
print("RESULT", __import__("json").dumps({"problems": problems, "routes": routes}))
"""


def test_no_unauthenticated_endpoint(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    (tmp_path / ".mlops").mkdir()
    out = subprocess.run(
        [sys.executable, "-c", CHECK_AUTH],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    result = json.loads(out.split("RESULT", 1)[1])
    assert result["problems"] == []
    # The extension was really loaded: its routes (and the catch-all) are registered.
    assert len(result["routes"]) == len(ROUTES) + 1


async def test_requests_without_valid_token_are_refused(jp_fetch) -> None:
    calls = [("GET", path.replace("([^/]+)", "x")) for path, _ in ROUTES]
    calls += [("POST", "models/x/promote"), ("POST", "models/x/rollback")]
    calls += [("POST", "deployments/x/stop"), ("GET", "no/such/endpoint")]
    for token in ("", "token wrong"):
        for method, path in calls:
            kwargs: dict[str, Any] = {"method": method, "headers": {"Authorization": token}}
            if method == "POST":
                kwargs["body"] = json.dumps({"version": "1", "alias": "champion"})
            with pytest.raises(HTTPClientError) as info:
                await jp_fetch("jupyter-mlops", "api", path, **kwargs)
            assert info.value.code == 403, (method, path, token)
