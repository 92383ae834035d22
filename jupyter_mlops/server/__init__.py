"""The Jupyter server extension: authenticated REST handlers feeding the JupyterLab sidebar.

Routes live under ``<base_url>/jupyter-mlops/api/`` (see ``openapi.yaml`` beside this file).
This package is the only place that imports tornado and jupyter_server; the core knows
nothing of HTTP.
"""

from __future__ import annotations

import threading
from typing import Any


def load(server_app: Any) -> None:
    """Build the backend once for the served folder's project and register the routes.

    The runs of the store are read once in a background thread, so that the first panel
    open does not pay for importing MLflow and pandas.
    """
    from jupyter_mlops.server.backend import SidebarBackend
    from jupyter_mlops.server.handlers import setup_handlers

    contents = getattr(server_app, "contents_manager", None)
    backend = SidebarBackend(
        server_app.root_dir, allow_hidden=bool(getattr(contents, "allow_hidden", False))
    )
    setup_handlers(server_app.web_app, backend)
    threading.Thread(target=backend.warm, name="jupyter-mlops-warm", daemon=True).start()
    server_app.log.info(
        "jupyter-mlops server extension: project %s, store %s",
        backend.project_root,
        backend.config.tracking_uri,
    )
