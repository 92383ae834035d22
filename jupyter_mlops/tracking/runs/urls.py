"""Links into MLflow's own UI, when one is up for the project's store."""

from __future__ import annotations

from collections.abc import Sequence

from jupyter_mlops._util.urls import without_credentials
from jupyter_mlops.config import Config, load_config


def mlflow_ui_url(config: Config | None = None, *, probe: Sequence[str] = ()) -> str | None:
    """The base URL of a running MLflow UI for this store, if one is known to be up.

    A tracking server is its own UI. For a local store, the addresses in ``probe`` (e.g.
    ``http://127.0.0.1:5000``, where ``mlflow ui`` listens by default) are asked for
    ``/health``; a refused connection answers at once.
    """
    import urllib.request

    config = config or load_config()
    if config.tracking_uri.startswith(("http://", "https://")):
        return without_credentials(config.tracking_uri).rstrip("/")  # a link, shown
    for base in probe:
        try:
            with urllib.request.urlopen(f"{base.rstrip('/')}/health", timeout=0.3) as resp:
                if resp.read(16).strip() == b"OK":
                    return base.rstrip("/")
        except OSError:
            continue
    return None


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of one run."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
