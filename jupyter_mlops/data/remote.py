"""The project's DVC remote: which one it is, pushing snapshots to it, fetching from it.

With a remote (``dvc_remote`` in ``[tool.jupyter-mlops]``, or DVC's own default remote)
every snapshot is also pushed there, and a restore fetches by hash what the local cache
lacks, so another machine or a fresh clone can restore data it never snapshotted.
Transfers run DVC quietly and turn what DVC logged into our own error messages.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jupyter_mlops.config import read_pyproject
from jupyter_mlops.data.dvcfiles import cache_plan, discard, object_path, read_manifest
from jupyter_mlops.data.fastcopy import md5_file
from jupyter_mlops.data.record import DataSnapshot
from jupyter_mlops.data.repo import open_repo, quiet_dvc
from jupyter_mlops.errors import ConfigError, DataError, NotFoundError

if TYPE_CHECKING:
    from dvc.repo import Repo

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
class Remote:
    """A DVC remote of the repo: its name and URL (for messages and the state file)."""

    name: str
    url: str

    @property
    def key(self) -> str:
        """What the state file records as "pushed to": a changed URL means push again."""
        return f"{self.name}={self.url}"

    def __str__(self) -> str:
        return f"{self.name!r} ({self.url})"


def remote_setting(root: Path) -> str | None:
    """``dvc_remote`` from ``[tool.jupyter-mlops]`` in ``root/pyproject.toml`` (no DVC import)."""
    value = read_pyproject(root).get("dvc_remote")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"dvc_remote in [tool.jupyter-mlops] of {root / 'pyproject.toml'} must be a DVC "
            f"remote name, a folder path or a URL, not {value!r}"
        )
    return value.strip()


def resolve_remote(repo: Repo, root: Path, setting: str | None) -> Remote | None:
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
        return Remote(name, str(remotes[name].get("url", "")))
    if setting in remotes:
        return Remote(setting, str(remotes[setting].get("url", "")))

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
    return Remote(_REMOTE_NAME, url)


def _same_url(a: str, b: str) -> bool:
    if _URL.match(a) or _URL.match(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.normpath(Path(a).expanduser()) == os.path.normpath(Path(b).expanduser())


def no_remote_hint() -> str:
    """Why data missing from the cache cannot be fetched when there is no remote."""
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
            files = read_manifest(object_path(cache, snap.md5)) or []
            oids.extend(md5 for _, md5 in files)
        oids.append(snap.md5)
    return list(dict.fromkeys(oids))


def push(root: Path, remote: Remote, snaps: list[DataSnapshot]) -> str | None:
    """Upload the objects of ``snaps`` that the remote lacks; None, or why it failed."""
    from dvc_data.hashfile.hash_info import HashInfo

    with quiet_dvc(), _dvc_errors() as logged:
        repo = open_repo(root)
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


def fetch(repo: Repo, remote: Remote, snap: DataSnapshot, cache: str) -> set[str]:
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
        manifest = object_path(cache, snap.md5)
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
            if md5_file(manifest) != snap.md5.removesuffix(".dir"):
                discard(manifest)
                raise DataError(
                    f"The folder manifest of {snap.path!r} on {where} is corrupted (its "
                    f"bytes do not hash to {snap.md5}). Delete it there and push it again "
                    f"from a clone that has it (`dvc push -r {remote.name}`)."
                )
            fetched.add(snap.md5)
        files, absent = cache_plan(snap, cache)
        if absent:
            try:
                repo.cloud.pull([HashInfo("md5", md5) for md5 in absent], remote=remote.name)
            except Exception as exc:
                raise DataError(f"Cannot fetch {snap.path!r} from {where}: {exc}") from exc
            fetched.update(absent)
    still = [md5 for md5 in absent if not object_path(cache, md5).is_file()]
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
