"""Snapshots pushed to a DVC remote and pulled into fresh clones (real git, DVC, MLflow)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import jupyter_mlops
from jupyter_mlops.data import DataSnapshot, PushError, ensure_dvc, restore, snapshot
from jupyter_mlops.data import state as state_file
from jupyter_mlops.data.snapshotting import route_counts
from jupyter_mlops.errors import DataError, NotFoundError

from .conftest import git

os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def remote_object(remote: Path, oid: str) -> Path:
    return remote / "files" / "md5" / oid[:2] / oid[2:]


def set_remote(project: Path, value: str) -> None:
    (project / "pyproject.toml").write_text(f'[tool.jupyter-mlops]\ndvc_remote = "{value}"\n')


def write_data(project: Path) -> tuple[bytes, dict[str, bytes]]:
    """data/train.csv and a data/images/ folder with a nested file."""
    csv = b"x,y\n" + b"".join(f"{i},{i * i}\n".encode() for i in range(500))
    tree = {"a.png": os.urandom(3000), "sub/b.png": os.urandom(2000), "sub/c.txt": b"label\n"}
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / "train.csv").write_bytes(csv)
    for rel, content in tree.items():
        target = project / "data" / "images" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return csv, tree


def read_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def state(project: Path) -> dict[str, dict]:
    return json.loads((project / ".mlops" / "data-state.json").read_text())["entries"]


def clone(project: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``git clone`` of ``project`` as the working directory, reading ``project``'s runs."""
    subprocess.run(["git", "clone", "-q", os.fspath(project), os.fspath(dest)], check=True)
    monkeypatch.chdir(dest)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / '.mlops' / 'mlflow.db'}")
    return dest


def test_tracked_data_is_pushed_and_restored_in_a_fresh_clone(
    git_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "remote"
    set_remote(git_project, "../remote")  # relative to the project root
    csv, tree = write_data(git_project)

    with jupyter_mlops.track(experiment="remote", data=["data/train.csv", "data/images"]) as run:
        pass
    fsnap, dsnap = jupyter_mlops.run_data(run.run_id)
    assert fsnap.md5 == md5(csv)
    manifest = json.loads(remote_object(remote, dsnap.md5).read_text())
    assert {e["relpath"]: e["md5"] for e in manifest} == {k: md5(v) for k, v in tree.items()}
    assert remote_object(remote, fsnap.md5).read_bytes() == csv
    for content in tree.values():
        assert remote_object(remote, md5(content)).read_bytes() == content
    # Configured for DVC too (so `dvc push`/`dvc pull` use it), relative to .dvc/.
    dvc_config = (git_project / ".dvc" / "config").read_text()
    assert "url = ../../remote" in dvc_config
    assert "remote = mlops" in dvc_config

    # A colleague's clone has the code, pyproject and .dvc files, but (here) not even the
    # .dvc/ folder (DVC init staged it; unstaged), no DVC cache, none of the data.
    git(git_project, "rm", "-r", "-q", "-f", "--cached", ".dvc", ".dvcignore")
    git(git_project, "add", "pyproject.toml", "data/.gitignore", "data/train.csv.dvc")
    git(git_project, "add", "data/images.dvc")
    git(git_project, "commit", "-q", "-m", "data")
    other = clone(git_project, tmp_path / "clone", monkeypatch)
    assert not (other / ".dvc").exists()
    assert not (other / "data" / "train.csv").exists()

    out = jupyter_mlops.restore_data(run.run_id, "data/train.csv", "restored/train.csv")
    assert out == other / "restored" / "train.csv"
    assert out.read_bytes() == csv
    out = jupyter_mlops.restore_data(run.run_id, "data/images", "restored/images")
    assert read_tree(out) == tree
    # Fetched into the clone's own cache: a second restore needs no remote.
    shutil.rmtree(remote)
    again = jupyter_mlops.restore_data(run.run_id, "data/images", other / "again")
    assert read_tree(again) == tree


def test_unchanged_data_is_not_pushed_again(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "remote"
    set_remote(project, os.fspath(remote))
    csv, _ = write_data(project)
    monkeypatch.setattr(state_file, "fs_now", lambda root: 2**62)  # no racy-timestamp skips
    fsnap, dsnap = snapshot(["data/train.csv", "data/images"], project)
    entries = state(project)
    assert entries["data/train.csv"]["pushed"] == f"mlops={remote}"
    assert entries["data/images"]["pushed"] == f"mlops={remote}"

    # Remove an object behind DVC's back: an unchanged re-snapshot does not even look.
    remote_object(remote, fsnap.md5).unlink()
    fast, pushed = route_counts["fast"], route_counts["pushed"]
    assert snapshot(["data/train.csv", "data/images"], project) == [fsnap, dsnap]
    assert route_counts["fast"] == fast + 2
    assert route_counts["pushed"] == pushed
    assert not remote_object(remote, fsnap.md5).exists()

    # In a fresh process it costs no DVC import either.
    code = (
        "import sys; from jupyter_mlops.data import snapshot, snapshotting; "
        f"snapshot(['data/train.csv', 'data/images'], {os.fspath(project)!r}); "
        "print(snapshotting.route_counts['fast'], 'dvc' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=project
    ).stdout.split()
    assert out == ["2", "False"]

    # Changed data is pushed.
    (project / "data" / "train.csv").write_bytes(csv + b"1,1\n")
    (new,) = snapshot(["data/train.csv"], project)
    assert remote_object(remote, new.md5).read_bytes() == csv + b"1,1\n"
    assert route_counts["pushed"] == pushed + 1


def test_unreachable_remote_fails_clearly_and_keeps_the_snapshot(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the remote's parent folder should be\n")
    set_remote(project, os.fspath(blocker / "remote"))
    csv, tree = write_data(project)
    monkeypatch.setattr(state_file, "fs_now", lambda root: 2**62)

    with pytest.raises(PushError) as err:
        snapshot(["data/train.csv", "data/images"], project)
    message = str(err.value)
    assert isinstance(err.value, DataError)
    assert "'mlops'" in message and os.fspath(blocker / "remote") in message
    assert "safe in the local DVC cache" in message and "dvc push -r mlops" in message
    fsnap, dsnap = err.value.snapshots
    assert fsnap.md5 == md5(csv) and dsnap.nfiles == 3
    # Nothing lost: snapshot files, cache objects and the state (marked not pushed).
    assert (project / "data" / "train.csv.dvc").is_file()
    assert (project / "data" / "images.dvc").is_file()
    assert restore(fsnap, tmp_path / "local.csv", project).read_bytes() == csv
    assert read_tree(restore(dsnap, tmp_path / "local-images", project)) == tree
    entries = state(project)
    assert entries["data/train.csv"]["pushed"] is None

    # A tracked run goes on: it records the data and says it is not on the remote yet.
    import jupyter_mlops

    with jupyter_mlops.track(data=["data/train.csv"]) as run:
        run.log_metrics({"m": 1.0})
    assert run.status == "FINISHED" and [s.md5 for s in run.data] == [fsnap.md5]
    assert any("dvc push -r mlops" in note for note in run.notes)
    assert run.tags["mlops.data.unpushed"] == "mlops"

    # Once the remote is reachable, a re-snapshot pushes without hashing again.
    blocker.unlink()
    hashed = route_counts["onepass"] + route_counts["dvc"]
    assert snapshot(["data/train.csv", "data/images"], project) == [fsnap, dsnap]
    assert route_counts["onepass"] + route_counts["dvc"] == hashed
    assert remote_object(blocker / "remote", fsnap.md5).read_bytes() == csv
    for content in tree.values():
        assert remote_object(blocker / "remote", md5(content)).read_bytes() == content
    assert state(project)["data/images"]["pushed"] == f"mlops={blocker / 'remote'}"


def test_missing_or_corrupted_remote_objects_are_clear_errors(
    git_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "remote"
    set_remote(git_project, os.fspath(remote))
    _, tree = write_data(git_project)
    fsnap, dsnap = snapshot(["data/train.csv", "data/images"], git_project)
    git(git_project, "add", "pyproject.toml")
    git(git_project, "commit", "-q", "-m", "remote")
    other = clone(git_project, tmp_path / "clone", monkeypatch)

    # A folder file missing on the remote: named with its md5, nothing half-restored.
    lost = md5(tree["sub/b.png"])
    remote_object(remote, lost).unlink()
    with pytest.raises(NotFoundError, match="1 of its 3 file") as err:
        restore(dsnap, other / "images", other)
    assert lost in str(err.value) and "'mlops'" in str(err.value)
    assert "dvc push -r mlops" in str(err.value)
    assert not (other / "images").exists()

    # A corrupted object (read-only, as DVC leaves them, so DVC trusts it and sends it):
    # detected by its md5 and dropped from the clone's cache.
    obj = remote_object(remote, fsnap.md5)
    obj.chmod(0o644)
    obj.write_bytes(b"x,y\n0,0\n")
    obj.chmod(0o444)
    with pytest.raises(DataError, match="corrupted") as err:
        restore(fsnap, other / "train.csv", other)
    assert "'mlops'" in str(err.value) and fsnap.md5 in str(err.value)
    assert not (other / "train.csv").exists()
    cache = other / ".dvc" / "cache" / "files" / "md5"
    assert not (cache / fsnap.md5[:2] / fsnap.md5[2:]).exists()

    # A corrupted folder manifest: checked against its md5 before its list is trusted.
    shutil.rmtree(other / ".dvc" / "cache")
    manifest = remote_object(remote, dsnap.md5)
    manifest.chmod(0o644)
    manifest.write_text('[{"md5": "' + md5(b"evil") + '", "relpath": "../../evil"}]')
    manifest.chmod(0o444)
    with pytest.raises(DataError, match="manifest of 'data/images' on the DVC remote 'mlops'"):
        restore(dsnap, other / "images", other)
    assert not (other / "images").exists()

    # A snapshot that never reached the remote (no manifest there, nor in the cache).
    manifest.unlink()
    with pytest.raises(NotFoundError, match=r"neither in .* nor on the DVC remote 'mlops'"):
        restore(dsnap, other / "images", other)
    ghost = DataSnapshot("ghost.csv", "0" * 32, 1, 1)
    with pytest.raises(NotFoundError, match=r"0{32}"):
        restore(ghost, other / "ghost.csv", other)


def test_remote_from_dvc_own_config(
    git_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "dvc-store"
    ensure_dvc(git_project)
    subprocess.run(
        [sys.executable, "-m", "dvc", "remote", "add", "-d", "storage", os.fspath(store)],
        cwd=git_project,
        check=True,
        capture_output=True,
    )
    csv, tree = write_data(git_project)
    fsnap, dsnap = snapshot(["data/train.csv", "data/images"], git_project)
    assert remote_object(store, fsnap.md5).read_bytes() == csv
    assert remote_object(store, dsnap.md5).is_file()
    assert state(git_project)["data/images"]["pushed"] == f"storage={store}"
    assert "mlops" not in (git_project / ".dvc" / "config").read_text()

    git(git_project, "add", ".dvc/config", ".dvc/.gitignore", ".dvcignore", "data")
    git(git_project, "commit", "-q", "-m", "data")
    other = clone(git_project, tmp_path / "clone", monkeypatch)
    assert restore(fsnap, other / "train.csv", other).read_bytes() == csv
    assert read_tree(restore(dsnap, other / "images", other)) == tree


def test_without_a_remote_nothing_is_pushed_and_the_hint_says_how(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_data(project)
    monkeypatch.setattr(state_file, "fs_now", lambda root: 2**62)
    (fsnap,) = snapshot(["data/train.csv"], project)
    assert state(project)["data/train.csv"]["remote"] is None
    obj = project / ".dvc" / "cache" / "files" / "md5" / fsnap.md5[:2] / fsnap.md5[2:]
    obj.unlink()
    shutil.rmtree(project / ".dvc" / "cache" / "mlops-keep")  # and no copy kept from dvc gc
    with pytest.raises(NotFoundError, match="No DVC remote is configured"):
        restore(fsnap, tmp_path / "out.csv", project)


def test_bad_dvc_remote_setting(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.jupyter-mlops]\ndvc_remote = 3\n")
    write_data(project)
    with pytest.raises(jupyter_mlops.MlopsError, match="dvc_remote"):
        snapshot(["data/train.csv"], project)
