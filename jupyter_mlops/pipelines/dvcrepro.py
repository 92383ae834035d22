"""One ``dvc repro`` = one pipeline run: the stages it runs join one parent MLflow run.

DVC runs each stage of an exported pipeline as its own process
(``python -m jupyter_mlops.pipelines step ...``), so without help every stage would open a
pipeline run (and a parent MLflow run) of its own. A stage finds the ``dvc repro`` it
belongs to - the nearest ancestor process that is DVC (``dvc ...``, ``python -m dvc``),
identified by its pid and its start time, so a reused pid is another repro - and joins the
pipeline run the first stage of that repro opened: one ``run.json`` with every stage, one
parent MLflow run with one child run per stage. Set ``JUPYTER_MLOPS_REPRO_ID`` to group
stages yourself (e.g. a CI job that calls ``dvc repro`` several times).

Which pipeline run a repro has opened is kept in ``.mlops/dvc-repro/<key>.json``, under a
file lock that also makes stages of one repro run their bookkeeping one at a time. The
parent MLflow run is ended after every stage (FINISHED while every stage so far succeeded,
FAILED otherwise) and set RUNNING again by the next, so it never stays RUNNING after DVC
is done, whether DVC stops at a failed stage or not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jupyter_mlops.config import Config
from jupyter_mlops.errors import NotFoundError
from jupyter_mlops.pipelines.records import PipelineRun, get_pipeline_run, new_run_id
from jupyter_mlops.pipelines.spec import Pipeline

REPRO_ENV = "JUPYTER_MLOPS_REPRO_ID"
TAG_REPRO = "mlops.dvc.repro"
SESSIONS_DIR = "dvc-repro"
_FORGET_AFTER = 7 * 24 * 3600  # session files older than this are removed


def repro_id() -> str | None:
    """The ``dvc repro`` this process runs under: ``JUPYTER_MLOPS_REPRO_ID``, else
    ``<pid>-<start time in ms>`` of the nearest ancestor DVC process, else None."""
    given = os.environ.get(REPRO_ENV, "").strip()
    if given:
        return given
    import psutil

    try:
        proc = psutil.Process().parent()
        while proc is not None:
            if is_dvc_command(proc.cmdline()):
                return f"{proc.pid}-{int(proc.create_time() * 1000)}"
            proc = proc.parent()
    except psutil.Error:  # a parent exited or cannot be read: not a repro we can join
        return None
    return None


def is_dvc_command(cmdline: list[str]) -> bool:
    """``dvc ...``, ``python /path/to/dvc ...`` (its entry-point script) or ``python -m dvc``."""
    names = [Path(arg).name for arg in cmdline[:2]]
    if "dvc" in names or "dvc.exe" in names:
        return True
    return len(cmdline) >= 3 and cmdline[1] == "-m" and cmdline[2] == "dvc"


@dataclass
class Session:
    """The pipeline run one ``dvc repro`` has opened for one pipeline (if any yet)."""

    key: str  # the repro id
    file: Path
    run_id: str  # the pipeline run's id, new if this is the repro's first stage
    record: PipelineRun | None  # the run so far; None before its first stage

    def remember(self, record: PipelineRun) -> None:
        """Write down the pipeline run for the repro's next stages."""
        data = {"repro": self.key, "run_id": record.run_id, "time": time.time()}
        tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.file)


@contextlib.contextmanager
def joining(spec: Pipeline, config: Config) -> Iterator[Session | None]:
    """The session of the ``dvc repro`` running this stage (None outside one), held
    under its lock for the whole stage."""
    key = repro_id()
    if key is None:
        yield None
        return
    import fcntl

    folder = config.mlops_dir / SESSIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    which = hashlib.sha256(f"{key}\0{spec.path or spec.name}".encode()).hexdigest()[:24]
    file = folder / f"{which}.json"
    with (folder / f"{which}.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield _session(key, file, config)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    _forget_old(folder)


def _session(key: str, file: Path, config: Config) -> Session:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        record = get_pipeline_run(str(data["run_id"]), config=config)
    except (OSError, ValueError, KeyError, TypeError, NotFoundError):
        return Session(key, file, new_run_id(), None)  # the repro's first stage
    return Session(key, file, record.run_id, record)


def join(previous: PipelineRun, stage: PipelineRun) -> PipelineRun:
    """``previous`` (the repro's pipeline run so far) with the stage's step added."""
    previous.steps.update(stage.steps)
    previous.params.update(stage.params)
    previous.status, previous.ended = stage.status, None
    return previous


def _forget_old(folder: Path) -> None:
    """Drop session files of repros long finished (their pipeline runs stay)."""
    cutoff = time.time() - _FORGET_AFTER
    for path in folder.iterdir():
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
