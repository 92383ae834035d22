"""Every face of reproduction: ``%reproduce``, ``jupyter-mlops reproduce`` (its options and
exit statuses), ``jupyter_mlops.reproduce(...)`` at the package root, and the verdict where
runs are shown (``%compare``'s table, the sidebar's run details).

The end-to-end tests reproduce real runs: a tracked iris forest (with its data snapshotted by
DVC, registered as ``iris-rf@champion``) and a run whose metric is unseeded randomness, each
re-executed in a real kernel on the running environment (``--env current``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from mlflow import MlflowClient

import jupyter_mlops
from jupyter_mlops.cli import main
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.reproduction.result import (
    DIFFERENT,
    REPRODUCED,
    TAG_AT,
    TAG_BY,
    TAG_REPRODUCES,
    TAG_VERDICT,
)
from jupyter_mlops.widgets.table import REPRODUCED_COLUMN

from .conftest import IRIS_CELL, git

REPO = Path(__file__).resolve().parents[1]
RANDOM_CELL = "import random\nscore = random.random()\n"


# -- the package root -------------------------------------------------------------------------
_ROOT_CHECK = """
import inspect, sys
{first}
import jupyter_mlops
from jupyter_mlops.errors import NotFoundError

def check(where):
    fn = jupyter_mlops.reproduce
    assert inspect.isfunction(fn), (where, fn)
    assert fn.__module__.startswith("jupyter_mlops.reproduction."), (where, fn.__module__)
    assert list(inspect.signature(fn).parameters)[:1] == ["ref"], where
    return fn

fn = check("first read")
import jupyter_mlops.reproduction.result
from jupyter_mlops.reproduction import Reproduction
assert sys.modules["jupyter_mlops.reproduction"].Reproduction is Reproduction
assert check("after the subpackage's import") is fn
assert jupyter_mlops.reproduction is sys.modules["jupyter_mlops.reproduction"]
from jupyter_mlops import reproduce
assert reproduce is fn
namespace = {{}}
exec("from jupyter_mlops import *", namespace)
assert namespace["reproduce"] is fn
try:
    jupyter_mlops.reproduce("no-such-run", env="current")  # the real function, called
except NotFoundError as exc:
    print("NotFoundError:", exc)
else:
    raise AssertionError("an unknown run reproduced")
"""


@pytest.mark.parametrize(
    "first",
    [
        "",
        "import jupyter_mlops.reproduction.result",
        "from jupyter_mlops.reproduction import result",
    ],
    ids=["root-first", "subpackage-first", "from-subpackage-first"],
)
def test_root_reproduce_is_the_function_whatever_was_imported_first(
    first: str, project: Path
) -> None:
    """In a fresh interpreter each time: ``jupyter_mlops.reproduce`` is the function
    whichever of the root and the ``reproduction`` package is imported first."""
    script = _ROOT_CHECK.format(first=first)
    env = {"PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NotFoundError:" in proc.stdout and "no-such-run" in proc.stdout


# -- options, before anything runs --------------------------------------------------------------
BAD_OPTIONS = [
    (["--tolerance", "-1"], "tolerance cannot be negative"),
    (["--tolerance", "nan"], "tolerance must be a finite number"),
    (["--tolerance", "inf"], "tolerance must be a finite number"),
    (["--tolerance", "tiny"], "tolerance must be a number"),
    (["--env", "stale"], "env must be current or fresh"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_are_usage_errors_in_both_faces(
    options: list[str], message: str, ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reproduce", "3f2a", *options]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("reproduce", " ".join(["3f2a", *options]))


def test_workdir_must_be_a_folder(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "taken.txt").write_text("a file\n")
    assert main(["reproduce", "3f2a", "--workdir", "taken.txt"]) == 2
    assert "--workdir 'taken.txt' is an existing file" in capsys.readouterr().err
    (project / "full").mkdir()
    (project / "full" / "kept.txt").write_text("not to be mixed with a scratch copy\n")
    assert main(["reproduce", "3f2a", "--workdir", "full"]) == 2
    assert "--workdir 'full' is not empty" in capsys.readouterr().err


def test_options_reach_the_function_parsed() -> None:
    from jupyter_mlops.cli import build_parser
    from jupyter_mlops.magics import MlopsMagics

    args = build_parser().parse_args(
        ["reproduce", "iris-rf@champion", "--env", "FRESH", "--tolerance", "1e-6", "--json"]
    )
    assert (args.run, args.env, args.tolerance, args.json) == (
        "iris-rf@champion",
        "fresh",
        1e-6,
        True,
    )
    defaults = build_parser().parse_args(["reproduce"])
    assert (defaults.run, defaults.env, defaults.tolerance, defaults.workdir) == (
        "last",
        None,
        1e-9,
        None,
    )
    parser = MlopsMagics.reproduce.parser  # type: ignore[attr-defined]
    magic = parser.parse_argstring('3f2a --env "current" --tolerance 0')
    assert magic.tolerance == 0.0 and magic.env == "current"


# -- the verdict where runs are shown (no reproduction needed: the recorded tags) -----------------
def test_compare_shows_a_reproduced_column_only_when_a_run_has_a_verdict(project: Path) -> None:
    config = load_config(project)
    ids = []
    for acc in (0.9, 0.8):
        with jupyter_mlops.track("cmp", config=config) as run:
            run.log_metrics({"acc": acc})
        ids.append(run.run_id)
    plain = jupyter_mlops.compare("cmp", ui_probe=(), config=config)
    assert "reproduced" not in [c["label"] for c in plain._columns()]

    MlflowClient(config.tracking_uri).set_tag(ids[0], TAG_VERDICT, DIFFERENT)
    widget = jupyter_mlops.compare("cmp", ui_probe=(), config=config)
    columns = widget._columns()
    assert columns[-1] == {"key": REPRODUCED_COLUMN, "label": "reproduced", "kind": "text"}
    shown = dict(zip(widget.table.row_ids, widget.table.rows, strict=True))
    assert shown[ids[0]][-1] == DIFFERENT and shown[ids[1]][-1] == ""
    assert "<th style='text-align:left'>reproduced</th>" in widget.static_html()
    widget.sort_by(REPRODUCED_COLUMN, ascending=True)  # sortable like any column
    assert widget.table.row_ids[0] == ids[0]


def test_the_run_card_shows_a_verdict_and_what_a_reproduction_reproduces(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(project)
    with jupyter_mlops.track("card", config=config) as run:
        run.log_metrics({"acc": 0.9})
    assert "reproduc" not in str(run.card())
    run.set_tags({TAG_VERDICT: DIFFERENT, TAG_BY: "0a1b2c", TAG_AT: "2025-06-01T12:00:00Z"})
    assert "  reproduced: DIFFERENT by 0a1b2c at 2025-06-01T12:00:00Z" in str(run.card())
    assert ">reproduced</th><td style='text-align:left'>DIFFERENT by 0a1b2c" in (
        run.card()._repr_html_()
    )
    monkeypatch.setenv("JUPYTER_MLOPS_REPRODUCES", run.run_id)  # as in a reproduction's kernel
    with jupyter_mlops.track("card", config=config) as again:
        again.log_metrics({"acc": 0.9})
    assert f"  reproduces: run {run.run_id}" in str(again.card())


def test_the_widget_column_is_the_recorded_tag() -> None:
    assert f"tags.{TAG_VERDICT}" == REPRODUCED_COLUMN


# -- end to end: real runs reproduced in real kernels -------------------------------------------
@dataclass
class Tracked:
    root: Path
    config: Config
    shell: Any
    iris: str  # a forest on data/iris.csv, registered as iris-rf@champion
    noisy: str  # a metric drawn from unseeded randomness


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, _shell: Any) -> Iterator[Tracked]:
    root = tmp_path_factory.mktemp("reproduce") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for var in ("MLFLOW_TRACKING_URI", "JUPYTER_MLOPS_NOTEBOOK"):
            mp.delenv(var, raising=False)
        mp.setenv("DVC_SITE_CACHE_DIR", str(root.parent / "dvc-site-cache"))
        from sklearn.datasets import load_iris

        (root / "data").mkdir()
        load_iris(as_frame=True).frame.to_csv(root / "data" / "iris.csv", index=False)
        notebook = root / "train.ipynb"
        notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
        mp.setenv("JPY_SESSION_NAME", str(notebook))
        (root / ".gitignore").write_text(".mlops/\n")
        git(root, "init", "-q")
        git(root, "add", ".gitignore", "train.ipynb")
        git(root, "commit", "-q", "-m", "init")

        # Cells as a kernel runs them (in its history): the imports are the context the
        # tracked cell depends on, which its reproduction runs first.
        _shell.reset(new_session=False)
        cells = [
            "import pandas as pd\n"
            "from sklearn.ensemble import RandomForestClassifier\n"
            "from sklearn.metrics import accuracy_score\n"
            "from sklearn.model_selection import train_test_split\n",
            f"%%track -e iris --data data/iris.csv\n{IRIS_CELL}",  # a card, shown again
            f"%%track -e noisy --quiet --no-model\n{RANDOM_CELL}",
        ]
        config = load_config(root)
        for cell in cells:
            assert _shell.run_cell(cell, store_history=True).success, cell
        iris_id = _newest(config, "iris")
        jupyter_mlops.register(iris_id, name="iris-rf", aliases=["champion"], config=config)
        try:
            yield Tracked(root, config, _shell, iris_id, _newest(config, "noisy"))
        finally:
            import mlflow

            while mlflow.active_run() is not None:
                mlflow.end_run()


def _newest(config: Config, experiment: str) -> str:
    client = MlflowClient(config.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{TAG_REPRODUCES}` IS NULL",
        order_by=["attributes.start_time DESC"],
    )
    return str(runs[0].info.run_id)


def _tags(config: Config, run_id: str) -> dict[str, str]:
    return dict(MlflowClient(config.tracking_uri).get_run(run_id).data.tags)


def test_magic_reproduces_the_notebooks_last_run_and_every_view_shows_it(
    tracked: Tracked,
) -> None:
    result = tracked.shell.run_line_magic("reproduce", "last --env current")
    assert result.verdict == REPRODUCED, str(result)
    assert result.original_run_id == tracked.iris and result.run_id
    assert result.checked["params"] and result.checked["metrics"]
    assert f"<b style='color:#1a7f37'>{REPRODUCED}</b>" in result._repr_html_()

    tags = _tags(tracked.config, tracked.iris)
    assert tags[TAG_VERDICT] == REPRODUCED and tags[TAG_BY] == result.run_id and tags[TAG_AT]
    assert _tags(tracked.config, result.run_id)[TAG_REPRODUCES] == tracked.iris
    # the reproduction is now the newest run with a model; "last" still means the trained one
    from jupyter_mlops.tracking.runs.refs import find_run

    assert find_run("last", config=tracked.config).info.run_id == tracked.iris

    widget = jupyter_mlops.compare("iris", ui_probe=(), config=tracked.config)
    rows = dict(zip(widget.table.row_ids, widget.table.rows, strict=True))
    assert rows[tracked.iris][-1] == REPRODUCED

    from jupyter_mlops.server.views import SidebarViews

    detail = SidebarViews(tracked.root, tracked.config).run(tracked.iris[:8])
    assert detail["reproduction"] == {
        "verdict": REPRODUCED,
        "run_id": result.run_id,
        "at": tags[TAG_AT],
    }


def test_a_registered_version_reproduces_through_the_package_root(tracked: Tracked) -> None:
    assert "jupyter_mlops.reproduction.result" in sys.modules  # imported above: no matter
    result = jupyter_mlops.reproduce("iris-rf@champion", env="current", config=tracked.config)
    assert result.ok and result.original_run_id == tracked.iris, str(result)


def test_cli_exit_0_with_json_and_the_project_rebuilt_in_workdir(
    tracked: Tracked, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tracked.root.parent / "kept"
    options = ["--env", "current", "--tolerance", "0", "--json", "--workdir", str(workdir)]
    status = main(["reproduce", tracked.iris[:8], *options])
    out = json.loads(capsys.readouterr().out)
    assert status == 0, out
    assert out["verdict"] == REPRODUCED and out["original_run_id"] == tracked.iris
    assert out["environment"]["mode"] == "current"
    assert Path(out["workdir"]) == workdir
    restored = workdir / "data" / "iris.csv"
    assert restored.read_bytes() == (tracked.root / "data" / "iris.csv").read_bytes()
    (executed,) = workdir.rglob("*.out.ipynb")  # the reproduction's card names the original
    assert f"reproduces: run {tracked.iris}" in executed.read_text()


def test_cli_exit_1_when_the_run_does_not_reproduce(
    tracked: Tracked, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["reproduce", tracked.noisy, "--env", "current"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert out.startswith(f"{DIFFERENT}: run {tracked.noisy}")
    assert "metric score" in out
    assert _tags(tracked.config, tracked.noisy)[TAG_VERDICT] == DIFFERENT
