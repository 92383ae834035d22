"""A password in the tracking URI, or a token in the environment, never surfaces.

The project is configured with credentials in every place MLflow accepts them: the
tracking URI's userinfo (``http://alice:PASSWORD@...``), ``MLFLOW_TRACKING_TOKEN`` and
``MLFLOW_TRACKING_PASSWORD``, and a prediction-log database URI with a password. Then every
channel the project writes to is read back and searched for those values: the run card
(text and HTML) and stderr of ``%%track``, the magics' tables and errors, the command line
(stdout and stderr of real processes, ``--json`` included), Python logging, the buffered
run's files on disk, and, against a reachable store, the tags, params and artifacts the
project writes. The server extension's JSON is searched in tests/server/test_server_secrets.py.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-Pa55w0rd"  # in the tracking URI
TOKEN = "tok-Never-Shown-4242"  # MLFLOW_TRACKING_TOKEN
ENV_PASSWORD = "envpw-Never-Shown-77"  # MLFLOW_TRACKING_PASSWORD
PG_PASSWORD = "pg-Never-Shown-99"  # in the prediction log's database URI
SECRETS = (PASSWORD, TOKEN, ENV_PASSWORD, PG_PASSWORD)


def leaks(texts: Iterable[Any]) -> list[str]:
    """The secrets found in any of ``texts`` (each as it was shown), with where."""
    found = []
    for text in texts:
        for secret in SECRETS:
            if secret in str(text):
                found.append(f"{secret!r} in {str(text)[:400]!r}")
    return found


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record as a handler would write it, traceback included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [formatter.format(record) for record in caplog.records]


def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets in the environment, as MLflow and the prediction log read them."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ENV_PASSWORD)
    monkeypatch.setenv(
        "JUPYTER_MLOPS_PREDICTION_LOG", f"postgresql://bob:{PG_PASSWORD}@127.0.0.1:{free_port()}/p"
    )


@pytest.fixture
def unreachable(project: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The project's tracking URI: a server with credentials where nothing listens."""
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}"
    (project / "pyproject.toml").write_text(f'[tool.jupyter-mlops]\ntracking_uri = "{uri}"\n')
    credentials(monkeypatch)
    # A user's own setting (the project keeps it): fail at once instead of retrying.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return uri


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "jupyter_mlops.cli", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _shown(ip: Any, line: str, cell: str | None = None) -> list[str]:
    """Everything a magic shows: stdout, stderr, each display's data, its result's reprs
    and, when it fails, the error IPython shows."""
    texts: list[str] = []
    formatter = ip.display_formatter  # the test shell formats text only; a notebook HTML too
    plain_only = formatter.active_types
    formatter.active_types = [*plain_only, "text/html"]
    with capture_output() as shown:
        try:
            if cell is None:
                result = ip.run_line_magic(line.split()[0], line.split(" ", 1)[1])
            else:
                result = ip.run_cell_magic(line.split()[0], line.split(" ", 1)[1], cell)
        except UsageError as exc:
            texts.append(str(exc))
        else:
            texts += [str(result), repr(result), getattr(result, "_repr_html_", str)()]
        finally:
            formatter.active_types = plain_only
    texts += [shown.stdout, shown.stderr]
    texts += [str(v) for output in shown.outputs for v in output.data.values()]
    return texts


def test_no_channel_shows_the_password_of_an_unreachable_store(
    ip: Any, project: Path, unreachable: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jupyter_mlops")
    caplog.set_level(logging.WARNING)
    texts = _shown(ip, "track -e leaky", "acc = 0.5")
    assert any("BUFFERED" in t for t in texts)  # the store was unreachable: the run is kept
    assert any("alice:***@127.0.0.1" in t for t in texts)  # the URI is shown, redacted
    html = [t for t in texts if "jp-mlops-run-card" in t]
    assert html and "store: http://alice:***@" in html[0]  # the card's footer
    for line in ("mlops retry --list", "mlops retry", "mlops runs", "mlops info"):
        texts += _shown(ip, line)
    assert any("still unreachable" in t for t in texts)
    assert leaks(texts) == []
    assert leaks(log_texts(caplog)) == []
    assert any("unreachable" in t for t in log_texts(caplog))  # the warning was logged
    # The buffered run's files (listed by `retry --list`) hold no secret either.
    (folder,) = (project / ".mlops" / "pending").iterdir()
    on_disk = [p.read_text() for p in folder.rglob("*.json")]
    assert on_disk and leaks(on_disk) == []
    assert json.loads((folder / "run.json").read_text())["reason"]

    commands = (
        ["runs"],
        ["runs", "--json"],
        ["retry", "--list"],
        ["retry", "--list", "--json"],
        ["retry"],
        ["retry", "--json"],
        ["info"],
        ["info", "--json"],
        ["models"],
        ["models", "--json"],
    )
    with ThreadPoolExecutor(4) as pool:  # processes: each pays for importing MLflow
        results = pool.map(lambda argv: _cli(project, *argv), commands)
        for argv, done in zip(commands, results, strict=True):
            assert leaks([done.stdout, done.stderr]) == [], argv
            assert "Traceback" not in done.stderr, (argv, done.stderr[-2000:])
    listed = json.loads(_cli(project, "retry", "--list", "--json").stdout)
    assert listed[0]["tracking_uri"] == unreachable.replace(PASSWORD, "***")


def test_what_the_project_writes_to_a_store_holds_no_secret(
    ip: Any, project: Path, iris_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reachable store whose URI holds a password (a SQLite ``?password=`` query: MLflow
    opens it) and secrets in the environment: the tags, params, metrics, artifacts and files
    the project writes hold none of them, nor do file names; a run buffered with an error
    quoting the password is replayed without it."""
    from mlflow import MlflowClient

    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking import buffer, store

    db = project / ".mlops" / "mlflow.db"
    uri = f"sqlite:///{db}?password={PASSWORD}"
    (project / "pyproject.toml").write_text(f'[tool.jupyter-mlops]\ntracking_uri = "{uri}"\n')
    credentials(monkeypatch)
    cell = (
        "from sklearn.linear_model import LogisticRegression\n"
        "df = pd.read_csv('data/iris.csv')\n"
        "model = LogisticRegression(max_iter=300).fit(df.drop(columns='target'), df.target)\n"
        "acc = 0.9\n"
    )
    texts = _shown(ip, "track -e written --data data/iris.csv", cell)
    assert any("FINISHED" in t for t in texts) and leaks(texts) == []
    # A run buffered because its store went away, the error quoting the URI: then replayed.
    import jupyter_mlops

    with jupyter_mlops.track(experiment="replayed") as run:
        run.go_offline(ConnectionError(f"API request to {uri} failed: Connection refused"))
        run.log_metrics({"acc": 0.5})
    assert run.status == "BUFFERED"
    store._DOWN.discard(load_config().tracking_uri)  # it is back
    (replayed,) = buffer.retry()

    client = MlflowClient(uri)
    written: list[str] = []
    for experiment in client.search_experiments():
        written += [experiment.name, experiment.artifact_location, str(experiment.tags)]
        for found in client.search_runs([experiment.experiment_id]):
            data = found.data
            written += [str(data.tags), str(data.params), str(data.metrics), found.info.run_name]
            written += [str(i) for i in (found.inputs.dataset_inputs if found.inputs else [])]
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    for model in client.search_logged_models(experiment_ids):
        written += [str(model.tags), str(model.params)]
    assert replayed.run_id in str(written) and len(written) > 10
    assert leaks(written) == []
    # Every file the project made (artifacts, buffers, caches) and every file name.
    for path in project.rglob("*"):
        assert leaks([path.relative_to(project)]) == []
        if path.is_file() and path.suffix in {".json", ".py", ".txt", ".yaml", ".md", ""}:
            assert leaks([path.read_text(errors="replace")]) == [], path


def test_redaction_by_shape_and_by_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_mlops._util.urls import redact, redact_text, remember, without_credentials

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    assert redact(f"sqlite:////p/x.db?mode=rw&password={PASSWORD}") == (
        "sqlite:////p/x.db?mode=rw&password=***"
    )
    assert redact(f"https://h/x?token={PASSWORD}&a=1") == "https://h/x?token=***&a=1"
    assert redact("sqlite:////p/x.db") == "sqlite:////p/x.db"  # untouched without a secret
    # By value: an error that quotes the secret without a URL, or a URL cut short.
    remember(f"postgresql://u:{PG_PASSWORD}@db/x", None)
    text = f"auth failed for {PG_PASSWORD!r} with {TOKEN}; see http://alice:{PASSWORD[:3]}"
    assert leaks([redact_text(text)]) == [] and "auth failed for '***'" in redact_text(text)
    remember("http://u:ab@h")  # too short to search for by value: masked in URLs only
    assert redact_text("tab http://u:ab@h") == "tab http://u:***@h"
    from jupyter_mlops.serving.errors import log_failed  # a model server's 503 body

    failed = log_failed(RuntimeError(f"cannot write: connection to {PG_PASSWORD} refused"))
    assert failed.message == "Prediction log unavailable: cannot write: connection to *** refused"
    link = without_credentials(f"http://alice:{PASSWORD}@h:5000/?password={PASSWORD}&x=1")
    assert link == "http://h:5000/?x=1"


def test_every_module_logs_through_the_redacting_logger() -> None:
    """A module's own logger comes from ``safe_logger``: its records are redacted before
    any handler (a notebook's, the Jupyter server's, caplog) sees them."""
    import re

    package = REPO / "jupyter_mlops"
    plain = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if re.search(r"^_?log(ger)? = logging\.getLogger\(", path.read_text(), re.M)
    ]
    assert plain == []
    from jupyter_mlops._util.urls import safe_logger

    record = logging.LogRecord(
        "jupyter_mlops.x", logging.WARNING, __file__, 1, "store %s: %s", None, None
    )
    record.args = (f"http://alice:{PASSWORD}@h", "down")
    assert all(f.filter(record) for f in safe_logger("jupyter_mlops.x").filters)
    assert record.getMessage() == "store http://alice:***@h: down"


def test_a_pipeline_step_error_quoting_the_uri_is_recorded_without_it(project: Path) -> None:
    """A step's notebook fails with an error quoting a URI with its password (as MLflow's
    does): the pipeline record, its MLflow tags and the raised error hold no password."""
    from mlflow import MlflowClient

    from jupyter_mlops import pipelines
    from jupyter_mlops.config import load_config
    from tests.test_pipelines import notebook, write_pipeline

    uri = f"http://alice:{PASSWORD}@127.0.0.1:1"
    notebook(project / "fails.ipynb", f"raise RuntimeError('API request to {uri}/api failed')")
    spec = write_pipeline(project, {"name": "leaky", "steps": {"a": {"notebook": "fails.ipynb"}}})
    record = pipelines.run(spec)
    error = record.steps["a"].error or ""
    assert "RuntimeError" in error and "http://alice:***@127.0.0.1:1/api" in error
    with pytest.raises(pipelines.PipelineError) as raised:
        record.raise_for_status()
    client = MlflowClient(load_config().tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    tags = [str(run.data.tags) for run in runs]
    assert any("alice:***@" in t for t in tags)  # the step's run carries the error, masked
    on_disk = [p.read_text() for p in (project / ".mlops" / "pipelines").rglob("*.json")]
    assert leaks([*tags, *on_disk, str(raised.value)]) == []
