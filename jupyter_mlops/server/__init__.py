"""The Jupyter server extension: authenticated REST handlers feeding the JupyterLab sidebar.

Routes live under ``<base_url>/jupyter-mlops/api/`` (see ``openapi.yaml`` beside this file).
This package is the only place that imports tornado and jupyter_server; the core knows
nothing of HTTP.
"""

from __future__ import annotations

import threading
from typing import Any


def load(server_app: Any) -> None:
    """Build the views once for the served folder's project and register the routes.

    The runs of the store are read once in a background thread, so that the first panel
    open does not pay for importing MLflow and pandas.
    """
    from jupyter_mlops._util.urls import redact
    from jupyter_mlops.server.handlers import setup_handlers
    from jupyter_mlops.server.views import SidebarViews

    contents = getattr(server_app, "contents_manager", None)
    views = SidebarViews(
        server_app.root_dir, allow_hidden=bool(getattr(contents, "allow_hidden", False))
    )
    setup_handlers(server_app.web_app, views)
    threading.Thread(target=views.warm, name="jupyter-mlops-warm", daemon=True).start()
    server_app.log.info(
        "jupyter-mlops server extension: project %s, store %s",
        views.project_root,
        redact(views.config.tracking_uri),  # a database URI may hold a password
    )
