"""``jupyter-mlops doctor`` / ``%mlops doctor``: check the project's stores and files and
say what is wrong and how to fix it.

Everything the project keeps is read back the way its readers read it: the SQLite stores
(``mlflow.db``, ``predictions.db``: ``PRAGMA integrity_check``), every deployment's
``state.json``, every pipeline run's ``run.json`` and retraining decision, every buffered
run, the alias history and names of the registered models (when the tracking store is
sound), and every ``.dvc`` pointer's data in the DVC cache. Each damaged record is one
line: what and where, what is wrong, the fix. The command line exits 1 when anything is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.damage import Damaged
from jupyter_mlops.commands.base import Arguments, Command, Context
from jupyter_mlops.commands.options import json_option

if TYPE_CHECKING:
    from jupyter_mlops.config import Config

# Folders never searched for .dvc pointers (tools' own state, environments, outputs).
_SKIP_DIRS = {".git", ".dvc", ".mlops", ".venv", "venv", "node_modules", "__pycache__", "mlruns"}
_MAX_POINTERS = 10_000


@dataclass
class Checkup:
    """What ``doctor`` checked (one line each) and the damaged records it found."""

    root: Path
    checked: list[str] = field(default_factory=list)
    problems: list[Damaged] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": list(self.checked),
            "problems": [p.to_dict() for p in self.problems],
        }

    def __str__(self) -> str:
        lines = [f"jupyter-mlops doctor: {self.root}"]
        lines += [f"  checked  {line}" for line in self.checked]
        lines += [f"  DAMAGED  {p}" for p in self.problems]
        count = len(self.problems)
        lines.append(
            f"{count} problem{'s' * (count != 1)} found." if count else "Everything is sound."
        )
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        return f"<pre>{escape(str(self))}</pre>"


def checkup(config: Config | None = None) -> Checkup:
    """Check every store and record of the project (see the module's docstring)."""
    from jupyter_mlops.config import load_config

    config = config or load_config()
    found = Checkup(config.root)
    sound_store = _databases(config, found)
    _deployments(config, found)
    _pipelines(config, found)
    _buffered(config, found)
    if sound_store:
        try:
            _registry(config, found)
        except Exception as exc:  # a store that does not answer: say so, check the rest
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            found.checked.append(f"registered models: not checked ({first})")
    else:
        found.checked.append("registered models: not checked (the tracking store is damaged)")
    _pointers(config.root, found)
    return found


def _databases(config: Config, found: Checkup) -> bool:
    """The SQLite stores; whether the tracking store is sound (or not a local file)."""
    from jupyter_mlops.client import project_databases, recovery_hint, sqlite_damage

    tracking = _sqlite_file(config.tracking_uri)
    sound = True
    for path in project_databases(config):
        what = sqlite_damage(path, full=True)
        found.checked.append(f"database {path} (integrity_check)")
        if what:
            found.problems.append(Damaged("database", path, what, recovery_hint(path)))
            sound = sound and path != tracking
    if tracking is None:
        found.checked.append(f"tracking store {_redacted(config.tracking_uri)}: not a file here")
    return sound


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0]).resolve()


def _redacted(url: str) -> str:
    from jupyter_mlops._util.urls import redact

    return redact(url)


def _deployments(config: Config, found: Checkup) -> None:
    from jupyter_mlops._util.layout import STATE_FILE, deployments_root
    from jupyter_mlops.serving.listing import DamagedDeploymentError, checked_state

    root = deployments_root(config.mlops_dir)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in folders:
        if not (folder / STATE_FILE).exists():
            continue
        try:
            checked_state(folder)
        except DamagedDeploymentError as exc:
            d = exc.damaged
            found.problems.append(Damaged("deployment state", d.path, d.problem, d.fix))
    found.checked.append(f"{len(folders)} deployment state file(s) under {root}")


def _pipelines(config: Config, found: Checkup) -> None:
    from jupyter_mlops.pipelines.decisions import RETRAIN_DIR
    from jupyter_mlops.pipelines.records import list_pipeline_runs, runs_root

    damaged: list[Damaged] = []
    runs = list_pipeline_runs(config=config, damaged=damaged)
    found.problems += damaged
    found.checked.append(f"{len(runs) + len(damaged)} pipeline run record(s)")
    decisions = sorted((runs_root(config) / RETRAIN_DIR).glob("*.json"))
    for path in decisions:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"it holds a JSON {type(data).__name__}, not an object")
        except (OSError, ValueError) as exc:
            fix = f"restore it from a backup, or delete it (one retraining decision: {path.stem})"
            found.problems.append(Damaged("retraining decision", path, str(exc), fix))
    if decisions:
        found.checked.append(f"{len(decisions)} retraining decision(s)")


def _buffered(config: Config, found: Checkup) -> None:
    from jupyter_mlops.tracking.buffer import damaged_pending, pending

    damaged: list[Damaged] = []
    items = pending(config, damaged)
    for item in items:
        if not (item.folder / "models.pkl").is_file():
            damaged.append(damaged_pending(item.folder, "models.pkl is missing"))
    found.problems += damaged
    found.checked.append(f"{len(items) + len(damaged)} buffered run(s)")


def _registry(config: Config, found: Checkup) -> None:
    """Registered models: a name refused here, a damaged alias-history entry or tag."""
    from jupyter_mlops.registry import alias_log
    from jupyter_mlops.registry.refs import check_model_name, is_lock_model

    models = [(n, tags) for n, tags in _registered_models(config) if not is_lock_model(n)]
    for name, tags in models:
        where = Path(f"registered model {name!r}")
        try:
            check_model_name(name)
        except Exception as exc:
            fix = "rename it (MlflowClient().rename_registered_model) to use it here"
            found.problems.append(Damaged("model name", where, str(exc), fix))
        skipped: list[str] = []
        alias_log.read_events(tags, skipped)
        fix = (
            "the entry is left out of history and rollback; fix or delete the tag in the "
            "MLflow UI (model page, tags) if it should count"
        )
        found.problems += [Damaged("alias history", where, note, fix) for note in skipped]
    found.checked.append(f"{len(models)} registered model(s): names and alias history")


def _registered_models(config: Config) -> list[tuple[str, dict[str, str]]]:
    """Each registered model's name and tags: read from the SQLite store directly (in
    milliseconds, where MLflow's client takes seconds to start), else through the client."""
    import contextlib
    import sqlite3

    path = _sqlite_file(config.tracking_uri)
    if path is not None:
        if not path.is_file():
            return []  # no store yet: nothing registered
        try:
            with contextlib.closing(
                sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
            ) as conn:
                names = [str(r[0]) for r in conn.execute("SELECT name FROM registered_models")]
                tags: dict[str, dict[str, str]] = {n: {} for n in names}
                for name, key, value in conn.execute(
                    "SELECT name, key, value FROM registered_model_tags"
                ):
                    tags.setdefault(str(name), {})[str(key)] = str(value or "")
            return sorted(tags.items())
        except sqlite3.Error:
            pass  # a schema this version does not know: ask MLflow
    from jupyter_mlops.client import client, quiet_mlflow
    from jupyter_mlops.tracking import store

    with quiet_mlflow():
        models = store.call(client(config).search_registered_models, max_results=1000)
    return [(m.name, dict(m.tags)) for m in models]


def _pointers(root: Path, found: Checkup) -> None:
    """Each ``.dvc`` pointer's data in the local DVC cache (what a restore needs)."""
    from jupyter_mlops.data.dvcfiles import MD5, object_path, read_dvc_file

    if not (root / ".dvc").is_dir():
        return
    cache = _dvc_cache(root)
    count = 0
    for pointer in _dvc_files(root):
        count += 1
        out = read_dvc_file(pointer)
        if out is None or not MD5.fullmatch(out.get("md5", "")):
            continue  # a pipeline stage or a hand-written file: not ours to judge
        obj = object_path(str(cache), out["md5"])
        if not obj.is_file():
            data = pointer.with_suffix("")
            fix = (
                f"`dvc pull {pointer.name}` from the remote, or `dvc add {data.name}` again "
                "if the data in the workspace is the right one"
            )
            problem = f"its data ({out['md5']}) is not in the DVC cache {cache}"
            found.problems.append(Damaged(".dvc pointer", pointer, problem, fix))
    found.checked.append(f"{count} .dvc pointer(s) against the cache {cache}")


def _dvc_cache(root: Path) -> Path:
    """The local cache's md5 objects (``.dvc/cache/files/md5`` unless ``.dvc/config`` says)."""
    cache = root / ".dvc" / "cache"
    for name in ("config", "config.local"):
        try:
            text = (root / ".dvc" / name).read_text()
        except OSError:
            continue
        section = re.search(r"^\[cache\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        setting = re.search(r"^\s*dir\s*=\s*(.+?)\s*$", section[1], re.M) if section else None
        if setting:
            cache = (root / ".dvc" / setting[1]).resolve()
    return cache / "files" / "md5"


def _dvc_files(root: Path) -> Iterator[Path]:
    seen = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".dvc") and seen < _MAX_POINTERS:
                seen += 1
                yield Path(folder) / name


class Doctor(Command):
    name = "doctor"
    magic_form = "%mlops doctor"
    help = "check the project's stores and files; say what is damaged and the fix"
    doc = __doc__ or ""

    def add_arguments(self, parser: Arguments) -> None:
        json_option(parser)

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        result = checkup()
        if getattr(args, "json", False):
            from jupyter_mlops.commands.output import Json

            return Json(result.to_dict())
        return result

    def exit_code(self, args: argparse.Namespace, result: Any) -> int:
        ok = result.data["ok"] if hasattr(result, "data") else result.ok
        return 0 if ok else 1
