"""Browser tests: ONE JupyterLab server and ONE Chromium for the whole browser suite.

Every test in this folder is marked ``browser`` (deselect with ``-m "not browser"``). They
skip, saying why, when Python's ``playwright``, JupyterLab or ``/usr/bin/chromium`` is
missing; CI installs all three (``apt-get install chromium``; never ``playwright install``,
whose browser download does not work here).

The server runs in a temporary folder that is a jupyter-mlops project, with its own
Jupyter config, runtime, settings and workspace folders, so nothing of the machine's own
Jupyter setup leaks in and the "Jupyter news" toast is switched off. Each notebook opens
in a fresh lab workspace (no tabs of earlier tests). The server is stopped by PID:
SIGTERM, then SIGKILL of its process group (kernels included) after a timeout.

Helpers for tests: ``write_notebook``, ``open_notebook`` (waits for ``| Idle`` in the
status bar), ``run_all_cells``; fixtures ``lab``, ``lab_root``, ``browser``, ``page``,
``shots`` (screenshot folder, ``$MLOPS_BROWSER_SHOTS`` to keep them).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port

CHROMIUM = Path(os.environ.get("MLOPS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SERVER_START_TIMEOUT = 90  # s; a fresh lab answers /api/status in a few seconds
SERVER_STOP_TIMEOUT = 15
HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab in headless Chromium (needs playwright, chromium)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def _missing() -> str | None:
    """Why the browser suite cannot run here (None when it can)."""
    if importlib.util.find_spec("playwright") is None:
        return "Python playwright is not installed (pip install playwright; no browser download)"
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if importlib.util.find_spec("jupyterlab") is None:
        return "jupyterlab is not installed"
    return None


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/api/{path}?token={self.token}", timeout=10) as r:
            return json.loads(r.read())

    def page_url(self, path: str = "lab") -> str:
        return f"{self.url}/{path}?token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


def _write_settings(settings: Path) -> None:
    """User settings of the test lab: no news toast, no update check."""
    target = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server; SIGKILL its process group if it has not gone after a timeout
    (a server stopped while a kernel starts can hang on shutdown)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=SERVER_STOP_TIMEOUT)
    # Kernels are in the server's process group; none may outlive the session.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the lab serves: a jupyter-mlops project (``.mlops/``)."""
    why = _missing()
    if why:
        pytest.skip(f"browser tests skipped: {why}")
    root = tmp_path_factory.mktemp("lab") / "project"
    (root / ".mlops").mkdir(parents=True)
    return root


@contextlib.contextmanager
def start_lab(lab_root: Path, extra_env: dict[str, str] | None = None) -> Iterator[Lab]:
    """A JupyterLab server on ``lab_root`` with its own Jupyter folders next to it (``extra_env``:
    e.g. ``MLFLOW_TRACKING_URI`` for a lab whose kernels track to a server)."""
    home = lab_root.parent
    dirs = {
        "JUPYTER_CONFIG_DIR": home / "jupyter-config",
        "JUPYTER_RUNTIME_DIR": home / "jupyter-runtime",
        "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces",
        "IPYTHONDIR": home / "ipython",
    }
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    _write_settings(dirs["JUPYTERLAB_SETTINGS_DIR"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "JPY_"))}
    env.update({k: str(v) for k, v in dirs.items()})
    env.update(DVC_NO_ANALYTICS="1", MLFLOW_ENABLE_ASYNC_LOGGING="false", PYTHONUNBUFFERED="1")
    env.update(extra_env or {})
    token, port = secrets.token_hex(16), free_port()
    log = home / "jupyterlab.log"
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    command = [jupyter] if jupyter else [sys.executable, "-m", "jupyter"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *command,
                "lab",
                "--allow-root",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={lab_root}",
            ],
            cwd=lab_root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, kernels included
        )
    server = Lab(f"http://127.0.0.1:{port}", token, lab_root, process, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited ({process.returncode}):\n{server.log_tail()}")
            try:
                server.api("status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer /api/status:\n{server.log_tail()}")
                time.sleep(0.25)
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def lab(lab_root: Path) -> Iterator[Lab]:
    """One JupyterLab server for the whole browser suite."""
    with start_lab(lab_root) as server:
        yield server


@pytest.fixture(scope="session")
def browser(lab_root: Path) -> Iterator[Any]:
    """One headless Debian Chromium, driven by Playwright, for the whole suite."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, lab: Lab) -> Iterator[Any]:
    """A fresh browser tab (its own context) per test."""
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``$MLOPS_BROWSER_SHOTS`` if set (to keep them), else tmp."""
    folder = Path(os.environ.get("MLOPS_BROWSER_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code cells, for the lab to open."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def open_notebook(page: Any, lab: Lab, relative: str) -> None:
    """Open a notebook and wait until its kernel reports ``| Idle`` in the status bar.

    Waiting for the execution indicator alone was not enough: a cell run too early never
    ran. The status bar's text is what worked.
    """
    # A workspace of its own: the lab would otherwise reopen the tabs of earlier tests.
    workspace = f"t{secrets.token_hex(4)}"
    page.goto(lab.page_url(f"lab/workspaces/{workspace}/tree/{relative}"))
    page.locator(f"{CURRENT_NOTEBOOK} .jp-Cell").first.wait_for()
    page.get_by_text("| Idle").first.wait_for(timeout=90_000)


# The notebook in front (others may be open in hidden tabs).
CURRENT_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"


def run_all_cells(page: Any, count: int) -> None:
    """Run the notebook's cells in order with Shift+Enter, from the first."""
    page.locator(f"{CURRENT_NOTEBOOK} .jp-Cell .jp-InputArea-editor").first.click()
    for _ in range(count):
        page.keyboard.press("Shift+Enter")
