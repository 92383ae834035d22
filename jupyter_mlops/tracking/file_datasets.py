"""Data files a run read (``%%track --data``) as MLflow dataset inputs of the run.

DVC snapshots the files (``data/``); this module makes each one a dataset of MLflow 3, so
the MLflow UI's "Datasets used" lists it next to the in-memory training frame: name = the
file's name, digest = its DVC md5 (what ``restore`` fetches), source = its path in the
project (and the configured DVC remote), context ``training``, and for a tabular file
(CSV, TSV, Parquet) its schema and row count.

Reading a file for its schema costs a pass over it, so the result is cached by md5 in
``.mlops/datasets/<md5>.json``: a second run on the same data reads nothing. The schema
comes from a CSV's first ``SCHEMA_SAMPLE_ROWS`` rows; its rows are counted by counting lines
(a CSV whose text fields span lines is parsed instead), and not at all over
``COUNT_ROWS_LIMIT``. A Parquet file says its row count in its footer, at any size.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.client import client, quiet_mlflow
from jupyter_mlops.config import Config

if TYPE_CHECKING:
    from mlflow.entities import Dataset, DatasetInput

    from jupyter_mlops.data import DataSnapshot
    from jupyter_mlops.tracking.run import TrackedRun

COUNT_ROWS_LIMIT = 64 * 1024 * 1024  # bytes: larger CSV files get no row count
SCHEMA_SAMPLE_ROWS = 1000  # rows read for the schema of a CSV not counted
CACHE_DIR = "datasets"
SOURCE_TYPE = "local"  # MLflow's type for a file path; the UI shows its "uri"
TAG_DVC_PATH = "mlops.dvc.path"
_TEXT_SEPARATORS = {".csv": ",", ".tsv": "\t"}
_log = safe_logger(__name__)


def log_data_inputs(run: TrackedRun, snaps: Sequence[DataSnapshot]) -> None:
    """Record ``snaps`` as dataset inputs (context ``training``) of ``run``, in one call.

    A file whose schema cannot be read is still recorded (name, digest, source); the
    reason is a note on the run. Offline, the run's buffer replays them from its data tag.
    """
    if not snaps:
        return
    inputs = [data_input(snap, run.config, run.notes) for snap in snaps]
    run._remote(client(run.config).log_inputs, run.run_id, datasets=inputs)


def data_input(snap: DataSnapshot, config: Config, notes: list[str] | None = None) -> DatasetInput:
    """The MLflow dataset input of one snapshot."""
    from mlflow.entities import DatasetInput, InputTag

    tags = [InputTag("mlflow.data.context", "training"), InputTag(TAG_DVC_PATH, snap.path)]
    return DatasetInput(file_dataset(snap, config, notes), tags)


def file_dataset(snap: DataSnapshot, config: Config, notes: list[str] | None = None) -> Dataset:
    """MLflow's dataset entity for a DVC-snapshotted file or folder."""
    from mlflow.entities import Dataset

    described = _described(snap, config, notes)
    source: dict[str, Any] = {"uri": snap.path}
    remote = _remote_setting(config)
    if remote:
        source["dvc_remote"] = remote
    return Dataset(
        name=Path(snap.path).name,
        digest=snap.md5,
        source_type=SOURCE_TYPE,
        source=json.dumps(source),
        schema=described.get("schema"),
        profile=json.dumps(described["profile"]) if described.get("profile") else None,
    )


def _remote_setting(config: Config) -> str | None:
    from jupyter_mlops.data.remote import remote_setting

    try:
        return remote_setting(config.root)
    except Exception:  # a malformed setting is reported by the snapshot itself
        return None


def _described(snap: DataSnapshot, config: Config, notes: list[str] | None) -> dict[str, Any]:
    """``{"schema": ..., "profile": {...}}`` of a snapshot, from the cache when known."""
    cache = config.mlops_dir / CACHE_DIR / f"{snap.md5}.json"
    try:
        cached: dict[str, Any] = json.loads(cache.read_text())
        return cached
    except (OSError, ValueError):
        pass
    profile: dict[str, Any] = {"size_bytes": snap.size}
    if snap.is_dir:
        profile["files"] = snap.nfiles
        described: dict[str, Any] = {"profile": profile}
    else:
        try:
            described = _describe_file(config.root / snap.path, snap.size)
            described["profile"] = {**profile, **described.get("profile", {})}
        except Exception as exc:  # not a table after all, or unreadable: no schema
            if notes is not None and Path(snap.path).suffix.lower() in _TABULAR:
                notes.append(f"data {snap.path}: no schema recorded ({type(exc).__name__}: {exc})")
            described = {"profile": profile}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(described))
        tmp.replace(cache)
    except OSError as exc:
        _log.debug("dataset cache not written: %s", exc)
    return described


_TABULAR = {*_TEXT_SEPARATORS, ".parquet"}


def _describe_file(path: Path, size: int) -> dict[str, Any]:
    """Schema and row count of a tabular file; ``{}`` for any other kind of file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        frame = next(parquet.iter_batches(batch_size=SCHEMA_SAMPLE_ROWS)).to_pandas()
        rows = parquet.metadata.num_rows
    elif suffix in _TEXT_SEPARATORS:
        import pandas as pd

        sep = _TEXT_SEPARATORS[suffix]
        frame = pd.read_csv(path, sep=sep, nrows=SCHEMA_SAMPLE_ROWS)
        if len(frame) < SCHEMA_SAMPLE_ROWS:
            rows = len(frame)  # the sample was the whole file
        elif size > COUNT_ROWS_LIMIT:
            rows = None
        elif _multiline(frame):  # a quoted field spans lines: only a parser counts right
            rows = sum(len(chunk) for chunk in pd.read_csv(path, sep=sep, chunksize=100_000))
        else:
            rows = _count_lines(path) - 1  # the header
    else:
        return {}
    profile: dict[str, Any] = {"num_columns": len(frame.columns)}
    if rows is not None:
        profile.update(num_rows=int(rows), num_elements=int(rows) * len(frame.columns))
    else:
        profile["num_rows"] = f"not counted (file over {COUNT_ROWS_LIMIT >> 20} MiB)"
    return {"schema": _schema_json(frame), "profile": profile}


def _multiline(frame: Any) -> bool:
    """True if a text column of ``frame`` holds a line break."""
    text = frame.select_dtypes(include=["object", "string"])
    return any(text[c].astype(str).str.contains("\n", regex=False).any() for c in text)


def _count_lines(path: Path) -> int:
    """Lines of a text file (a last line without a newline counts), read in 1 MiB blocks:
    a tenth of what parsing costs, and no memory."""
    count, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _schema_json(frame: Any) -> str:
    """The schema JSON MLflow's own pandas datasets record (``mlflow_colspec``)."""
    from mlflow.types.utils import _infer_schema

    with warnings.catch_warnings(), quiet_mlflow():
        warnings.simplefilter("ignore")  # MLflow's integer-column hint
        schema = _infer_schema(frame)
    return json.dumps({"mlflow_colspec": schema.to_dict()})
