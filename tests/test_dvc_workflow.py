"""DVC's own workflow with the real tools: git commits of the ``.dvc`` files, ``dvc gc``,
``pipeline export --dvc`` then ``git clone`` + ``dvc pull`` + ``dvc dag`` + ``dvc repro``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from jupyter_mlops import pipelines
from jupyter_mlops.config import load_config
from jupyter_mlops.data import DataSnapshot, restore, snapshot
from jupyter_mlops.data.dvcfiles import object_path, read_dvc_file
from jupyter_mlops.data.keep import keep_all
from jupyter_mlops.data.pointers import TAG_UNCOMMITTED
from jupyter_mlops.tracking.lifecycle import track

from .conftest import git
from .test_pipelines import notebook, write_pipeline


def dvc(cwd: Path, *args: str, ok: bool = True, **env_vars: str) -> str:
    """The real ``dvc`` CLI (as ``python -m dvc``), with this interpreter's folder on PATH
    so that stage commands (``python -m jupyter_mlops.pipelines``) find the package."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        **env_vars,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (proc.returncode == 0) == ok, f"dvc {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def run_tags(run_id: str) -> dict[str, str]:
    return dict(MlflowClient(load_config().tracking_uri).get_run(run_id).data.tags)


# -- the commit a run records holds its data pointers, or the run says it does not -----------
def test_a_run_whose_commit_lacks_its_dvc_files_is_dirty_and_says_how_to_fix_it(
    git_project: Path, iris_csv: Path
) -> None:
    with track("pointers", data=[iris_csv]) as run:
        pass
    assert run.git_dirty is True
    tags = run_tags(run.run_id)
    assert tags["mlops.git.dirty"] == "true"
    assert json.loads(tags[TAG_UNCOMMITTED]) == ["data/iris.csv.dvc"]
    hint = "`git add data/iris.csv.dvc data/.gitignore && git commit`, then `dvc push`"
    assert hint in str(run.card())

    git(git_project, "add", "data/iris.csv.dvc", "data/.gitignore")
    git(git_project, "commit", "-q", "-m", "data")
    with track("pointers", data=[iris_csv]) as clean:
        pass
    assert clean.git_dirty is False
    tags = run_tags(clean.run_id)
    assert tags["mlops.git.dirty"] == "false" and TAG_UNCOMMITTED not in tags
    assert "git add" not in str(clean.card())

    iris_csv.write_text(iris_csv.read_text() + "5.0,3.0,1.5,0.2,0\n")  # new data, new .dvc
    with track("pointers", data=[iris_csv]) as changed:
        pass
    assert changed.git_dirty is True
    assert json.loads(run_tags(changed.run_id)[TAG_UNCOMMITTED]) == ["data/iris.csv.dvc"]
    assert "`git add data/iris.csv.dvc && git commit`" in str(changed.card())


# -- dvc gc -----------------------------------------------------------------------------------
def test_dvc_gc_keeps_every_snapshot_a_run_refers_to(git_project: Path) -> None:
    data = git_project / "data"
    (data / "parts").mkdir(parents=True)
    (data / "train.csv").write_text("x,y\n1,2\n")
    (data / "parts" / "a.txt").write_text("first a\n")
    (data / "parts" / "b.txt").write_text("b\n")
    first = snapshot([data / "train.csv", data / "parts"], git_project)
    (data / "train.csv").write_text("x,y\n3,4\n")
    (data / "parts" / "a.txt").write_text("second a\n")
    second = snapshot([data / "train.csv", data / "parts"], git_project)
    assert {s.md5 for s in first}.isdisjoint(s.md5 for s in second)

    out = dvc(git_project, "gc", "-w", "-f")  # DVC's standard clean-up, as users run it
    assert "Removed" in out
    cache = git_project / ".dvc" / "cache" / "files" / "md5"
    assert not object_path(str(cache), first[0].md5).exists()  # gc did remove them
    assert not object_path(str(cache), first[1].md5).exists()

    restored = restore(first[0], git_project / "old" / "train.csv", git_project)
    assert restored.read_text() == "x,y\n1,2\n"
    folder = restore(first[1], git_project / "old" / "parts", git_project)
    assert (folder / "a.txt").read_text() == "first a\n"
    assert (folder / "b.txt").read_text() == "b\n"
    assert object_path(str(cache), first[0].md5).exists()  # back in DVC's own cache
    # The current data is untouched by all this.
    assert (data / "train.csv").read_text() == "x,y\n3,4\n"


def test_keep_all_protects_snapshots_made_without_jupyter_mlops(git_project: Path) -> None:
    # A snapshot by plain `dvc add` (or by a jupyter-mlops that did not keep them yet).
    (git_project / "old.csv").write_text("before\n")
    dvc(git_project, "init", "-q")
    dvc(git_project, "add", "old.csv")
    out = read_dvc_file(git_project / "old.csv.dvc")
    assert out is not None
    old = DataSnapshot("old.csv", out["md5"], int(out["size"]), 1)
    (git_project / "old.csv").write_text("after\n")
    dvc(git_project, "add", "old.csv")

    assert keep_all(git_project) == 2  # both versions now in the cache
    assert keep_all(git_project) == 0
    dvc(git_project, "gc", "-w", "-f")
    cache = git_project / ".dvc" / "cache" / "files" / "md5"
    assert not object_path(str(cache), old.md5).exists()
    assert restore(old, git_project / "back.csv", git_project).read_text() == "before\n"


def test_a_pipeline_run_says_when_its_commit_lacks_its_inputs_dvc_files(
    git_project: Path,
) -> None:
    (git_project / "data").mkdir()
    (git_project / "data" / "rows.csv").write_text("a\n")
    notebook(git_project / "noop.ipynb", "print(open(src).read())", params="src = 'x'")
    spec = write_pipeline(
        git_project,
        {
            "name": "noop",
            "params": {"src": "data/rows.csv"},
            "steps": {"noop": {"notebook": "noop.ipynb", "inputs": ["${src}"]}},
        },
    )
    record = pipelines.run(spec)
    record.raise_for_status()
    assert record.mlflow_run_id is not None
    tags = run_tags(record.mlflow_run_id)
    assert tags["mlops.git.dirty"] == "true"
    assert json.loads(tags[TAG_UNCOMMITTED]) == ["data/rows.csv.dvc"]


# -- pipeline export --dvc, git clone, dvc pull / dag / repro ----------------------------------
PREP = "open(out_path, 'w').write(open(src).read().upper())"
FIT = (
    "import json\n"
    "rows = open(src).read().splitlines()\n"
    "json.dump({'alpha': alpha, 'type': type(alpha).__name__, 'rows': len(rows)},"
    " open(out_path, 'w'))"
)


def mlflow_runs(root: Path) -> list:
    client = MlflowClient(load_config(root).tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments))


def one_parent_per_repro(root: Path) -> dict[str, list[str]]:
    """Each parent pipeline run of ``root``'s store -> the steps of its child runs."""
    runs = mlflow_runs(root)
    parents = {r.info.run_id: r for r in runs if "mlops.pipeline.step" not in r.data.tags}
    children: dict[str, list[str]] = {p: [] for p in parents}
    for r in runs:
        if "mlops.pipeline.step" in r.data.tags:
            children[r.data.tags["mlflow.parentRunId"]].append(r.data.tags["mlops.pipeline.step"])
    for run_id, parent in parents.items():
        assert parent.info.status == "FINISHED", parent.info
        assert parent.data.tags.get("mlops.dvc.repro"), parent.data.tags
        children[run_id].sort()
    return children


@pytest.mark.slow
def test_exported_pipeline_clones_and_reproduces_with_dvc(
    git_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = git_project
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (project / "data").mkdir()
    (project / "data" / "rows.csv").write_text("a\nb\nc\n")
    pipe = project / "pipe"
    notebook(pipe / "prep.ipynb", PREP, params="src = 'in.txt'\nout_path = 'out.txt'")
    notebook(pipe / "fit.ipynb", FIT, params="alpha = 1.0\nsrc = 'x'\nout_path = 'y'")
    spec = write_pipeline(
        pipe,
        {
            "name": "rows",
            "params": {"alpha": 0.5, "data": "../data/rows.csv"},  # data outside pipe/
            "steps": {
                "prep": {
                    "notebook": "prep.ipynb",
                    "params": {"src": "${data}", "out_path": "${run_dir}/upper.csv"},
                    "inputs": ["${data}"],
                    "outputs": ["${run_dir}/upper.csv"],
                },
                "fit": {
                    "notebook": "fit.ipynb",
                    "params": {
                        "alpha": "${alpha}",  # a placeholder of a pipeline parameter
                        "src": "${run_dir}/upper.csv",
                        "out_path": "${run_dir}/fit.json",
                    },
                    "inputs": ["${run_dir}/upper.csv"],
                    "outputs": ["${run_dir}/fit.json"],
                },
            },
        },
    )
    dvc(project, "init", "-q")
    remote = tmp_path / "dvc-remote"
    dvc(project, "remote", "add", "-d", "local", str(remote))
    dvc(project, "add", "data/rows.csv")
    dvc_yaml = pipelines.export_dvc(spec)
    text = dvc_yaml.read_text()
    assert str(project) not in text and str(tmp_path) not in text  # no absolute path
    stages = yaml.safe_load(text)["stages"]
    assert stages["prep"]["deps"] == ["prep.ipynb", "../data/rows.csv"]
    assert stages["fit"]["outs"] == ["build/pipelines/rows/fit.json"]
    assert yaml.safe_load((pipe / "params.yaml").read_text())["fit"]["alpha"] == "${alpha}"

    dvc(pipe, "repro")
    fit = json.loads((pipe / "build/pipelines/rows/fit.json").read_text())
    assert fit == {"alpha": 0.5, "type": "float", "rows": 3}  # the number, not '${alpha}'
    assert list(one_parent_per_repro(project).values()) == [["fit", "prep"]]
    (record,) = pipelines.list_pipeline_runs()
    assert set(record.steps) == {"prep", "fit"} and record.ok

    dvc(project, "push")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "pipeline")

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    (clone / ".mlops").mkdir()
    dvc(clone, "pull")
    assert (clone / "data" / "rows.csv").read_text() == "a\nb\nc\n"
    dag = dvc(clone / "pipe", "dag", "--dot")
    # The input outside pipe/ stays linked to its .dvc file and to the stage reading it.
    assert '"../data/rows.csv.dvc" -> "prep"' in dag and '"prep" -> "fit"' in dag, dag
    # Relative paths: the clone sees the same stages, unchanged, so nothing reruns.
    assert "up to date" in dvc(clone / "pipe", "status")

    params = yaml.safe_load((clone / "pipe" / "params.yaml").read_text())
    params["alpha"] = 0.25
    (clone / "pipe" / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc(clone / "pipe", "repro")
    assert "'prep' didn't change" in out
    fit = json.loads((clone / "pipe/build/pipelines/rows/fit.json").read_text())
    assert fit["alpha"] == 0.25
    assert list(one_parent_per_repro(clone).values()) == [["fit"]]


@pytest.mark.slow
def test_a_failed_stage_fails_the_one_pipeline_run_of_its_repro(project: Path) -> None:
    notebook(project / "ok.ipynb", "open(out_path, 'w').write('ok')", params="out_path = 'x'")
    notebook(project / "boom.ipynb", "raise RuntimeError('boom')", params="src = 'x'")
    spec = write_pipeline(
        project,
        {
            "name": "fails",
            "steps": {
                "ok": {"notebook": "ok.ipynb", "params": {"out_path": "${run_dir}/ok.txt"},
                       "outputs": ["${run_dir}/ok.txt"]},
                "boom": {"notebook": "boom.ipynb", "params": {"src": "${run_dir}/ok.txt"},
                         "inputs": ["${run_dir}/ok.txt"]},
            },
        },
    )  # fmt: skip
    pipelines.export_dvc(spec)
    dvc(project, "init", "--no-scm", "-q")
    # Two dvc calls grouped as one run by JUPYTER_MLOPS_REPRO_ID (as a CI job would).
    dvc(project, "repro", "ok", JUPYTER_MLOPS_REPRO_ID="ci-1")
    dvc(project, "repro", ok=False, JUPYTER_MLOPS_REPRO_ID="ci-1")
    runs = mlflow_runs(project)
    (parent,) = [r for r in runs if "mlops.pipeline.step" not in r.data.tags]
    assert parent.data.tags["mlops.dvc.repro"] == "ci-1"
    assert parent.info.status == "FAILED"  # ended, not left RUNNING
    steps = {r.data.tags["mlops.pipeline.step"]: r for r in runs if r is not parent}
    assert {k: r.info.status for k, r in steps.items()} == {"ok": "FINISHED", "boom": "FAILED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in steps.values()} == {parent.info.run_id}
    (record,) = pipelines.list_pipeline_runs()
    assert record.status == "FAILED" and record.steps["ok"].status == "SUCCEEDED"
    assert "boom" in str(record.steps["boom"].error)


def test_a_stage_finds_its_dvc_repro(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_mlops.pipelines import dvcrepro

    monkeypatch.delenv(dvcrepro.REPRO_ENV, raising=False)
    assert dvcrepro.repro_id() is None  # pytest does not run under dvc
    monkeypatch.setenv(dvcrepro.REPRO_ENV, "ci-job-42")
    assert dvcrepro.repro_id() == "ci-job-42"
    for cmdline in (
        ["dvc", "repro"],
        ["/venv/bin/python3", "/venv/bin/dvc", "repro", "-f"],
        ["python", "-m", "dvc", "exp", "run"],
    ):
        assert dvcrepro.is_dvc_command(cmdline), cmdline
    for cmdline in (["python", "-m", "jupyter_mlops.pipelines", "step"], ["bash"], []):
        assert not dvcrepro.is_dvc_command(cmdline), cmdline
