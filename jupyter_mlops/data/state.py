"""The state file ``<root>/.mlops/data-state.json``: what is known to be unchanged.

Per snapshotted path it remembers the file's size/mtime/inode/ctime (a digest of those of
every file for a folder), the md5 DVC recorded, the DVC config it was recorded under and
which remote it was pushed to, so that re-snapshotting unchanged data costs a few ``stat``
calls and no DVC import. Two kernels may snapshot at once: updates are merged under a
file lock and written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from jupyter_mlops.config import MLOPS_DIR

STATE_FILE = "data-state.json"
_STATE_VERSION = 1

# The signature of a file (its stat fields) or of a folder (a digest of its files').
Signature: TypeAlias = list[int] | str


def stat_sig(st: os.stat_result) -> list[int]:
    """The stat fields whose change means a file may have changed."""
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _tree_sig(path: Path, since: int | None = None) -> tuple[str, int, list[str]]:
    """A digest of every file's path, size, mtime, inode and ctime below ``path``; the
    newest mtime/ctime seen (for the racy-timestamp check); and the files whose
    mtime/ctime is not older than ``since`` (every file if ``since`` is None)."""
    import hashlib

    digest = hashlib.sha256()
    newest = 0
    touched: list[str] = []
    stack = [(path, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in reversed(entries):
            rel = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), rel + "/"))
                continue
            try:
                st = entry.stat()
            except OSError:
                st = entry.stat(follow_symlinks=False)
            digest.update(f"{rel}\0{stat_sig(st)}\n".encode("utf-8", "surrogateescape"))
            stamp = max(st.st_mtime_ns, st.st_ctime_ns)
            newest = max(newest, stamp)
            if since is None or stamp >= since:
                touched.append(entry.path)
    return digest.hexdigest(), newest, touched


def sig_of(path: Path, since: int | None = None) -> tuple[Signature, int, list[str]]:
    """(signature, newest timestamp, files touched since ``since``) of a file or folder."""
    if path.is_dir():
        return _tree_sig(path, since)
    st = path.stat()
    stamp = max(st.st_mtime_ns, st.st_ctime_ns)
    return stat_sig(st), stamp, [os.fspath(path)] if since is None or stamp >= since else []


def config_sig(root: Path) -> str:
    """Changes when the repo's DVC config (which may move the cache or name the default
    remote) or ``.dvcignore`` do."""
    parts = []
    for name in (".dvc/config", ".dvc/config.local", ".dvcignore"):
        try:
            st = (root / name).stat()
            parts.append(f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")
        except OSError:
            parts.append("-")
    return "|".join(parts)


def _mlops_dir(root: Path) -> Path:
    folder = root / MLOPS_DIR
    folder.mkdir(exist_ok=True)
    gitignore = folder / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")  # as Config.ensure_dirs: machine-local state
    return folder


def fs_now(root: Path) -> int:
    """The project filesystem's clock now (mtime of a file just written), in ns.

    A timestamp recorded in the state must be older than this, or a later same-size edit
    within the same clock tick would go unnoticed (git's "racy" index entries).
    """
    probe = _mlops_dir(root) / "clock"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, b"t")
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)


def load_state(root: Path) -> dict[str, dict[str, Any]]:
    """The state file's entries by posix path relative to ``root`` ({} if none or unreadable)."""
    try:
        data = json.loads((root / MLOPS_DIR / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


@contextlib.contextmanager
def _state_lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: last writer wins, which only costs a rehash later
        yield
        return
    with (folder / "data-state.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_state(root: Path, changes: dict[str, dict[str, Any] | None]) -> None:
    """Merge ``changes`` (None removes) into the state file, atomically and under a lock,
    so two kernels snapshotting at once neither corrupt it nor drop each other's entries."""
    if not changes:
        return
    folder = _mlops_dir(root)
    with _state_lock(folder):
        entries = load_state(root)
        for key, entry in changes.items():
            if entry is None:
                entries.pop(key, None)
            else:
                entries[key] = entry
        fd, tmp = tempfile.mkstemp(prefix=".data-state.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": _STATE_VERSION, "entries": entries}, fh)
            Path(tmp).replace(folder / STATE_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
