"""Issue 19: reproduce a tracked run from its record, in a real project.

One git + DVC project holds two runs tracked by ``%%track`` cells executed in real
kernels through papermill: a seeded iris forest and an unseeded forest on noisy data.
Each test re-executes one of them with :func:`jupyter_mlops.reproduction.reproduce` (a fresh
kernel again) and checks the verdict, what was compared, the causes, and the record left
on the original run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError, NotFoundError
from jupyter_mlops.pipelines.execute import execute_notebook
from jupyter_mlops.reproduction import DIFFERENT, FAILED, REPRODUCED, reproduce
from jupyter_mlops.reproduction.result import TAG_AT, TAG_BY, TAG_REPRODUCES, TAG_VERDICT

from .conftest import IRIS_CELL, git
from .test_kernel import SETUP, _notebook

pytestmark = pytest.mark.slow

NOISY_CELL = """\
df = pd.read_csv("data/noisy.csv")
X_train, X_test, y_train, y_test = train_test_split(
    df.drop(columns="target"), df.target, test_size=0.3, random_state=0
)
model = RandomForestClassifier(n_estimators=5, max_depth=3)
model.fit(X_train, y_train)
test_loss = log_loss(y_test, model.predict_proba(X_test))
"""

# Reads a file that is neither committed nor snapshotted: gone later, the re-execution fails.
EXTRA_CELL = """\
extra = pd.read_csv("extra.csv")
n_rows = len(extra)
"""


@dataclass
class Project:
    root: Path
    config: Config
    seeded: str  # run id of the seeded iris forest
    unseeded: str  # run id of the unseeded forest on noisy data
    reader: str  # run id of the cell reading extra.csv (neither committed nor snapshotted)
    cell_seconds: dict[str, float]  # how long each original run was open


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _only_run(client: MlflowClient, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED", run.data.tags
    return str(run.info.run_id)


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The project, with both runs tracked from notebooks committed to git."""
    from sklearn.datasets import load_iris, make_classification

    base = tmp_path_factory.mktemp("reproduce")
    root = base / "proj"
    (root / ".mlops").mkdir(parents=True)
    (root / "data").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME", "JUPYTER_MLOPS_NOTEBOOK"):
            mp.delenv(name, raising=False)
        mp.setenv("DVC_SITE_CACHE_DIR", str(base / "dvc-site-cache"))
        load_iris(as_frame=True).frame.to_csv(root / "data" / "iris.csv", index=False)
        X, y = make_classification(n_samples=200, n_features=6, flip_y=0.2, random_state=0)
        import pandas as pd

        frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).assign(target=y)
        frame.to_csv(root / "data" / "noisy.csv", index=False)
        git(root, "init", "-q")
        (root / ".gitignore").write_text(".mlops/\n")
        setup = SETUP + "from sklearn.metrics import log_loss\n"
        iris = _notebook(
            root / "iris.ipynb",
            "%load_ext jupyter_mlops",
            setup,
            "%%track -e iris --data data/iris.csv\n" + IRIS_CELL,
        )
        noisy = _notebook(
            root / "noisy.ipynb",
            "%load_ext jupyter_mlops",
            setup,
            "%%track -e noisy --data data/noisy.csv\n" + NOISY_CELL,
        )
        reader = _notebook(
            root / "reader.ipynb",
            "%load_ext jupyter_mlops",
            "import pandas as pd",
            "%%track -e reader --no-model\n" + EXTRA_CELL,
        )
        (root / "extra.csv").write_text("a,b\n1,2\n")
        git(root, "add", ".gitignore", "iris.ipynb", "noisy.ipynb", "reader.ipynb")
        git(root, "commit", "-q", "-m", "notebooks")
        for nb in (iris, noisy, reader):
            execute_notebook(nb, root / ".mlops" / f"{nb.stem}.out.ipynb")
        git(root, "add", "-A")  # the .dvc files the snapshots wrote
        git(root, "commit", "-q", "-m", "data pointers")
        config = load_config(root)
        client = MlflowClient(config.tracking_uri)
        seeded, unseeded = _only_run(client, "iris"), _only_run(client, "noisy")
        seconds = {}
        for run_id in (seeded, unseeded):
            info = client.get_run(run_id).info
            seconds[run_id] = (info.end_time - info.start_time) / 1000
        yield Project(root, config, seeded, unseeded, _only_run(client, "reader"), seconds)


def test_a_seeded_iris_run_reproduces_and_is_recorded_on_the_original(proj: Project) -> None:
    started = time.perf_counter()
    result = reproduce(proj.seeded[:8], env="current", config=proj.config)
    took = time.perf_counter() - started
    print(
        f"\nreproduce (current env): {took:.1f} s; the cell's own run: "
        f"{proj.cell_seconds[proj.seeded]:.1f} s"
    )
    assert result.verdict == REPRODUCED, str(result)
    assert result.ok and result.differences == []
    assert result.original_run_id == proj.seeded
    assert result.checked["params"] >= 2  # n_estimators and the forest's own params
    assert result.checked["metrics"] == 1  # acc
    assert result.checked["predictions"] == 2  # on the input example and the training data
    assert result.checked["data"] == 1
    assert result.environment.mode == "current"
    assert result.workdir is not None and result.workdir.parent == (
        proj.root / ".mlops" / "reproductions"
    )
    assert str(result).startswith("REPRODUCED: run " + proj.seeded)

    client = MlflowClient(proj.config.tracking_uri)
    new = client.get_run(result.run_id)
    assert new.info.experiment_id == client.get_run(proj.seeded).info.experiment_id
    assert new.data.tags[TAG_REPRODUCES] == proj.seeded
    assert new.data.params["n_estimators"] == "100"
    assert json.loads(new.data.tags["mlops.data"]) == json.loads(
        client.get_run(proj.seeded).data.tags["mlops.data"]
    )
    tags = client.get_run(proj.seeded).data.tags
    assert tags[TAG_VERDICT] == REPRODUCED and tags[TAG_BY] == result.run_id
    assert tags[TAG_AT].endswith("Z")
    local = client.download_artifacts(proj.seeded, f"mlops/reproductions/{result.run_id}.json")
    saved = json.loads(Path(local).read_text())
    assert saved["verdict"] == REPRODUCED and saved["checked"] == result.checked


def test_b_unseeded_forest_is_different_with_the_random_state_as_cause(proj: Project) -> None:
    result = reproduce(proj.unseeded, env="current", config=proj.config)
    assert result.verdict == DIFFERENT, str(result)
    kinds = {(d.kind, d.name.split(" ")[0]) for d in result.differences}
    assert ("metric", "test_loss") in kinds, str(result)
    predictions = [d for d in result.differences if d.kind == "prediction"]
    assert predictions and all("rows differ" in d.detail for d in predictions), str(result)
    assert not any(d.kind in ("param", "data") for d in result.differences), str(result)
    first = result.causes[0]
    assert first.kind == "unseeded" and first.subject == "RandomForestClassifier", str(result)
    assert "random_state" in first.message
    text = str(result)
    assert text.startswith("DIFFERENT") and "likely causes" in text and "random_state" in text


def test_c_changed_workspace_data_is_restored_from_dvc_in_the_copy(proj: Project) -> None:
    data = proj.root / "data" / "iris.csv"
    saved = data.read_bytes()
    changed = saved + b"9.9,9.9,9.9,9.9,2\n"
    data.chmod(0o644)
    data.write_bytes(changed)
    try:
        result = reproduce(proj.seeded, env="current", config=proj.config)
        assert result.verdict == REPRODUCED, str(result)
        assert data.read_bytes() == changed  # the user's change is left alone
        assert result.workdir is not None
        restored = result.workdir / "data" / "iris.csv"
        snapshot = json.loads(
            MlflowClient(proj.config.tracking_uri).get_run(proj.seeded).data.tags["mlops.data"]
        )
        assert _md5(restored) == snapshot[0]["md5"] == hashlib.md5(saved).hexdigest()
    finally:
        data.write_bytes(saved)


def test_d_a_model_alias_reproduces_through_its_run(proj: Project) -> None:
    from jupyter_mlops.registry import register
    from jupyter_mlops.reproduction.source import resolve_ref

    register(proj.seeded, name="iris-rf", aliases=["champion"], config=proj.config)
    assert resolve_ref("iris-rf/1", proj.config) == proj.seeded
    assert resolve_ref("models:/iris-rf@champion", proj.config) == proj.seeded
    result = reproduce("iris-rf@champion", config=proj.config)
    assert result.original_run_id == proj.seeded
    assert result.verdict == REPRODUCED, str(result)
    # No env asked: the recorded pins are the running interpreter's, so it is used.
    assert result.environment.mode == "current" and result.environment.changes == []
    assert result.checked["predictions"] == 2


def test_e_fresh_clone_without_pushed_data_fails_naming_what_is_missing(
    proj: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(proj.root), str(clone)], check=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proj.config.tracking_uri)  # the shared store
    config = load_config(clone)
    snap = json.loads(
        MlflowClient(proj.config.tracking_uri).get_run(proj.seeded).data.tags["mlops.data"]
    )[0]
    started = time.perf_counter()
    result = reproduce(proj.seeded[:10], config=config)
    assert time.perf_counter() - started < 30  # nothing was executed
    assert result.verdict == FAILED and result.run_id is None, str(result)
    (cause,) = [c for c in result.causes if c.kind == "data_missing"]
    assert cause.subject == "data/iris.csv"
    assert snap["md5"] in cause.message and "dvc push" in cause.message
    assert str(proj.root) in cause.message  # where the data is: the project that snapshotted it
    (difference,) = result.differences
    assert (difference.kind, difference.name, difference.original) == (
        "data",
        "data/iris.csv",
        snap["md5"],
    )
    assert not (clone / "data" / "iris.csv").exists()
    tags = MlflowClient(proj.config.tracking_uri).get_run(proj.seeded).data.tags
    assert tags[TAG_VERDICT] == FAILED and tags[TAG_BY] == ""


def test_f_unknown_and_ambiguous_references_are_one_line_errors(proj: Project) -> None:
    client = MlflowClient(proj.config.tracking_uri)
    exp = client.get_experiment_by_name("iris")
    assert exp is not None
    twins = [client.create_run(exp.experiment_id, run_name="twin").info.run_id for _ in range(2)]
    for run_id in twins:
        client.set_terminated(run_id)
    with pytest.raises(NotFoundError) as missing:
        reproduce("no-such-run", config=proj.config)
    with pytest.raises(MlopsError) as ambiguous:
        reproduce("twin", config=proj.config)
    with pytest.raises(NotFoundError) as no_model:
        reproduce("nomodel@champion", config=proj.config)
    for error in (missing, ambiguous, no_model):
        assert "\n" not in str(error.value)
    assert "no-such-run" in str(missing.value)
    assert "ambiguous" in str(ambiguous.value) and all(t in str(ambiguous.value) for t in twins)
    assert "nomodel" in str(no_model.value)
    assert not any(
        p.name.startswith(twins[0]) for p in (proj.root / ".mlops" / "reproductions").iterdir()
    )


def test_g_a_cell_that_raises_fails_with_its_error_line_and_notebook(proj: Project) -> None:
    (proj.root / "extra.csv").unlink()  # read by the cell, never committed nor snapshotted
    result = reproduce(proj.reader, env="current", config=proj.config)
    assert result.verdict == FAILED, str(result)
    assert result.run_id is not None  # the tracked cell raised: its run exists, FAILED
    run = MlflowClient(proj.config.tracking_uri).get_run(result.run_id)
    assert run.info.status == "FAILED"
    execution = result.causes[0]
    assert execution.kind == "execution"
    assert "FileNotFoundError" in execution.message and "extra.csv" in execution.message
    assert result.workdir is not None
    executed = Path(execution.message.rsplit("executed copy: ", 1)[1].rstrip(")"))
    assert executed.is_file() and executed.is_relative_to(result.workdir)
    assert result.differences[0].kind == "execution"
    reads = [c for c in result.causes if c.kind == "unsnapshotted_read"]
    assert [c.subject for c in reads] == ["extra.csv"], str(result)
    assert "--data extra.csv" in reads[0].message


def test_h_an_old_run_reproduces_from_its_notebook_copy(proj: Project) -> None:
    """A run recorded before #19 has no ``%%track`` line nor context: the line is rebuilt
    from its experiment and data, the earlier cells come from its notebook copy. Its
    commit is not in this clone: the current tracked files stand in, and a cause says so."""
    import nbformat

    client = MlflowClient(proj.config.tracking_uri)
    run = client.get_run(proj.seeded)
    client.delete_tag(proj.seeded, "mlops.track.args")
    client.set_tag(proj.seeded, "mlflow.source.git.commit", "0badc0de" * 5)
    artifacts = Path(run.info.artifact_uri.removeprefix("file://")) / "mlops"
    (artifacts / "context.py").unlink(missing_ok=True)
    (artifacts / "requirements.txt").unlink(missing_ok=True)

    result = reproduce(proj.seeded, env="current", config=proj.config)
    assert result.verdict == REPRODUCED, str(result)
    assert result.checked["predictions"] == 2 and result.checked["data"] == 1
    assert result.workdir is not None
    book = nbformat.read(result.workdir / f"reproduce-{proj.seeded[:8]}.ipynb", as_version=4)
    sources = [c.source for c in book.cells]
    assert sources[0] == "%load_ext jupyter_mlops"
    assert "from sklearn.metrics import log_loss" in sources[1]  # the copy's imports cell
    assert sources[2].startswith("%%track --data data/iris.csv -e iris -n ")
    assert sources[2].endswith(IRIS_CELL)
    (code,) = result.causes
    assert code.kind == "code" and "0badc0de0bad" in code.message
    assert "not in this clone" in code.message and "current files" in code.message


def test_i_an_environment_that_cannot_be_built_fails_before_execution(proj: Project) -> None:
    client = MlflowClient(proj.config.tracking_uri)
    client.set_tag(proj.reader, "mlops.python", "3.99.1")  # no such interpreter here
    result = reproduce(proj.reader, env="fresh", config=proj.config)
    assert result.verdict == FAILED and result.run_id is None, str(result)
    cause = result.causes[0]
    assert cause.kind == "package" and "3.99" in cause.message, str(result)
    assert "\n" not in cause.message
    assert client.get_run(proj.reader).data.tags[TAG_VERDICT] == FAILED
