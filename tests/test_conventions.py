"""The conventions of a Python/Jupyter tool: ``--version``, ``--json`` listings with
documented keys, exit statuses 0/1/2, magic settings as traitlets (``%config``), cell-magic
usage lines, and a wheel whose metadata says its license, URLs, Pythons and typing.

Command lines run as real processes where the exit status or a pipe is the point; listings
read a real MLflow store, registry, deployment and pipeline records.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlops import __version__
from jupyter_mlops.cli import main
from jupyter_mlops.commands.output import LISTINGS
from jupyter_mlops.commands.settings import PYPROJECT_KEYS, SETTINGS
from jupyter_mlops.errors import EXIT_CODES

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """``jupyter-mlops ARGS`` as a process: the console script beside this Python (this
    checkout's code first on the path), else ``python -m jupyter_mlops.cli``."""
    script = Path(sys.executable).parent / "jupyter-mlops"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jupyter_mlops.cli"]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1", **(env or {})}
    return subprocess.run(
        [*command, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300
    )


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _keys(listing: str) -> list[str]:
    return list(LISTINGS[listing].keys)


@pytest.fixture
def magics(ip: Any) -> Any:
    """The shell's MlopsMagics, its settings unset again afterwards (the shell is shared)."""
    instance = ip.magics_manager.registry["MlopsMagics"]
    yield instance
    for setting in SETTINGS:
        setattr(instance, setting.name, None)


def test_version_on_the_command_line_and_in_the_magic(ip: Any, project: Path) -> None:
    done = _cli("--version", cwd=project)
    assert (done.returncode, done.stdout) == (0, f"jupyter-mlops {__version__}\n")
    shown = ip.run_line_magic("mlops", "--version")
    assert repr(shown) == str(shown) == f"jupyter-mlops {__version__}"


def test_exit_statuses_of_a_real_process(project: Path) -> None:
    ok = _cli("models", "--json", cwd=project)
    assert (ok.returncode, json.loads(ok.stdout)) == (0, [])
    missing = _cli("history", "no-such-model", cwd=project)  # a domain error
    assert missing.returncode == 1
    assert missing.stderr.startswith("jupyter-mlops: error: ") and "no-such-model" in missing.stderr
    for wrong in (["runs", "--limit", "many"], ["no-such-command"], ["retry", "--json"]):
        done = _cli(*wrong, cwd=project)
        assert done.returncode == 2, (wrong, done.stderr)
    helped = _cli("--help", cwd=project)
    assert helped.returncode == 0
    epilog = helped.stdout.split("exit status:")[1]
    assert [line.split()[0] for line in epilog.splitlines() if line[:3].strip().isdigit()] == [
        str(code) for code in EXIT_CODES
    ]


def test_main_returns_argparse_status_instead_of_raising(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"jupyter-mlops {__version__}\n"
    assert main(["runs", "-n", "x"]) == 2
    assert "must be a whole number" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_listings_print_their_documented_keys(
    project: Path, iris_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import jupyter_mlops
    from jupyter_mlops.config import load_config
    from jupyter_mlops.pipelines.records import PipelineRun, StepRun, new_run_id, runs_root

    frame = pd.read_csv(iris_csv)
    X, y = frame.drop(columns="target"), frame.target
    with jupyter_mlops.track(experiment="conventions", name="first") as run:
        run.log_params({"C": 1.0})
        run.log_metrics({"acc": 0.97})
        run.log_model(LogisticRegression(max_iter=300).fit(X, y), "model", X=X)
    jupyter_mlops.register(run.run_id, name="conv-model", aliases=["champion"])
    run_id = new_run_id()
    PipelineRun(
        run_id,
        "train",
        "pipeline.yaml",
        str(runs_root(load_config()) / run_id),
        status="SUCCEEDED",
        steps={"fit": StepRun("fit", "fit.ipynb", "local", status="SUCCEEDED")},
        ended=1.0,
    ).save()

    (runs,) = _json(capsys, "runs", "--json")
    assert list(runs) == _keys("runs")
    assert (runs["run_id"], runs["experiment"], runs["run_name"]) == (
        run.run_id,
        "conventions",
        "first",
    )
    assert runs["params"]["C"] == "1.0" and runs["metrics"]["acc"] == 0.97
    assert runs["start_time"].endswith("+00:00")

    (model,) = _json(capsys, "models", "--json")
    assert list(model) == _keys("models")
    assert model["aliases"] == {"champion": "1"}
    assert list(model["versions"][0]) == list(dict(LISTINGS["models"].nested)["versions[]"])
    assert model["versions"][0]["run_id"] == run.run_id

    (event,) = _json(capsys, "history", "conv-model", "--json")
    assert list(event) == _keys("history")
    assert (event["alias"], event["action"], event["version"]) == ("champion", "register", "1")

    info = _json(capsys, "info", "--json")
    assert list(info) == _keys("info")
    assert (info["version"], info["project_root"]) == (__version__, str(project))
    assert info["store_reachable"] is True and info["dvc_initialised"] is False

    (entry,) = _json(capsys, "pipeline", "history", "--json")
    assert list(entry) == _keys("pipeline_history")
    assert (entry["id"], entry["pipeline"], entry["status"]) == (run_id, "train", "SUCCEEDED")
    assert _json(capsys, "retry", "--list", "--json") == []
    assert _json(capsys, "server", "status", "--json") == []


def test_runs_json_through_a_pipe(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import jupyter_mlops

    with jupyter_mlops.track(experiment="piped") as run:
        run.log_metrics({"acc": 0.5})
    jq = shutil.which("jq")
    if jq is None:  # the pipe is the point; without jq, the same JSON read by Python
        done = _cli("runs", "--json", cwd=project)
        assert json.loads(done.stdout)[0]["run_id"] == run.run_id
        return
    script = Path(sys.executable).parent / "jupyter-mlops"
    launcher = f"'{script}'" if script.exists() else f"'{sys.executable}' -m jupyter_mlops.cli"
    done = subprocess.run(
        f"{launcher} runs --json | '{jq}' -r '.[0].run_id'",
        shell=True,
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert done.stdout.strip() == run.run_id


@pytest.mark.slow
def test_deployments_as_json_without_their_token(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import jupyter_mlops
    from jupyter_mlops import serving

    X, y = load_iris(return_X_y=True, as_frame=True)
    with jupyter_mlops.track(experiment="conv-deploy") as run:
        run.log_model(LogisticRegression(max_iter=300).fit(X, y), "model", X=X)
    jupyter_mlops.register(run.run_id, name="conv-served", aliases=["champion"])
    dep = serving.deploy("conv-served@champion", name="conv", token="tok-never-printed")
    try:
        (listed,) = _json(capsys, "deploy", "list", "--json")
        status = _json(capsys, "deploy", "status", "conv", "--json")
    finally:
        serving.stop("conv")
    assert list(listed) == list(status) == _keys("deployments")
    assert (listed["name"], listed["url"], listed["token_required"]) == ("conv", dep.url, True)
    assert listed["primary"]["name"] == "conv-served" and listed["primary"]["version"] == "1"
    assert listed["primary"]["alias"] == "champion" and listed["canary"] is None
    stopped = _json(capsys, "deploy", "status", "conv", "--json")
    assert stopped["status"] == "stopped"
    assert main(["deploy", "list", "--json"]) == 0
    assert "tok-never-printed" not in capsys.readouterr().out

    # Alert rules: a webhook's path is its secret (Slack's is), so only its host is shown.
    hook = "https://hooks.example.com/services/SECRET-PATH"
    rules = _json(
        capsys,
        *("monitor", "rules", "conv", "--add", "p99_ms > 50", "--action", f"webhook:{hook}"),
        *("--webhook", "https://ops:pw@alerts.example.com/SECRET-TOO", "--json"),
    )
    assert list(rules) == _keys("alert_rules")
    assert rules["rules"] == [
        {
            "expression": "p99_ms > 50",
            "name": "p99_ms > 50",
            "action": "webhook:https://hooks.example.com/...",
            "cooldown_s": 0.0,
        }
    ]
    assert rules["webhook"] == "https://alerts.example.com/..."
    assert _json(capsys, "monitor", "rules", "conv", "--json") == rules


def test_json_redacts_passwords_in_urls(
    ip: Any, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 9: the store is unreachable, so the cell's run is buffered.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret@127.0.0.1:9")
    monkeypatch.setenv("JUPYTER_MLOPS_PREDICTION_LOG", "postgresql://bob:pw-two@127.0.0.1:9/p")
    ip.run_cell_magic("track", "--quiet -e buffered", "acc = 0.5")
    capsys.readouterr()
    info = _json(capsys, "info", "--json")
    assert info["tracking_uri"] == "http://alice:***@127.0.0.1:9"
    assert info["prediction_log"] == "postgresql://bob:***@127.0.0.1:9/p"
    assert info["store_reachable"] is False and info["buffered_runs"] == 1
    (buffered,) = _json(capsys, "retry", "--list", "--json")
    assert list(buffered) == _keys("pending")
    assert buffered["tracking_uri"] == "http://alice:***@127.0.0.1:9"
    assert (buffered["experiment"], buffered["metrics"]) == ("buffered", {"acc": 0.5})
    assert "alice:***@" in buffered["reason"]  # the error quoted the URL
    for argv in (["info", "--json"], ["retry", "--list", "--json"], ["retry", "--list"]):
        assert main(argv) == 0
        assert "s3cret" not in capsys.readouterr().out


def _cards(ip: Any, line: str) -> int:
    """How many outputs ``%%track LINE`` shows (its run card is one)."""
    from IPython.utils.capture import capture_output

    with capture_output() as shown:
        ip.run_cell_magic("track", line, "acc = 0.75")
    return len(shown.outputs)


def test_config_sets_magic_options_and_the_line_wins(ip: Any, magics: Any) -> None:
    from jupyter_mlops.tracking import latest_runs

    assert _cards(ip, "--no-model") == 1
    ip.run_line_magic("config", "MlopsMagics.quiet = True")
    ip.run_line_magic("config", "MlopsMagics.experiment = 'from-config'")
    assert magics.quiet is True
    assert _cards(ip, "--no-model") == 0
    assert latest_runs(limit=1)[0]["experiment"] == "from-config"
    assert _cards(ip, "--no-model --no-quiet -e from-line") == 1  # the line beats %config
    assert latest_runs(limit=1)[0]["experiment"] == "from-line"


def test_settings_precedence_pyproject_and_default(ip: Any, project: Path, magics: Any) -> None:
    for _ in range(3):
        ip.run_cell_magic("track", "--quiet --no-model -e precedence", "acc = 0.5")

    def listed(line: str = "runs") -> int:
        return len(ip.run_line_magic("mlops", line).rows)

    assert listed() == 3  # the default, 10
    (project / "pyproject.toml").write_text("[tool.jupyter-mlops]\nruns_limit = 2\nquiet = true\n")
    assert (listed(), magics.setting("quiet")) == (2, True)
    ip.run_line_magic("config", "MlopsMagics.runs_limit = 1")
    assert listed() == 1
    assert listed("runs -n 3") == 3
    (project / "pyproject.toml").write_text("[tool.jupyter-mlops]\nruns_limit = 'many'\n")
    magics.runs_limit = None
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="runs_limit must be a int"):
        ip.run_line_magic("mlops", "runs")


@pytest.mark.slow
def test_ipython_config_file_sits_between_config_magic_and_pyproject(
    project: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(
        "c.InteractiveShellApp.extensions = ['jupyter_mlops']\nc.MlopsMagics.runs_limit = 7\n"
    )
    (project / "pyproject.toml").write_text(
        "[tool.jupyter-mlops]\nruns_limit = 2\nmonitor_interval = 9\n"
    )
    code = (
        "m = get_ipython().magics_manager.registry['MlopsMagics']\n"
        "print(m.setting('runs_limit'), m.setting('monitor_interval'))\n"
        "get_ipython().run_line_magic('config', 'MlopsMagics.runs_limit = 4')\n"
        "print(m.setting('runs_limit'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "-c", code],
        cwd=project,
        env={**os.environ, "IPYTHONDIR": str(tmp_path / "ipython"), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["7", "9.0", "4"]


def test_magic_help_shows_each_magic_as_typed(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for typed, usage in (
        ("%%track?", "%%track [-e EXPERIMENT]"),
        ("%register?", "%register [-n NAME]"),
        ("%deploy?", "%deploy [--name NAME]"),
    ):
        ip.run_cell(typed)
        shown = capsys.readouterr().out
        assert f"::\n\n  {usage}" in shown, shown[:300]


def test_settings_are_traits_documented_and_known_to_the_config() -> None:
    from jupyter_mlops.commands import face_table
    from jupyter_mlops.config import MAGIC_KEYS
    from jupyter_mlops.magics import MlopsMagics

    configurable = set(MlopsMagics.class_traits(config=True))
    assert configurable == {s.name for s in SETTINGS}
    assert MAGIC_KEYS == PYPROJECT_KEYS
    docs = (REPO / "docs" / "commands.md").read_text()
    assert docs == face_table()
    for setting in SETTINGS:
        assert f"`MlopsMagics.{setting.name}`" in docs
    for listing in LISTINGS.values():
        assert ", ".join(f"`{k}`" for k in listing.keys) in docs
    for code in EXIT_CODES:
        assert f"\n| {code} | " in docs


@pytest.mark.slow
def test_wheel_metadata_license_urls_classifiers_and_typing(tmp_path: Path) -> None:
    """Built as pip builds it (isolated hatchling), with the sidebar's npm build skipped
    (SKIP_JUPYTER_BUILDER, hatch-jupyter-builder's switch): the metadata is the point."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    source = tmp_path / "src"
    for name in filter(None, files):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        env={**os.environ, "SKIP_JUPYTER_BUILDER": "1"},
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("jupyter_mlops-*.whl")
    info = f"jupyter_mlops-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"{info}/METADATA").decode()
        names = set(archive.namelist())
        license_text = archive.read(f"{info}/licenses/LICENSE").decode()
    headers = [line.split(": ", 1) for line in metadata.split("\n\n")[0].splitlines()]
    fields: dict[str, list[str]] = {}
    for key, value in headers:
        fields.setdefault(key, []).append(value)
    assert fields["License-Expression"] == ["BSD-3-Clause"]
    assert fields["License-File"] == ["LICENSE"]
    assert "BSD 3-Clause" in license_text and "jupyter-mlops contributors" in license_text
    urls = dict(u.split(", ", 1) for u in fields["Project-URL"])
    assert set(urls) == {"Homepage", "Source", "Issues", "Documentation"}
    assert urls["Source"] == "https://github.com/jupyter-mlops/jupyter-mlops"
    classifiers = fields["Classifier"]
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert "Framework :: Jupyter :: JupyterLab :: 4" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: not both
    assert {"jupyter_mlops/py.typed", "jupyter_mlops/commands/output.py"} <= names
