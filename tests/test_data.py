"""DVC snapshots and restores against real git and DVC repositories (no mocks)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jupyter_mlops.data.fastcopy as fastcopy
from jupyter_mlops.data import DataSnapshot, ensure_dvc, resolve_paths, restore, snapshot
from jupyter_mlops.data.snapshotting import route_counts
from jupyter_mlops.errors import DataError, NotFoundError

os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A plain project folder (no git) as the working directory.

    DVC keeps per-repo state (hashes, links) in its "site cache dir", /var/tmp/dvc by
    default; DVC_SITE_CACHE_DIR (read before any repo config, so it also covers
    ``Repo.init``) keeps it inside tmp_path.
    """
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    yield proj.resolve()


@pytest.fixture
def git_root(root: Path) -> Path:
    git(root, "init", "-q")
    (root / "README.md").write_text("demo\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture(params=["git", "plain"])
def any_root(request: pytest.FixtureRequest, root: Path) -> Path:
    return request.getfixturevalue("git_root") if request.param == "git" else root


def write(path: Path, content: bytes, *, age: float = 0.0) -> Path:
    """Write ``content``; ``age`` seconds back-dates mtime (older than the snapshot)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if age:
        old = time.time_ns() - int(age * 1e9)
        os.utime(path, ns=(old, old))
    return path


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def make_tree(folder: Path, *, age: float = 0.0) -> dict[str, bytes]:
    files = {
        "a.csv": b"x,y\n1,2\n",
        "sub/b.bin": os.urandom(5000),
        "sub/deeper/c.txt": b"nested\n" * 100,
    }
    for rel, content in files.items():
        write(folder / rel, content, age=age)
    return files


def tree_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def dvc_repo(root: Path):  # type: ignore[no-untyped-def]
    from dvc.repo import Repo

    return Repo(os.fspath(root))


def dvc_status(root: Path) -> dict:
    repo = dvc_repo(root)
    try:
        return repo.status()
    finally:
        repo.close()


def cache_object(root: Path, digest: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]


# -- snapshot -----------------------------------------------------------------------------


def test_file_snapshot_records_dvc_md5_and_stays_clean(any_root: Path) -> None:
    content = os.urandom(100_003)  # not a whole number of 4 KiB blocks
    write(any_root / "data" / "train.csv", content)

    (snap,) = snapshot(["data/train.csv"], any_root)

    assert snap == DataSnapshot("data/train.csv", md5(content), len(content), 1)
    assert not snap.is_dir
    dvcfile = (any_root / "data" / "train.csv.dvc").read_text()
    assert f"md5: {md5(content)}" in dvcfile
    assert f"size: {len(content)}" in dvcfile
    assert cache_object(any_root, snap.md5).read_bytes() == content
    assert dvc_status(any_root) == {}
    is_git = (any_root / ".git").exists()
    config = (any_root / ".dvc" / "config").read_text()
    assert ("no_scm" in config) is not is_git
    gitignore = any_root / "data" / ".gitignore"
    assert gitignore.exists() is is_git
    if is_git:
        assert "/train.csv" in gitignore.read_text().splitlines()


def test_folder_snapshot_records_manifest_and_stays_clean(any_root: Path) -> None:
    files = make_tree(any_root / "data")

    (snap,) = snapshot([any_root / "data"], any_root)

    assert snap.path == "data"
    assert snap.is_dir and snap.md5.endswith(".dir")
    assert snap.nfiles == 3
    assert snap.size == sum(len(c) for c in files.values())
    manifest = json.loads(cache_object(any_root, snap.md5).read_text())
    assert {e["relpath"]: e["md5"] for e in manifest} == {k: md5(v) for k, v in files.items()}
    for content in files.values():
        assert cache_object(any_root, md5(content)).read_bytes() == content
    assert (any_root / "data.dvc").is_file()
    assert dvc_status(any_root) == {}


def test_folder_md5_equals_dvc_add_of_the_same_folder(root: Path, tmp_path: Path) -> None:
    files = make_tree(root / "data")
    other = tmp_path / "other"
    make_tree(other / "data")
    for rel, content in files.items():  # same bytes in both (make_tree has random parts)
        (other / "data" / rel).write_bytes(content)
    from dvc.repo import Repo

    repo = Repo.init(os.fspath(other), no_scm=True)
    (stage,) = repo.add(os.fspath(other / "data"))
    repo.close()

    (snap,) = snapshot(["data"], root)

    assert snap.md5 == stage.outs[0].hash_info.value


@pytest.mark.parametrize("size", [0, 1, 4096, 4 * 1024 * 1024 + 1, 9 * 1024 * 1024])
@pytest.mark.parametrize("direct", [True, False])
def test_odd_sizes_hash_and_cache_exactly(
    root: Path, size: int, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastcopy, "DIRECT_IO", direct)
    content = os.urandom(size)
    write(root / "blob.bin", content)

    (snap,) = snapshot(["blob.bin"], root)

    assert (snap.md5, snap.size) == (md5(content), size)
    assert cache_object(root, snap.md5).read_bytes() == content
    assert dvc_status(root) == {}
    assert not list((root / ".dvc" / "tmp").glob("mlops-*"))  # no temporary copy left


def test_dvc_checkout_and_push_work_after_snapshot(git_root: Path, tmp_path: Path) -> None:
    content = os.urandom(300_000)
    path = write(git_root / "data.bin", content)
    files = make_tree(git_root / "folder")
    snaps = snapshot(["data.bin", "folder"], git_root)
    remote = tmp_path / "remote"

    repo = dvc_repo(git_root)
    try:
        with repo.config.edit() as conf:
            conf["remote"]["store"] = {"url": os.fspath(remote)}
            conf["core"]["remote"] = "store"
        path.unlink()
        (git_root / "folder" / "sub" / "b.bin").unlink()
        repo.checkout()
        pushed = repo.push()
    finally:
        repo.close()

    assert path.read_bytes() == content
    assert tree_of(git_root / "folder") == files
    assert pushed == 5  # data.bin, 3 folder files, the folder manifest
    remote_obj = remote / "files" / "md5" / snaps[0].md5[:2] / snaps[0].md5[2:]
    assert remote_obj.read_bytes() == content


def test_relative_paths_follow_the_working_directory(root: Path, monkeypatch) -> None:
    write(root / "data" / "x.csv", b"1\n")
    monkeypatch.chdir(root / "data")

    (snap,) = snapshot(["x.csv"], root)

    assert snap.path == "data/x.csv"


def test_default_root_is_found_from_the_working_directory(root: Path) -> None:
    (root / ".mlops").mkdir()
    write(root / "d.txt", b"hello\n")

    (snap,) = snapshot(["d.txt"])

    assert snap.path == "d.txt"
    assert (root / "d.txt.dvc").is_file()


def test_unchanged_data_takes_the_fast_path(root: Path) -> None:
    file_content = os.urandom(50_000)
    write(root / "f.bin", file_content, age=5)
    make_tree(root / "folder", age=5)
    first = snapshot(["f.bin", "folder"], root)
    dvcfile_mtime = (root / "f.bin.dvc").stat().st_mtime_ns
    fast_before = route_counts["fast"]

    again = snapshot(["f.bin", "folder"], root)

    assert again == first
    assert route_counts["fast"] == fast_before + 2
    assert (root / "f.bin.dvc").stat().st_mtime_ns == dvcfile_mtime
    state = json.loads((root / ".mlops" / "data-state.json").read_text())
    assert set(state["entries"]) == {"f.bin", "folder"}


@pytest.mark.parametrize("name", ["with space.csv", "#hash: colon.csv", "ünï.csv"])
def test_fast_path_with_awkward_file_names(root: Path, name: str) -> None:
    write(root / "d" / name, b"1,2\n", age=5)
    first = snapshot([root / "d" / name], root)
    fast = route_counts["fast"]

    assert snapshot([root / "d" / name], root) == first
    assert route_counts["fast"] == fast + 1
    assert first[0].path == f"d/{name}"


def test_data_newer_than_the_snapshot_is_not_trusted_by_timestamp(root: Path) -> None:
    # An mtime not older than the snapshot's start (a write in the same clock tick, or a
    # clock ahead) could hide a later same-size edit: such data is not remembered.
    write(root / "f.bin", b"fresh", age=-60)

    snapshot(["f.bin"], root)

    state = json.loads((root / ".mlops" / "data-state.json").read_text())
    assert "f.bin" not in state["entries"]


def test_modified_file_gets_a_new_md5(root: Path) -> None:
    path = write(root / "f.bin", b"a" * 1000, age=10)
    (first,) = snapshot(["f.bin"], root)
    (same,) = snapshot(["f.bin"], root)
    assert same == first

    # same size, new content, mtime moved to another old time
    write(path, b"b" * 1000, age=20)
    (second,) = snapshot(["f.bin"], root)
    assert second.md5 == md5(b"b" * 1000) != first.md5
    (again,) = snapshot(["f.bin"], root)
    assert again == second
    recorded = path.stat()

    # same size, same inode, and mtime put back to the recorded one: only ctime moved
    time.sleep(0.02)  # let the ctime clock tick
    path.write_bytes(b"c" * 1000)
    os.utime(path, ns=(recorded.st_atime_ns, recorded.st_mtime_ns))
    assert path.stat().st_ino == recorded.st_ino
    (third,) = snapshot(["f.bin"], root)
    assert third.md5 == md5(b"c" * 1000)

    # a different size
    write(path, b"d" * 7, age=5)
    (fourth,) = snapshot(["f.bin"], root)
    assert (fourth.md5, fourth.size) == (md5(b"d" * 7), 7)
    assert dvc_status(root) == {}


def test_modified_folder_gets_a_new_md5(root: Path) -> None:
    files = make_tree(root / "folder", age=10)
    (first,) = snapshot(["folder"], root)
    fast = route_counts["fast"]
    assert snapshot(["folder"], root) == [first]
    assert route_counts["fast"] == fast + 1

    # same size and mtime put back: neither our state nor DVC's may be fooled
    target = root / "folder" / "sub" / "b.bin"
    recorded = target.stat()
    time.sleep(0.02)
    new_b = os.urandom(len(files["sub/b.bin"]))
    target.write_bytes(new_b)
    os.utime(target, ns=(recorded.st_atime_ns, recorded.st_mtime_ns))
    (sneaky,) = snapshot(["folder"], root)
    assert sneaky.md5 != first.md5
    manifest = json.loads(cache_object(root, sneaky.md5).read_text())
    assert {e["relpath"]: e["md5"] for e in manifest}["sub/b.bin"] == md5(new_b)

    c_txt = root / "folder" / "sub" / "deeper" / "c.txt"
    write(c_txt, b"N" * len(files["sub/deeper/c.txt"]), age=30)
    (second,) = snapshot(["folder"], root)
    (root / "folder" / "a.csv").unlink()
    (third,) = snapshot(["folder"], root)

    assert len({first.md5, sneaky.md5, second.md5, third.md5}) == 4
    assert third.nfiles == 2
    assert dvc_status(root) == {}


def test_fast_path_notices_a_changed_dvc_file_and_a_missing_cache_object(root: Path) -> None:
    content = b"payload" * 100
    write(root / "f.bin", content, age=10)
    (snap,) = snapshot(["f.bin"], root)

    cache_object(root, snap.md5).unlink()
    fast = route_counts["fast"]
    assert snapshot(["f.bin"], root) == [snap]
    assert route_counts["fast"] == fast
    assert cache_object(root, snap.md5).read_bytes() == content

    # the .dvc file of another version (as after `git checkout` without `dvc checkout`)
    other = "0123456789abcdef0123456789abcdef"
    dvcfile = root / "f.bin.dvc"
    dvcfile.write_text(dvcfile.read_text().replace(snap.md5, other))
    assert snapshot(["f.bin"], root) == [snap]
    assert route_counts["fast"] == fast
    assert f"md5: {snap.md5}" in dvcfile.read_text()

    dvcfile.write_text("outs:\n- md5: 0123\n")  # malformed
    with pytest.raises(DataError, match=r"f\.bin"):
        snapshot(["f.bin"], root)


def test_missing_paths_are_all_named_before_anything_is_written(root: Path) -> None:
    write(root / "present.csv", b"1\n")

    with pytest.raises(DataError) as err:
        snapshot(["present.csv", "missing-one.csv", "sub/missing-two"], root)

    assert "missing-one.csv" in str(err.value)
    assert "sub/missing-two" in str(err.value)
    assert not (root / ".dvc").exists()
    assert not (root / "present.csv.dvc").exists()


def test_paths_outside_the_root_are_refused(root: Path, tmp_path: Path) -> None:
    write(tmp_path / "elsewhere.csv", b"1\n")
    write(root / "ok.csv", b"1\n")

    with pytest.raises(DataError, match="outside the project root") as err:
        snapshot(["ok.csv", tmp_path / "elsewhere.csv", "../elsewhere.csv"], root)

    assert "elsewhere.csv" in str(err.value)
    assert not (root / ".dvc").exists()


def test_resolve_paths_refuses_internal_and_nested_paths(root: Path) -> None:
    make_tree(root / "data")
    (root / ".git").mkdir()
    write(root / ".git" / "config", b"")

    assert resolve_paths(["data", "./data", "data/a.csv"][:2], root) == [root / "data"]
    with pytest.raises(DataError, match="nested") as err:
        resolve_paths(["data", "data/a.csv"], root)
    assert "'data/a.csv' is inside 'data'" in str(err.value)
    with pytest.raises(DataError, match=r"inside \.git"):
        resolve_paths([".git/config"], root)
    with pytest.raises(DataError, match="project root itself"):
        resolve_paths(["."], root)


def test_dvc_errors_become_data_errors(git_root: Path) -> None:
    write(git_root / "tracked.csv", b"1\n")
    git(git_root, "add", "tracked.csv")

    with pytest.raises(DataError, match=r"tracked\.csv"):
        snapshot(["tracked.csv"], git_root)


# -- restore ------------------------------------------------------------------------------


def test_restore_file_after_modify_and_delete(any_root: Path) -> None:
    content = os.urandom(70_001)
    path = write(any_root / "data" / "train.csv", content)
    (snap,) = snapshot(["data/train.csv"], any_root)

    path.write_bytes(b"changed")
    assert restore(snap, path, any_root, overwrite=True) == path
    assert path.read_bytes() == content

    path.unlink()
    restore(snap, "data/train.csv", any_root)
    assert path.read_bytes() == content

    elsewhere = restore(snap, any_root / "new" / "dir" / "copy.csv", any_root)
    assert elsewhere.read_bytes() == content


def test_restore_nested_folder_exactly(any_root: Path) -> None:
    files = make_tree(any_root / "data")
    (snap,) = snapshot(["data"], any_root)

    write(any_root / "data" / "sub" / "b.bin", b"modified")
    (any_root / "data" / "sub" / "deeper" / "c.txt").unlink()
    write(any_root / "data" / "extra.txt", b"not in the snapshot")
    restore(snap, any_root / "data", any_root, overwrite=True)
    assert tree_of(any_root / "data") == files

    import shutil

    shutil.rmtree(any_root / "data")
    restore(snap, any_root / "data", any_root)
    assert tree_of(any_root / "data") == files

    copy = restore(snap, any_root / "restored" / "data-copy", any_root)
    assert tree_of(copy) == files


def test_restore_refuses_to_overwrite_different_content(root: Path) -> None:
    path = write(root / "f.txt", b"original")
    (snap,) = snapshot(["f.txt"], root)
    path.write_bytes(b"edited!!")

    with pytest.raises(DataError, match="overwrite=True"):
        restore(snap, path, root)
    assert path.read_bytes() == b"edited!!"

    identical = write(root / "same.txt", b"original")
    assert restore(snap, identical, root) == identical  # already right: no error

    make_tree(root / "folder")
    (dsnap,) = snapshot(["folder"], root)
    write(root / "folder" / "extra.txt", b"x")
    with pytest.raises(DataError, match="different content"):
        restore(dsnap, root / "folder", root)
    with pytest.raises(DataError):
        restore(dsnap, identical, root)  # a file where the folder should go
    assert (root / "folder" / "extra.txt").exists()


def test_restore_of_data_missing_from_the_cache(root: Path) -> None:
    write(root / "f.bin", b"content")
    make_tree(root / "folder")
    fsnap, dsnap = snapshot(["f.bin", "folder"], root)
    shutil.rmtree(root / ".dvc" / "cache" / "mlops-keep")  # no copies kept from `dvc gc`

    cache_object(root, fsnap.md5).unlink()
    with pytest.raises(NotFoundError, match=r"dvc (fetch|pull)|remote") as err:
        restore(fsnap, root / "out.bin", root)
    assert "f.bin" in str(err.value)
    assert not (root / "out.bin").exists()

    cache_object(root, md5(b"x,y\n1,2\n")).unlink()
    with pytest.raises(NotFoundError, match="1 of its 3"):
        restore(dsnap, root / "out-folder", root)
    assert not (root / "out-folder").exists()

    ghost = DataSnapshot("ghost.csv", "0" * 32, 1, 1)
    with pytest.raises(NotFoundError):
        restore(ghost, root / "ghost.csv", root)


def test_restore_detects_a_corrupted_cache_object(root: Path) -> None:
    write(root / "f.bin", b"good bytes")
    (snap,) = snapshot(["f.bin"], root)
    obj = cache_object(root, snap.md5)
    obj.chmod(0o644)
    obj.write_bytes(b"bad bytes!")

    with pytest.raises(DataError, match="corrupted"):
        restore(snap, root / "out.bin", root)
    assert not (root / "out.bin").exists()
    assert not list(root.glob(".out.bin*"))


def test_restore_without_dvc_repo(root: Path) -> None:
    with pytest.raises(NotFoundError, match="not a DVC repository"):
        restore(DataSnapshot("a", "0" * 32, 1, 1), root / "a", root)


# -- the rest -----------------------------------------------------------------------------


def test_snapshot_dict_round_trip() -> None:
    snap = DataSnapshot("data/x", "ab" * 16 + ".dir", 10, 2)
    assert snap.is_dir
    assert DataSnapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    with pytest.raises(DataError):
        DataSnapshot.from_dict({"path": "x"})


def test_ensure_dvc_is_idempotent_and_handles_git_subfolders(git_root: Path) -> None:
    ensure_dvc(git_root)
    config = git_root / ".dvc" / "config"
    stamp = config.stat().st_mtime_ns
    ensure_dvc(git_root)
    assert config.stat().st_mtime_ns == stamp

    sub = git_root / "projects" / "one"
    write(sub / "d.csv", b"1\n")
    (snap,) = snapshot([sub / "d.csv"], sub)
    assert (sub / ".dvc").is_dir()
    assert "no_scm" not in (sub / ".dvc" / "config").read_text()
    assert (sub / ".gitignore").read_text().splitlines() == ["/d.csv"]
    assert dvc_status(sub) == {}
    assert snap.path == "d.csv"


def test_importing_the_module_does_not_import_dvc() -> None:
    code = "import sys, jupyter_mlops.data; print('dvc' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_two_processes_snapshot_at_once(root: Path) -> None:
    for name in ("one", "two"):
        write(root / f"{name}.bin", os.urandom(200_000), age=10)
    ensure_dvc(root)
    code = (
        "import sys; from pathlib import Path; from jupyter_mlops.data import snapshot; "
        "print(snapshot([sys.argv[1]], Path(sys.argv[2]))[0].md5)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, f"{name}.bin", os.fspath(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results

    for name, (out, _) in zip(("one", "two"), results, strict=True):
        assert out.strip() == md5((root / f"{name}.bin").read_bytes())
    state = json.loads((root / ".mlops" / "data-state.json").read_text())
    assert set(state["entries"]) == {"one.bin", "two.bin"}
    assert dvc_status(root) == {}
