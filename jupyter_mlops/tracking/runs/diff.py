"""What differs between runs: params, data snapshots, metrics and the cell source that
``%%track`` stored with each run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.tracking.run import TAG_DATA
from jupyter_mlops.tracking.runs.table import metric_columns, param_columns

if TYPE_CHECKING:
    import pandas as pd


def run_source(artifact_uri: str | None, run_id: str, config: Config | None = None) -> str | None:
    """The cell source ``%%track`` stored with a run (``mlops/cell.py``), if any.

    Local artifact folders are read directly (no MLflow import); other stores through
    MLflow's artifact API.
    """
    if artifact_uri and artifact_uri.startswith("file:"):
        path = Path(url2pathname(urlparse(artifact_uri).path)) / "mlops" / "cell.py"
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            return None
    if artifact_uri and artifact_uri.startswith("/"):
        path = Path(artifact_uri) / "mlops" / "cell.py"
        return path.read_text(encoding="utf-8") if path.is_file() else None
    try:
        import mlflow

        config = config or load_config()
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="mlops/cell.py", tracking_uri=config.tracking_uri
        )
        return Path(local).read_text(encoding="utf-8")
    except Exception:  # runs not made by %%track, or an unreachable artifact store
        return None


@dataclass
class RunDiff:
    """What differs between runs: params, data snapshots, metrics and the cell source."""

    run_ids: list[str]
    names: list[str]
    params: dict[str, list[str | None]]  # only params whose values differ
    same_params: dict[str, str | None]
    metrics: dict[str, list[float | None]]
    data: dict[str, list[str | None]]  # path or dataset -> hash per run, when they differ
    sources: list[str | None]

    def source_diff(self, first: int = 0, second: int = 1) -> list[str]:
        """A unified diff of two runs' cell sources (empty when equal or unknown)."""
        import difflib

        a, b = self.sources[first], self.sources[second]
        if a is None or b is None or a == b:
            return []
        return list(
            difflib.unified_diff(
                a.splitlines(),
                b.splitlines(),
                self.names[first],
                self.names[second],
                lineterm="",
            )
        )


def _data_items(dvc_tag: Any, summary: Any) -> dict[str, str]:
    items: dict[str, str] = {}
    if isinstance(dvc_tag, str) and dvc_tag:
        try:
            for snap in json.loads(dvc_tag):
                items[str(snap["path"])] = str(snap["md5"])
        except (ValueError, TypeError, KeyError):
            pass
    if isinstance(summary, str):
        for part in summary.split():
            name, sep, digest = part.partition("#")
            if sep:
                items[f"dataset {name}"] = digest
    return items


def diff_runs(
    frame: pd.DataFrame,
    run_ids: Sequence[str],
    *,
    with_source: bool = True,
    config: Config | None = None,
) -> RunDiff:
    """Compare the runs ``run_ids`` of a ``runs()`` frame side by side."""
    import pandas as pd

    rows = frame.set_index("run_id", drop=False).loc[list(run_ids)]
    names = [str(n or r[:8]) for n, r in zip(rows["run_name"], rows["run_id"], strict=True)]

    def values(column: str) -> list[Any]:
        return [None if pd.isna(v) else v for v in rows[column]]

    params, same = {}, {}
    for column in param_columns(frame):
        vals = values(column)
        if all(v is None for v in vals):
            continue
        key = column.removeprefix("params.")
        if len(set(vals)) > 1:
            params[key] = vals
        else:
            same[key] = vals[0]
    metrics = {
        c.removeprefix("metrics."): values(c)
        for c in metric_columns(frame)
        if any(v is not None for v in values(c))
    }
    dvc = values(f"tags.{TAG_DATA}") if f"tags.{TAG_DATA}" in rows else [None] * len(rows)
    per_run = [_data_items(t, s) for t, s in zip(dvc, values("data"), strict=True)]
    data: dict[str, list[str | None]] = {}
    for key in sorted(set().union(*per_run)) if per_run else []:
        hashes = [items.get(key) for items in per_run]
        if len(set(hashes)) > 1:
            data[key] = hashes
    sources: list[str | None] = [None] * len(rows)
    if with_source:
        sources = [
            run_source(uri, rid, config)
            for uri, rid in zip(rows["artifact_uri"], rows["run_id"], strict=True)
        ]
    return RunDiff(list(rows["run_id"]), names, params, same, metrics, data, sources)
