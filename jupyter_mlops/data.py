"""DVC snapshots of the data files and folders a run reads, and restoring them by hash.

A snapshot is what ``dvc add`` records: the content goes into the project's DVC cache
(``.dvc/cache/files/md5/<2 hex>/<30 hex>``) and a ``<path>.dvc`` file names its md5, so the
exact bytes a run read can be put back later. With a DVC remote (``dvc_remote`` in
``[tool.jupyter-mlops]``, or DVC's own default remote) each snapshot is also pushed there,
and :func:`restore` fetches what the local cache lacks by hash, so another machine or a
fresh clone can restore it. See :func:`_resolve_remote`.

Two things make it cheaper than a plain ``Repo.add`` (``dvc add`` of 1 GiB costs about 3x
``md5sum`` because DVC reads the file to hash it, copies it into the cache, then copies the
cache back over the workspace file):

* Unchanged data costs a few ``stat`` calls and no DVC import: ``<root>/.mlops/data-state.json``
  remembers, per path, the file's size/mtime/ctime/inode (a digest of all of them for a
  folder) and the md5 DVC recorded. See :func:`_fast_snapshot`.
* A new or changed file is read once: each chunk is hashed and written to a temporary file
  that becomes the cache object, then DVC's own ``Repo.add`` is told the hash (through DVC's
  state database) and does all the bookkeeping itself. See :func:`_snapshot_with_dvc`.

DVC itself (``dvc.repo``, ~0.3 s to import) is only imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from jupyter_mlops.config import MLOPS_DIR, find_project_root
from jupyter_mlops.errors import ConfigError, DataError, NotFoundError

if TYPE_CHECKING:
    from dvc.repo import Repo

STATE_FILE = "data-state.json"
_STATE_VERSION = 1
_CHUNK = 4 << 20  # bytes per read in the one-pass copy
_NBUFFERS = 4  # chunks in flight between the hashing reader and the writer
_BLOCK = 4096  # O_DIRECT writes must be whole blocks
_DIRECT_IO = True  # write new cache objects with O_DIRECT where possible (see _prehash)
_INTERNAL_DIRS = (".dvc", ".git", MLOPS_DIR)

_MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")

# Which way each snapshotted path went, and how many were pushed to a remote (read by
# the tests and the benchmark).
_stats: dict[str, int] = {"fast": 0, "onepass": 0, "dvc": 0, "pushed": 0}


@dataclass(frozen=True)
class DataSnapshot:
    """The DVC-recorded identity of one data file or folder at the time a run read it."""

    path: str  # posix path relative to the project root
    md5: str  # DVC's md5; for a folder the md5 of its '<md5>.dir' manifest
    size: int  # bytes (total of all files for a folder)
    nfiles: int  # 1 for a file

    @property
    def is_dir(self) -> bool:
        """True for a folder snapshot (DVC marks its manifest hash with ``.dir``)."""
        return self.md5.endswith(".dir")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored as a run tag, read back with :meth:`from_dict`)."""
        return {"path": self.path, "md5": self.md5, "size": self.size, "nfiles": self.nfiles}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSnapshot:
        """The snapshot :meth:`to_dict` wrote; DataError if ``d`` is not one."""
        try:
            return cls(
                path=str(d["path"]),
                md5=str(d["md5"]),
                size=int(d["size"]),
                nfiles=int(d.get("nfiles", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"Not a data snapshot record: {d!r} ({exc!r})") from exc


# -- paths --------------------------------------------------------------------------------


def resolve_paths(paths: Iterable[str | os.PathLike[str]], root: Path) -> list[Path]:
    """Absolute, symlink-free paths of existing files/folders inside ``root``.

    Relative paths are taken from the current working directory, as ``open()`` would.
    Raises one DataError naming every missing path, every path outside ``root`` (or inside
    ``.dvc``/``.git``/``.mlops``, or the root itself) and every pair of nested paths (DVC
    cannot track a folder and a file inside it separately). Duplicates are dropped.
    """
    if isinstance(paths, str | bytes | os.PathLike):
        paths = [paths]  # type: ignore[list-item]
    root = Path(root).resolve()
    cwd = Path.cwd()
    missing: list[str] = []
    outside: list[str] = []
    internal: list[str] = []
    resolved: list[Path] = []
    for raw in paths:
        name = os.fsdecode(raw)
        path = (cwd / Path(name).expanduser()).resolve()
        if not path.exists():
            missing.append(repr(name))
        try:
            rel = path.relative_to(root)
        except ValueError:
            outside.append(repr(name))
            continue
        if not rel.parts:
            internal.append(f"{name!r} (the project root itself)")
        elif rel.parts[0] in _INTERNAL_DIRS:
            internal.append(f"{name!r} (inside {rel.parts[0]}/)")
        elif path.exists() and path not in resolved:
            resolved.append(path)

    nested = [
        f"{b.relative_to(root).as_posix()!r} is inside {a.relative_to(root).as_posix()!r}"
        for a in resolved
        for b in resolved
        if a != b and a in b.parents
    ]
    problems = []
    if missing:
        problems.append(f"not found (relative to {cwd}): {', '.join(missing)}")
    if outside:
        problems.append(f"outside the project root {root}: {', '.join(outside)}")
    if internal:
        problems.append(f"not snapshottable: {', '.join(internal)}")
    if nested:
        problems.append(f"nested paths, give only one of each pair: {'; '.join(nested)}")
    if problems:
        raise DataError("Cannot snapshot data: " + "; ".join(problems))
    return resolved


def _project_root(root: str | os.PathLike[str] | None) -> Path:
    return Path(root).resolve() if root is not None else find_project_root()


def _rel(path: Path, root: Path) -> str:
    return PurePosixPath(path.relative_to(root).as_posix()).as_posix()


# -- DVC ----------------------------------------------------------------------------------


def _import_repo() -> type[Repo]:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    return Repo


@contextlib.contextmanager
def _quiet_dvc() -> Iterator[None]:
    """Silence DVC's INFO chatter (``To track the changes with git...``); keep warnings."""
    import logging

    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _git_top(root: Path) -> Path | None:
    """The git work tree ``root`` is in (its top folder), found like git does, or None."""
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            return folder
    return None


def ensure_dvc(root: Path) -> None:
    """Initialise DVC in ``root`` unless ``root/.dvc`` exists (then it is a single stat).

    In a git work tree DVC is initialised with git (``--subdir`` when ``root`` is below the
    top of the work tree), so ``.dvc`` files and DVC's ``.gitignore`` entries can be
    committed; elsewhere without (``--no-scm``).
    """
    root = Path(root).resolve()
    if (root / ".dvc").is_dir():
        return
    repo_cls = _import_repo()
    from dvc.exceptions import DvcException

    top = _git_top(root)
    try:
        with _quiet_dvc():
            if top == root:
                repo = repo_cls.init(os.fspath(root))
            elif top is not None:
                repo = repo_cls.init(os.fspath(root), subdir=True)
            else:
                repo = repo_cls.init(os.fspath(root), no_scm=True)
            repo.close()
    except DvcException as exc:
        if (root / ".dvc").is_dir():  # another kernel initialised it meanwhile
            return
        raise DataError(f"Cannot initialise DVC in {root}: {exc}") from exc


def _open_repo(root: Path) -> Repo:
    repo_cls = _import_repo()
    try:
        repo = repo_cls(os.fspath(root), _wait_for_lock=True)  # queue behind other kernels
    except TypeError:  # a DVC without the private flag
        repo = repo_cls(os.fspath(root))
    repo.scm_context.quiet = True
    return repo


# -- the DVC remote -----------------------------------------------------------------------

_REMOTE_NAME = "mlops"  # the DVC remote a dvc_remote URL/path is configured as
_URL = re.compile(r"\w+://")


class PushError(DataError):
    """The data is snapshotted in the local DVC cache but could not be pushed to the remote.

    ``snapshots`` are the complete, valid snapshots (callers can still record them);
    ``remote`` is the DVC remote's name.
    """

    def __init__(self, message: str, snapshots: list[DataSnapshot], remote: str) -> None:
        super().__init__(message)
        self.snapshots = snapshots
        self.remote = remote


@dataclass(frozen=True)
class _Remote:
    """A DVC remote of the repo: its name and URL (for messages and the state file)."""

    name: str
    url: str

    @property
    def key(self) -> str:
        """What the state file records as "pushed to": a changed URL means push again."""
        return f"{self.name}={self.url}"

    def __str__(self) -> str:
        return f"{self.name!r} ({self.url})"


def _remote_setting(root: Path) -> str | None:
    """``dvc_remote`` from ``[tool.jupyter-mlops]`` in ``root/pyproject.toml`` (no DVC import)."""
    from jupyter_mlops.config import _read_pyproject

    value = _read_pyproject(root).get("dvc_remote")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"dvc_remote in [tool.jupyter-mlops] of {root / 'pyproject.toml'} must be a DVC "
            f"remote name, a folder path or a URL, not {value!r}"
        )
    return value.strip()


def _resolve_remote(repo: Repo, root: Path, setting: str | None) -> _Remote | None:
    """The DVC remote snapshots go to and come from; None if there is none.

    ``setting`` (``dvc_remote``) names a remote of the repo's DVC config, or is a URL or a
    folder path (relative to ``root``, or absolute, or ``~/...``): then it is configured as
    the remote ``mlops`` in ``.dvc/config`` (a relative path is stored relative to ``.dvc``,
    so the committed config works in every clone) and made DVC's default remote if there
    is none, so that a plain ``dvc push``/``dvc pull`` uses it too. Idempotent: the config
    is only written when it differs. Without ``setting``, DVC's own ``core.remote``.
    """
    from dvc.config_schema import RelPath

    remotes = repo.config["remote"]
    if setting is None:
        name = repo.config["core"].get("remote")
        if not name:
            return None
        if name not in remotes:
            raise DataError(
                f"DVC's default remote {name!r} (core.remote) is not defined in the DVC config "
                f"of {root}; add it with `dvc remote add {name} <url>` or unset the default."
            )
        return _Remote(name, str(remotes[name].get("url", "")))
    if setting in remotes:
        return _Remote(setting, str(remotes[setting].get("url", "")))

    url: str = setting
    stored: str = setting
    if not _URL.match(setting):
        path = Path(setting).expanduser()
        if path.is_absolute():
            url = os.path.normpath(path)
            stored = setting if os.fspath(path) != setting else url  # keep "~/..." as written
        else:
            url = os.path.normpath(root / path)
            stored = RelPath(url)  # saved relative to .dvc/
    current = remotes.get(_REMOTE_NAME, {}).get("url")
    has_default = bool(repo.config["core"].get("remote"))
    if current is None or not _same_url(str(current), url) or not has_default:
        try:
            with repo.config.edit() as conf:
                conf["remote"].setdefault(_REMOTE_NAME, {})["url"] = stored
                if not has_default:
                    conf["core"]["remote"] = _REMOTE_NAME
        except Exception as exc:  # ConfigError, OSError
            raise DataError(
                f"Cannot configure dvc_remote {setting!r} as the DVC remote "
                f"{_REMOTE_NAME!r} in {root / '.dvc' / 'config'}: {exc}"
            ) from exc
    return _Remote(_REMOTE_NAME, url)


def _same_url(a: str, b: str) -> bool:
    if _URL.match(a) or _URL.match(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.normpath(Path(a).expanduser()) == os.path.normpath(Path(b).expanduser())


def _no_remote_hint() -> str:
    return (
        "No DVC remote is configured (set dvc_remote in [tool.jupyter-mlops] of "
        "pyproject.toml, or `dvc remote add -d NAME URL`), so it cannot be fetched; it may "
        "have been removed by `dvc gc`, or snapshotted in another clone without a remote."
    )


@contextlib.contextmanager
def _dvc_errors() -> Iterator[list[str]]:
    """Keep DVC's transfer chatter (progress, "missing cache files" warnings, per-object
    error tracebacks) out of the notebook; yields the error messages it logged, which say
    why a transfer failed (they become part of our own error)."""
    import logging

    found: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            exc = record.exc_info[1] if record.exc_info else None
            found.append(f"{exc}" if exc is not None else record.getMessage())

    handler = Collect(logging.ERROR)
    saved = []
    for name in ("dvc", "dvc_data", "dvc_objects"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.setLevel(logging.ERROR)
        logger.propagate = False
        logger.addHandler(handler)
    try:
        yield found
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def _objects(snaps: Iterable[DataSnapshot], cache: str) -> list[str]:
    """The md5s of every cache object of ``snaps``: a file's object; a folder's files and
    then its ``.dir`` manifest (DVC uploads a manifest only after all its files)."""
    oids: list[str] = []
    for snap in snaps:
        if snap.is_dir:
            files = _read_manifest(_object_path(cache, snap.md5)) or []
            oids.extend(md5 for _, md5 in files)
        oids.append(snap.md5)
    return list(dict.fromkeys(oids))


def _push(root: Path, remote: _Remote, snaps: list[DataSnapshot]) -> str | None:
    """Upload the objects of ``snaps`` that the remote lacks; None, or why it failed."""
    from dvc_data.hashfile.hash_info import HashInfo

    with _quiet_dvc(), _dvc_errors() as logged:
        repo = _open_repo(root)
        try:
            oids = _objects(snaps, str(repo.cache.local.path))
            result = repo.cloud.push([HashInfo("md5", oid) for oid in oids], remote=remote.name)
        except Exception as exc:  # DvcException, OSError from the remote's filesystem
            return str(exc) or type(exc).__name__
        finally:
            repo.close()
    if result.failed:
        why = "; ".join(dict.fromkeys(logged)) or "see DVC's log"
        return f"{len(result.failed)} of {len(oids)} object(s) failed to upload ({why})"
    return None


def _fetch(repo: Repo, remote: _Remote, snap: DataSnapshot, cache: str) -> set[str]:
    """Download the cache objects of ``snap`` that ``cache`` lacks from ``remote``.

    A folder's ``.dir`` manifest comes first (it names the files), checked against its
    md5. Returns the md5s fetched (their bytes are checked when restored). NotFoundError
    naming the remote and the md5s it lacks; DataError if it cannot be read.
    """
    from dvc_data.hashfile.hash_info import HashInfo

    fetched: set[str] = set()
    where = f"the DVC remote {remote}"
    pushed_hint = (
        f"Was it pushed? In the clone that snapshotted it, run `dvc push -r {remote.name}` "
        "(or snapshot it again with the remote configured)."
    )
    with _dvc_errors() as logged:
        try:
            odb = repo.cloud.get_remote_odb(remote.name, "pull")
        except Exception as exc:
            raise DataError(f"Cannot use {where} to fetch {snap.path!r}: {exc}") from exc
        manifest = _object_path(cache, snap.md5)
        if snap.is_dir and not manifest.is_file():
            try:
                repo.cache.local.add(odb.oid_to_path(snap.md5), odb.fs, snap.md5)
            except FileNotFoundError as exc:
                raise NotFoundError(
                    f"The folder snapshot of {snap.path!r} (md5 {snap.md5}) is neither in "
                    f"this project's DVC cache ({cache}) nor on {where}. {pushed_hint}"
                ) from exc
            except Exception as exc:
                raise DataError(
                    f"Cannot fetch the folder snapshot of {snap.path!r} (md5 {snap.md5}) "
                    f"from {where}: {exc}"
                ) from exc
            if _md5_file(manifest) != snap.md5.removesuffix(".dir"):
                _discard(manifest)
                raise DataError(
                    f"The folder manifest of {snap.path!r} on {where} is corrupted (its "
                    f"bytes do not hash to {snap.md5}). Delete it there and push it again "
                    f"from a clone that has it (`dvc push -r {remote.name}`)."
                )
            fetched.add(snap.md5)
        files, absent = _cache_plan(snap, cache)
        if absent:
            try:
                repo.cloud.pull([HashInfo("md5", md5) for md5 in absent], remote=remote.name)
            except Exception as exc:
                raise DataError(f"Cannot fetch {snap.path!r} from {where}: {exc}") from exc
            fetched.update(absent)
    still = [md5 for md5 in absent if not _object_path(cache, md5).is_file()]
    if still:
        errors = "; ".join(dict.fromkeys(logged))
        shown = ", ".join(still[:5]) + (f" and {len(still) - 5} more" if len(still) > 5 else "")
        what = f"{len(still)} of its {len(files)} file(s) are" if snap.is_dir else "it is"
        raise NotFoundError(
            f"Cannot restore {snap.path!r}: {what} not on {where}, md5 {shown}"
            + (f" ({errors})" if errors else "")
            + f". {pushed_hint}"
        )
    return fetched


def _discard(obj: Path) -> None:
    """Remove a bad cache object (DVC makes them read-only; the folder is writable)."""
    with contextlib.suppress(OSError):
        obj.unlink()


# -- reading once, hashing and copying ----------------------------------------------------


def _copy_md5(src: Any, dst_fd: int, *, direct: bool = False) -> tuple[str, int]:
    """Copy the open binary file ``src`` to the fd ``dst_fd``; returns (md5, bytes copied).

    The file is read once: this thread hashes each chunk while a helper thread writes the
    previous ones (hashlib and file writes release the GIL), so the copy costs little more
    than the hashing. What is written is exactly what is hashed, even if ``src`` changes
    meanwhile, so a cache object always matches its name. ``direct``: ``dst_fd`` was opened
    with O_DIRECT (page-aligned buffers, whole 4 KiB blocks); the flag is dropped before a
    write that is not whole blocks (the tail).
    """
    import hashlib
    import mmap
    import queue
    import threading

    md5 = hashlib.md5(usedforsecurity=False)
    buffers = [mmap.mmap(-1, _CHUNK) for _ in range(_NBUFFERS)]  # page-aligned
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
    for i in range(_NBUFFERS):
        free.put(i)
    failed: list[BaseException] = []

    def write() -> None:
        nonlocal direct
        try:
            while (item := full.get()) is not None:
                i, n = item
                if direct and n % _BLOCK:
                    _set_direct(dst_fd, on=False)
                    direct = False
                with memoryview(buffers[i]) as whole:
                    view = whole[:n]
                    while view:
                        view = view[os.write(dst_fd, view) :]
                free.put(i)
        except BaseException as exc:
            failed.append(exc)
            free.put(-1)  # wake the reader

    writer = threading.Thread(target=write, name="mlops-data-copy", daemon=True)
    writer.start()
    total = 0
    try:
        while (i := free.get()) >= 0:
            n = _read_full(src, buffers[i])
            if not n:
                break
            with memoryview(buffers[i]) as whole:
                md5.update(whole[:n])
            total += n
            full.put((i, n))
    finally:
        full.put(None)
        writer.join()
    if failed:
        raise failed[0]
    return md5.hexdigest(), total


def _read_full(src: Any, buffer: Any) -> int:
    """Fill ``buffer`` from ``src`` (short only at end of file); returns the bytes read."""
    with memoryview(buffer) as view:
        n = 0
        while n < len(view):
            got = src.readinto(view[n:])
            if not got:
                break
            n += got
        return n


def _set_direct(fd: int, *, on: bool) -> bool:
    """Switch O_DIRECT on/off for ``fd`` (Linux); False where the filesystem refuses it."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return False
    import fcntl

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | direct if on else flags & ~direct)
    except OSError:
        return False
    return True


def _md5_file(path: Path) -> str:
    import hashlib

    with path.open("rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _reflink(src: Any, dst: Any) -> bool:
    """Clone ``src`` into ``dst`` sharing extents (Linux btrfs/XFS); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import fcntl

    ficlone = 0x40049409
    try:
        fcntl.ioctl(dst.fileno(), ficlone, src.fileno())
    except OSError:
        return False
    return True


@dataclass
class _Prehashed:
    md5: str
    tmp: Path
    before: os.stat_result


def _prehash(path: Path, tmp_dir: Path) -> _Prehashed | None:
    """Hash ``path`` into a temporary copy under ``tmp_dir``; None if it changed meanwhile.

    On a filesystem with reflinks the copy is a clone, hashed after cloning (a clone is an
    atomic copy, so hash and content agree); elsewhere one read feeds hash and copy. The
    copy is written with O_DIRECT where the filesystem allows: a cache object is written
    once and rarely read, so it should not push the user's data out of the page cache, and
    on VMs whose memory is not yet backed a page-cache write of 1 GiB can cost 2-3 s
    against ~0.6 s direct (measured here).
    """
    import hashlib

    fd, name = tempfile.mkstemp(prefix="mlops-", suffix=".tmp", dir=tmp_dir)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb", buffering=0) as dst, path.open("rb", buffering=0) as src:
            before = os.fstat(src.fileno())
            if _reflink(src, dst):
                with tmp.open("rb") as clone:
                    md5 = hashlib.file_digest(
                        clone, lambda: hashlib.md5(usedforsecurity=False)
                    ).hexdigest()
            else:
                direct = _DIRECT_IO and _set_direct(dst.fileno(), on=True)
                md5, _ = _copy_md5(src, dst.fileno(), direct=direct)
        if _stat_sig(path.stat()) != _stat_sig(before):
            tmp.unlink()
            return None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _Prehashed(md5, tmp, before)


# -- the state file: what is known to be unchanged -----------------------------------------


def _stat_sig(st: os.stat_result) -> list[int]:
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
            digest.update(f"{rel}\0{_stat_sig(st)}\n".encode("utf-8", "surrogateescape"))
            stamp = max(st.st_mtime_ns, st.st_ctime_ns)
            newest = max(newest, stamp)
            if since is None or stamp >= since:
                touched.append(entry.path)
    return digest.hexdigest(), newest, touched


def _sig_of(path: Path, since: int | None = None) -> tuple[Any, int, list[str]]:
    """(signature, newest timestamp, files touched since ``since``) of a file or folder."""
    if path.is_dir():
        return _tree_sig(path, since)
    st = path.stat()
    stamp = max(st.st_mtime_ns, st.st_ctime_ns)
    return _stat_sig(st), stamp, [os.fspath(path)] if since is None or stamp >= since else []


def _config_sig(root: Path) -> str:
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


def _fs_now(root: Path) -> int:
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


def _load_state(root: Path) -> dict[str, dict[str, Any]]:
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


def _update_state(root: Path, changes: dict[str, dict[str, Any] | None]) -> None:
    """Merge ``changes`` (None removes) into the state file, atomically and under a lock,
    so two kernels snapshotting at once neither corrupt it nor drop each other's entries."""
    if not changes:
        return
    folder = _mlops_dir(root)
    with _state_lock(folder):
        entries = _load_state(root)
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


_DVC_LINE = re.compile(r"(- |  )(md5|size|nfiles|hash|path): (.+?)")


def _read_dvc_file(path: Path) -> dict[str, str] | None:
    """The single out of a plain ``dvc add`` file, or None if it is anything else."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0] != "outs:":
        return None
    out: dict[str, str] = {}
    for i, line in enumerate(lines[1:]):
        m = _DVC_LINE.fullmatch(line)
        if m is None or (m.group(1) == "- ") != (i == 0) or m.group(2) in out:
            return None
        out[m.group(2)] = m.group(3)
    return out


def _object_path(cache: str, md5: str) -> Path:
    return Path(cache, md5[:2], md5[2:])


def _read_manifest(path: Path) -> list[tuple[str, str]] | None:
    """(relpath, md5) of each file in a DVC '.dir' manifest; None if unreadable."""
    try:
        items = json.loads(path.read_text())
        return [(str(item["relpath"]), str(item["md5"])) for item in items]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fast_snapshot(
    path: Path, rel: str, entry: dict[str, Any] | None, config_sig: str
) -> DataSnapshot | None:
    """The snapshot of ``path`` without DVC if nothing changed since it was recorded.

    Requires: the state entry's stat signature (file: size, mtime, inode, ctime; folder: a
    digest of those of every file) matches the data now, the ``.dvc`` file still records
    the same md5 and size, the DVC config is unchanged, and the cache still holds the
    object (for a folder, its manifest and every file's object). Anything else: None, and
    DVC decides.
    """
    if not entry or entry.get("config") != config_sig:
        return None
    try:
        sig, _, _ = _sig_of(path, since=sys.maxsize)
    except OSError:
        return None
    if sig != entry.get("sig"):
        return None
    out = _read_dvc_file(path.with_name(path.name + ".dvc"))
    md5, size = entry.get("md5"), entry.get("size")
    if (
        out is None
        or out.get("md5") != md5
        or out.get("size") != str(size)
        or out.get("hash") != "md5"
        or out.get("path") not in (path.name, f"'{path.name}'", f'"{path.name}"')
        or not isinstance(md5, str)
        or not isinstance(size, int)
    ):
        return None
    cache = str(entry.get("cache"))
    obj = _object_path(cache, md5)
    try:
        if not md5.endswith(".dir"):
            if obj.stat().st_size != size:
                return None
            return DataSnapshot(rel, md5, size, 1)
        files = _read_manifest(obj)
        if files is None or str(len(files)) != out.get("nfiles"):
            return None
        for _, file_md5 in files:
            _object_path(cache, file_md5).stat()
    except OSError:
        return None
    return DataSnapshot(rel, md5, size, len(files))


# -- snapshot -----------------------------------------------------------------------------


def snapshot(
    paths: Iterable[str | os.PathLike[str]], root: Path | None = None
) -> list[DataSnapshot]:
    """Record files/folders with DVC (cache + ``<path>.dvc``), one snapshot per path, and
    push them to the project's DVC remote if it has one.

    All paths are checked first (:func:`resolve_paths`), so a bad one fails before anything
    is written. DVC is initialised in ``root`` if needed (:func:`ensure_dvc`). Data that is
    unchanged since its last snapshot costs a few stat calls; other data is hashed once.

    The remote is ``dvc_remote`` of ``[tool.jupyter-mlops]`` or DVC's default remote (see
    :func:`_resolve_remote`). The state file remembers which remote each snapshot was
    pushed to, so unchanged data already there costs no remote round trip. A failed push
    raises :class:`PushError` after the snapshots are complete in the local cache and
    remembered as not pushed: its ``snapshots`` can still be recorded, and the next
    snapshot of the same data pushes it without hashing it again.
    """
    root = _project_root(root)
    targets = resolve_paths(paths, root)
    if not targets:
        return []
    ensure_dvc(root)
    entries = _load_state(root)
    setting = _remote_setting(root)
    config_sig = _config_sig(root)
    found: dict[Path, DataSnapshot] = {}
    unpushed: list[Path] = []  # unchanged, but not known to be on the remote
    for path in targets:
        rel = _rel(path, root)
        entry = entries.get(rel)
        snap = _fast_snapshot(path, rel, entry, config_sig)
        if snap is not None and entry is not None:
            found[path] = snap
            _stats["fast"] += 1
            if _needs_push(entry, setting):
                unpushed.append(path)
    todo = [p for p in targets if p not in found]
    if not todo and not unpushed:
        return [found[p] for p in targets]

    changes: dict[str, dict[str, Any] | None] = {}
    if todo:
        snaps, changes, remote = _snapshot_with_dvc(root, todo, setting, entries)
        found.update(snaps)
    else:
        with _quiet_dvc():
            repo = _open_repo(root)
            try:
                remote = _resolve_remote(repo, root, setting)
            finally:
                repo.close()
    # Resolving may have written the remote into .dvc/config: data found unchanged above is
    # still unchanged under the new config (only the remote differs), so no rehash follows.
    config_sig = _config_sig(root)
    for path in unpushed:  # still unchanged: only the push is missing
        rel = _rel(path, root)
        changes[rel] = {**entries[rel], "config": config_sig}
    key = remote.key if remote is not None else None
    for entry in changes.values():
        if entry is not None:
            entry.update(setting=setting, remote=key, pushed=None)
    why = None
    pushed = [found[p] for p in (*todo, *unpushed)]
    if remote is not None:
        why = _push(root, remote, pushed)
        if why is None:
            for entry in changes.values():
                if entry is not None:
                    entry["pushed"] = key
            _stats["pushed"] += len(pushed)
    _update_state(root, changes)
    result = [found[p] for p in targets]
    if remote is not None and why is not None:
        raise PushError(
            f"Snapshotted {_names([*todo, *unpushed], root)} with DVC, but could not push "
            f"to the DVC remote {remote}: {why}. The data is safe in the local DVC cache of "
            f"{root}; push it later with `dvc push -r {remote.name}` there, or snapshot it "
            "again (that pushes what is missing).",
            result,
            remote.name,
        )
    return result


def _needs_push(entry: dict[str, Any], setting: str | None) -> bool:
    """Whether unchanged data must still go to the remote: the entry predates remotes, the
    ``dvc_remote`` setting changed since, or the last push to its remote failed."""
    if "remote" not in entry or entry.get("setting") != setting:
        return True
    return bool(entry["remote"]) and entry["remote"] != entry.get("pushed")


def _snapshot_with_dvc(
    root: Path, paths: list[Path], remote_setting: str | None, entries: dict[str, dict[str, Any]]
) -> tuple[dict[Path, DataSnapshot], dict[str, dict[str, Any] | None], _Remote | None]:
    """``Repo.add`` of ``paths`` after reading each file once ourselves; also resolves the
    DVC remote (:func:`_resolve_remote`) while the files are read.

    Why not plain ``Repo.add``: it reads a file to hash it, copies it into the cache, and
    copies the cache back over the workspace file ("relink"): ~3x ``md5sum`` for 1 GiB.
    Here a background thread reads each file once, hashing it while writing the copy that
    becomes the cache object (:func:`_copy_md5`) - meanwhile DVC is imported and the repo
    opened - then the hash goes into DVC's own state database (keyed like DVC keys it:
    inode, mtime, size) and ``Repo.add(relink=False)`` finds hash and object in place and
    only validates and writes the ``.dvc`` file and ``.gitignore`` entry. Where that does
    not apply (the file changed while read, a non-default cache type or a shared cache is
    configured, folders), DVC does the work itself, so the result is always what
    ``dvc add`` records.

    DVC's state trusts (inode, mtime, size), so a same-size edit whose mtime was put back
    would give DVC a stale hash. Files seen changed (ctime since their last snapshot) have
    their DVC state entry replaced by the fresh hash, or dropped so that DVC rehashes them.
    """
    import threading

    probe = _fs_now(root)
    before = {}
    for path in paths:
        since = entries.get(_rel(path, root), {}).get("time")
        try:
            before[path] = _sig_of(path, since if isinstance(since, int) else None)
        except OSError as exc:
            raise DataError(f"Cannot read {path}: {exc}") from exc

    files = [p for p in paths if p.is_file()]
    tmp_dir = root / ".dvc" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    prehashed: dict[Path, _Prehashed | None] = {}
    failed: list[BaseException] = []

    def hash_files() -> None:
        for path in files:
            try:
                prehashed[path] = _prehash(path, tmp_dir)
            except OSError:
                prehashed[path] = None  # DVC will read it and report the problem
            except BaseException as exc:
                failed.append(exc)
                return

    worker = threading.Thread(target=hash_files, name="mlops-data-hash", daemon=True)
    worker.start()
    repo = None
    try:
        with _quiet_dvc():
            repo = _open_repo(root)  # overlaps with the hashing
            remote = _resolve_remote(repo, root, remote_setting)
            config_sig = _config_sig(root)  # after the remote may have been configured
            odb = repo.cache.local
            cache_conf = repo.config.get("cache", {})
            plain_cache = not cache_conf.get("type") and not cache_conf.get("shared")
            worker.join()
            if failed:
                raise failed[0]
            stale: list[str] = []
            for path in paths:
                pre = prehashed.get(path)
                if pre is None:
                    stale.extend(before[path][2])
                    continue
                if plain_cache:
                    _adopt(odb, pre)
                if not _seed_state(repo, path, pre):
                    stale.append(os.fspath(path))
            _forget_state(repo, stale)
            stages = repo.add([os.fspath(p) for p in paths], relink=not plain_cache)
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # DvcException, or e.g. a KeyError from a malformed .dvc file
        from dvc.exceptions import DvcException

        why = str(exc) if isinstance(exc, DvcException) else f"{type(exc).__name__}: {exc}"
        raise DataError(f"DVC could not snapshot {_names(paths, root)}: {why}") from exc
    finally:
        worker.join()
        for pre in prehashed.values():
            if pre is not None:
                pre.tmp.unlink(missing_ok=True)
        if repo is not None:
            repo.close()

    snaps: dict[Path, DataSnapshot] = {}
    changes: dict[str, dict[str, Any] | None] = {}
    for path, stage in zip(paths, stages, strict=True):
        rel = _rel(path, root)
        out = stage.outs[0]
        md5, meta = str(out.hash_info.value), out.meta
        nfiles = int(meta.nfiles or 0) if out.hash_info.isdir else 1
        snaps[path] = DataSnapshot(rel, md5, int(meta.size or 0), nfiles)
        pre = prehashed.get(path)
        _stats["onepass" if pre is not None and pre.md5 == md5 else "dvc"] += 1
        sig, newest, _ = before[path]
        try:
            unchanged = _sig_of(path, since=sys.maxsize)[0] == sig
        except OSError:
            unchanged = False
        # Remember only data older than this call's start on the filesystem's clock: a
        # same-size edit in the same clock tick as what we read would keep its mtime.
        if unchanged and newest < probe:
            changes[rel] = {
                "sig": sig,
                "md5": md5,
                "size": snaps[path].size,
                "nfiles": nfiles,
                "cache": odb.path,
                "config": config_sig,
                "time": probe,
            }
        else:
            changes[rel] = None
    return snaps, changes, remote


def _adopt(odb: Any, pre: _Prehashed) -> None:
    """Make the temporary copy ``pre.tmp`` the DVC cache object of ``pre.md5``."""
    obj = Path(odb.oid_to_path(pre.md5))
    if obj.exists():
        pre.tmp.unlink()
        return
    odb.makedirs(os.fspath(obj.parent))
    try:
        pre.tmp.replace(obj)
    except OSError:  # e.g. the cache is on another filesystem: let DVC copy it
        odb.add(os.fspath(pre.tmp), odb.fs, pre.md5)
        pre.tmp.unlink(missing_ok=True)
    odb.protect(os.fspath(obj))


def _seed_state(repo: Repo, path: Path, pre: _Prehashed) -> bool:
    """Record ``pre.md5`` as the hash of ``path`` in DVC's state; False if it changed."""
    from dvc_data.hashfile.hash_info import HashInfo

    fs_path = os.fspath(path)
    try:
        info = repo.fs.info(fs_path)
    except OSError:
        return False
    st = pre.before
    if (info.get("size"), info.get("ino"), info.get("mtime")) != (
        st.st_size,
        st.st_ino,
        st.st_mtime,
    ):
        return False
    repo.state.save(fs_path, repo.fs, HashInfo("md5", pre.md5), info)
    return True


def _forget_state(repo: Repo, paths: list[str]) -> None:
    """Drop DVC's remembered hashes of ``paths`` so that ``Repo.add`` rehashes them."""
    hashes = getattr(repo.state, "hashes", None)
    if not paths or hashes is None:
        return
    with hashes.transact():
        for fs_path in paths:
            hashes.delete(fs_path)


def _names(paths: list[Path], root: Path) -> str:
    return ", ".join(repr(_rel(p, root)) for p in paths)


# -- restore ------------------------------------------------------------------------------


def restore(
    snap: DataSnapshot,
    dest: str | os.PathLike[str],
    root: Path | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Put the snapshot's exact bytes at ``dest`` (a file, or a folder tree) from the DVC cache.

    What the local cache lacks is fetched from the project's DVC remote first (``dvc_remote``
    or DVC's default remote; see :func:`_fetch`), so a fresh clone - even one where DVC was
    never initialised, if ``dvc_remote`` is set - can restore what another machine pushed.
    Every byte is checked against its md5 on the way. NotFoundError if neither the cache nor
    the remote has the data. An existing ``dest`` with other content is only replaced with
    ``overwrite=True`` (DataError otherwise); an identical one is left alone. ``dest`` is
    swapped in whole, never half-written; relative ``dest`` is taken from the current
    directory. Returns the absolute ``dest``.
    """
    root = _project_root(root)
    dest = Path.cwd() / Path(os.fspath(dest)).expanduser()
    dest = Path(os.path.normpath(dest))
    if not _MD5.fullmatch(snap.md5):
        raise DataError(f"Not a DVC md5 in the snapshot of {snap.path!r}: {snap.md5!r}")
    setting = _remote_setting(root)
    if not (root / ".dvc").is_dir():
        if setting is None:
            raise NotFoundError(
                f"Cannot restore {snap.path!r}: {root} is not a DVC repository (no .dvc "
                "folder), so it has no cache to restore from, and no dvc_remote is set in "
                "[tool.jupyter-mlops] of its pyproject.toml to fetch from."
            )
        ensure_dvc(root)  # a fresh clone: the remote to fetch from is configured below

    remote: _Remote | None = None
    fetched: set[str] = set()
    with _quiet_dvc():
        repo = _open_repo(root)
        try:
            cache = str(repo.cache.local.path)
            files, absent = _cache_plan(snap, cache)
            if absent:
                remote = _resolve_remote(repo, root, setting)
                if remote is None:
                    raise NotFoundError(
                        f"{_absent(snap, cache, files, absent)} {_no_remote_hint()}"
                    )
                fetched = _fetch(repo, remote, snap, cache)
                files, absent = _cache_plan(snap, cache)
        finally:
            repo.close()
    if absent:  # the remote said it sent them, but they are not there
        raise NotFoundError(f"{_absent(snap, cache, files, absent)} (fetched from {remote})")

    if os.path.lexists(dest):
        if _matches(dest, snap, files):
            return dest
        if not overwrite:
            raise DataError(
                f"Cannot restore {snap.path!r} to {dest}: it exists with different content. "
                "Pass overwrite=True to replace it, or restore somewhere else."
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.restoring")
    try:
        if snap.is_dir:
            tmp.mkdir()
            for rel, md5 in files:
                target = tmp.joinpath(*PurePosixPath(rel).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = remote if md5 in fetched else None
                _restore_file(_object_path(cache, md5), target, md5, snap.path, source)
        else:
            source = remote if snap.md5 in fetched else None
            _restore_file(_object_path(cache, snap.md5), tmp, snap.md5, snap.path, source)
        _swap_in(tmp, dest)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    return dest


def _cache_plan(snap: DataSnapshot, cache: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(relpath, md5) of each file to restore (one ``("", md5)`` for a file snapshot), and
    the md5s of the objects the cache lacks (the manifest's alone if that is missing)."""
    if not snap.is_dir:
        files = [("", snap.md5)]
    else:
        manifest = _object_path(cache, snap.md5)
        listed = _read_manifest(manifest) if manifest.is_file() else None
        if listed is None:
            return [], [snap.md5]
        for rel, md5 in listed:
            parts = PurePosixPath(rel).parts
            if not parts or rel.startswith("/") or ".." in parts or not _MD5.fullmatch(md5):
                raise DataError(f"Bad entry {rel!r} in the DVC manifest of {snap.path!r}")
        files = listed
    absent = [md5 for _, md5 in files if not _object_path(cache, md5).is_file()]
    return files, list(dict.fromkeys(absent))


def _absent(snap: DataSnapshot, cache: str, files: list[tuple[str, str]], absent: list[str]) -> str:
    """What the cache lacks of ``snap``, as the start of an error message."""
    where = f"not in this project's DVC cache ({cache})."
    if snap.is_dir and not files:
        return f"The folder snapshot of {snap.path!r} (md5 {snap.md5}) is {where}"
    if snap.is_dir:
        missing = sum(1 for _, md5 in files if md5 in set(absent))
        return f"The snapshot of {snap.path!r} {missing} of its {len(files)} file(s) are {where}"
    return f"The snapshot of {snap.path!r} (md5 {snap.md5}) is {where}"


def _restore_file(
    obj: Path, target: Path, md5: str, name: str, remote: _Remote | None = None
) -> None:
    """Copy the cache object ``obj`` to ``target`` (a new file), checking its md5.

    ``remote``: the object was just fetched from there; a corrupted one is dropped from
    the local cache (so a later fetch can bring a repaired copy) and the error names it.
    """
    with obj.open("rb", buffering=0) as src, target.open("xb", buffering=0) as dst:
        got, _ = _copy_md5(src, dst.fileno())
    if got == md5:
        return
    if remote is not None:
        _discard(obj)
        raise DataError(
            f"The copy of {name!r} on the DVC remote {remote} is corrupted: object {md5} "
            f"has md5 {got}. Delete that object on the remote and push it again from a "
            f"clone that has the data (`dvc push -r {remote.name}`), then restore again."
        )
    raise DataError(
        f"The DVC cache object {obj} of {name!r} is corrupted (md5 {got}, expected {md5});"
        " delete that file and fetch it again from a DVC remote (`dvc fetch`)."
    )


def _matches(dest: Path, snap: DataSnapshot, files: list[tuple[str, str]]) -> bool:
    """True if ``dest`` already holds exactly the snapshot's content."""
    if dest.is_symlink():
        return False
    if not snap.is_dir:
        return dest.is_file() and dest.stat().st_size == snap.size and _md5_file(dest) == snap.md5
    if not dest.is_dir():
        return False
    present = {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if not p.is_dir()}
    wanted = dict(files)
    if set(present) != set(wanted):
        return False
    return all(
        present[rel].is_file() and _md5_file(present[rel]) == md5 for rel, md5 in wanted.items()
    )


def _swap_in(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest``, replacing whatever is there (atomically for a file)."""
    if not os.path.lexists(dest) or (tmp.is_file() and not dest.is_dir()):
        tmp.replace(dest)
        return
    if dest.is_symlink() or not dest.is_dir():
        dest.unlink()
        tmp.replace(dest)
        return
    old = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.old")
    dest.replace(old)
    try:
        tmp.replace(dest)
    except BaseException:
        old.replace(dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
