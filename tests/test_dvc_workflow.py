"""DVC's own workflow with the real tools: git commits of the ``.dvc`` files, ``dvc gc``,
``pipeline export --dvc`` then ``git clone`` + ``dvc pull`` + ``dvc dag`` + ``dvc repro``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from jupyter_mlops.config import load_config
from jupyter_mlops.data import restore, snapshot
from jupyter_mlops.data.dvcfiles import object_path
from jupyter_mlops.data.pointers import TAG_UNCOMMITTED
from jupyter_mlops.tracking.lifecycle import track

from .conftest import git


def dvc(cwd: Path, *args: str) -> str:
    """The real ``dvc`` CLI (as ``python -m dvc``), with this interpreter's folder on PATH
    so that stage commands (``python -m jupyter_mlops.pipelines``) find the package."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
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
