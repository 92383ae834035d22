"""A drift reference: the training data of a deployed model version, or one given.

By default the reference of a deployment is the training data of the model version it
serves, found through lineage (model version -> run -> DVC snapshot) and restored from DVC
into ``.mlops/monitoring/reference/<md5>/``; its profile is cached under the snapshot's
hash in ``.mlops/monitoring/cache/``, so it is computed (and restored) once per training
set. A CSV/Parquet path, a DataFrame or a profile can be given instead.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MlopsError, MonitoringError
from jupyter_mlops.monitoring.drift import as_frame
from jupyter_mlops.monitoring.profile import ReferenceProfile, cached_profile

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config


TABULAR = (".csv", ".parquet", ".pq", ".tsv")


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV/TSV/Parquet file, or a folder of them (concatenated), as a DataFrame."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in TABULAR)
        if not files:
            raise MonitoringError(f"No CSV or Parquet file in {path}")
        return pd.concat([read_table(p) for p in files], ignore_index=True)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except FileNotFoundError:
        raise MonitoringError(f"No file {path}") from None
    except Exception as exc:
        raise MonitoringError(f"Cannot read {path}: {exc}") from exc
    raise MonitoringError(f"{path} is not a CSV or Parquet file (or a folder of them)")


@dataclass
class TrainingData:
    """The training data of a model version: its DVC snapshot and where it is restored."""

    path: Path
    run_id: str
    snapshot_path: str
    md5: str
    config: Config = field(repr=False)

    def restore(self) -> Path:
        """Put the snapshot's bytes at ``path`` (a no-op when they are already there)."""
        from jupyter_mlops.tracking.lineage import restore_data

        try:
            restore_data(self.run_id, self.snapshot_path, self.path, overwrite=True,
                         config=self.config)  # fmt: skip
        except MlopsError as exc:
            raise MonitoringError(
                f"Cannot restore the training data {self.snapshot_path} (run {self.run_id}): {exc}"
            ) from exc
        return self.path


def training_data(
    run_id: str,
    *,
    inputs: Sequence[str] = (),
    model: str | None = None,
    restore: bool = True,
    config: Config | None = None,
) -> TrainingData:
    """The tabular data run ``run_id`` trained on, restored into the monitoring cache.

    Of several recorded snapshots, the CSV/Parquet one sharing most columns with
    ``inputs`` is taken (restoring each to look). With one snapshot and ``restore=False``
    nothing is read: callers that find its profile cached under the md5 need no rows.
    """
    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking.lineage import run_data

    config = config or load_config()
    what = model or f"run {run_id}"
    snaps = run_data(run_id, config)
    if not snaps:
        raise MonitoringError(
            f"{what} has no recorded training data (run {run_id} was not tracked with "
            "%%track --data PATH), so there is no reference to compare with: pass one "
            "(--reference data.csv or a DataFrame)."
        )
    candidates = [s for s in snaps if s.is_dir or Path(s.path).suffix.lower() in TABULAR]
    if not candidates:
        names = ", ".join(s.path for s in snaps)
        raise MonitoringError(
            f"The training data of {what} ({names}) is not CSV or Parquet: pass a reference."
        )
    root = config.mlops_dir / "monitoring" / "reference"
    found = [
        TrainingData(
            root / s.md5.removesuffix(".dir") / Path(s.path).name, run_id, s.path, s.md5, config
        )
        for s in candidates
    ]
    if len(found) == 1:
        if restore:
            found[0].restore()
        return found[0]
    return max(found, key=lambda t: len(set(_columns_of(t.restore())) & set(inputs)))


def _columns_of(path: Path) -> list[str]:
    try:
        return [str(c) for c in read_table(path).columns]
    except MonitoringError:
        return []


@dataclass
class Reference:
    """A deployment's drift reference: its profile, how to read its rows (None for a
    profile given as such), its cache key and folder, and what it is (for the report)."""

    profile: ReferenceProfile
    rows: Callable[[], pd.DataFrame] | None
    key: str | None
    info: dict[str, Any]
    cache_dir: Path


def deployment_reference(
    reference: pd.DataFrame | ReferenceProfile | str | os.PathLike[str] | None,
    ref_model: Any,
    inputs: Sequence[str],
    *,
    bins: int,
    config: Config,
) -> Reference:
    """The reference to compare ``ref_model``'s inputs with: ``reference`` if given, else
    its training data (restored only when its profile is not cached)."""
    cache_dir = config.mlops_dir / "monitoring" / "cache"
    info: dict[str, Any] = {}
    if isinstance(reference, ReferenceProfile):
        info["description"] = "a reference profile"
        return Reference(reference, None, None, info, cache_dir)
    if reference is None:
        run_id = ref_model.run_id or training_run(ref_model, config)
        data = training_data(
            run_id, inputs=inputs, model=ref_model.label, restore=False, config=config
        )
        path, key = data.path, data.md5
        info.update(
            path=data.snapshot_path, md5=data.md5, run_id=run_id,
            description=f"training data of {ref_model.label}: {data.snapshot_path} "
            f"(DVC md5 {data.md5[:10]}, run {run_id[:12]})",
        )  # fmt: skip

        def rows() -> pd.DataFrame:
            data.restore()  # only when the rows are needed: not when cached
            return read_table(path)

    elif isinstance(reference, str | os.PathLike):
        path = Path(reference)
        if not path.exists():
            raise MonitoringError(f"No reference file {path}")
        stat = path.stat()
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        key = f"file-{digest}-{stat.st_size}-{stat.st_mtime_ns}"
        info.update(path=str(path), description=str(path))

        def rows() -> pd.DataFrame:
            return read_table(path)

    else:
        table = as_frame(reference, "reference")
        info["description"] = f"a DataFrame of {len(table):,} rows"
        prof = ReferenceProfile.from_frame(table, bins=bins)
        return Reference(prof, lambda: table, None, info, cache_dir)
    prof = cached_profile(key, bins, cache_dir, rows, None)
    return Reference(prof, rows, key, info, cache_dir)


def training_run(ref_model: Any, config: Config) -> str:
    """The run that produced a served model version (its training data is recorded there)."""
    from jupyter_mlops.registry import get_version

    if ref_model.name and ref_model.version:
        version = get_version(f"{ref_model.name}/{ref_model.version}", config)
        if version.run_id:
            return str(version.run_id)
    raise MonitoringError(
        f"{ref_model.label} has no run behind it (deployed from a path?), so its training "
        "data is unknown: pass a reference."
    )
