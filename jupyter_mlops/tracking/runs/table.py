"""Runs as a table: ``runs()`` returns a pandas DataFrame of tracked runs, filtered with
the ``--where`` language, for the comparison widgets, the sidebar and one's own analysis.

The frame has MLflow's ``search_runs`` columns (``run_id``, ``experiment_id``, ``status``,
``artifact_uri``, ``start_time``, ``end_time``, ``metrics.*``, ``params.*``, ``tags.*``)
plus ``run_name``, ``experiment``, ``user``, ``duration`` (seconds) and ``data`` (short
hashes of the data the run read: DVC snapshots and fingerprinted training sets). The rows
come from a store reader (see ``readers``) and are pivoted here with numpy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.urls import redact
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError, QueryError
from jupyter_mlops.tracking.run import TAG_DATA, TAG_MODELS
from jupyter_mlops.tracking.runs.client_reader import ClientReader
from jupyter_mlops.tracking.runs.readers import Reader, RunReader, open_reader
from jupyter_mlops.tracking.runs.refs import resolve_run_ref
from jupyter_mlops.tracking.runs.rows import INFO_COLUMNS, RunRows
from jupyter_mlops.tracking.runs.values import numbers_of
from jupyter_mlops.tracking.runs.where import Where

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Metrics where smaller is better, guessed from their names (the registry's comparisons and
# the tables' "best first" orders share this guess).
LOWER_IS_BETTER = re.compile(r"(loss|error|rmse|mse|mae|mape|logloss)", re.IGNORECASE)


def _pivot(
    numbers: np.ndarray, rows: list[Any], *, numeric: bool, prefix: str
) -> dict[str, np.ndarray]:
    """(run number, key, value) rows to one array per key, aligned with ``numbers``
    (ascending). One object array and vectorised indexing: no Python loop per row."""
    import numpy as np
    import pandas as pd

    if not rows:
        return {}
    table = np.array(rows, dtype=object)
    where = np.searchsorted(numbers, table[:, 0].astype(np.int64))
    codes, keys = pd.factorize(table[:, 1], sort=True)
    if numeric:
        grid = np.full((len(numbers), len(keys)), np.nan)
        values = table[:, 2]
        grid[where, codes] = np.where(pd.isna(values), np.nan, values).astype(float)
    else:
        grid = np.full((len(numbers), len(keys)), None, dtype=object)
        grid[where, codes] = table[:, 2]
    return {f"{prefix}{k}": grid[:, i] for i, k in enumerate(keys)}


def data_summary(dvc_tag: Any, datasets: Sequence[tuple[str, Any]]) -> str | None:
    """A short text naming the data a run read: DVC md5s and training-set hashes."""
    parts = []
    if isinstance(dvc_tag, str) and dvc_tag:
        try:
            for snap in json.loads(dvc_tag):
                parts.append(f"{snap['path']}@{str(snap['md5'])[:8]}")
        except (ValueError, TypeError, KeyError):
            parts.append("?")
    for name, digest in datasets:
        if digest:
            parts.append(f"{name}#{str(digest)[:8]}")
    return " ".join(parts) or None


def _data_column(
    numbers: np.ndarray, dvc_tags: Any, datasets: dict[int, list[tuple[str, Any]]]
) -> np.ndarray:
    import numpy as np

    seen: dict[tuple[Any, ...], str | None] = {}  # sweeps share their data: parse once
    out = np.empty(len(numbers), dtype=object)
    for i, (number, tag) in enumerate(zip(numbers.tolist(), dvc_tags, strict=True)):
        used = tuple(datasets.get(number, ()))
        key = (tag, used)
        if key not in seen:
            seen[key] = data_summary(tag, used)
        out[i] = seen[key]
    return out


def _assemble(long: RunRows) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    info = list(zip(*long.info, strict=True)) if long.info else [() for _ in range(9)]
    numbers = np.asarray(info[0], dtype=np.int64)
    columns: dict[str, Any] = dict(zip(INFO_COLUMNS, info[1:], strict=True))
    start = pd.to_datetime(pd.Series(columns["start_time"], dtype="float64"), unit="ms", utc=True)
    end = pd.to_datetime(pd.Series(columns["end_time"], dtype="float64"), unit="ms", utc=True)
    tags = _pivot(numbers, long.tags, numeric=False, prefix="tags.")
    names = np.asarray(columns["run_name"], dtype=object)
    tag_names = tags.get("tags.mlflow.runName")
    if tag_names is not None:  # as MLflow does: the tag names a run without a name
        names = np.where(pd.isna(names) | (names == ""), tag_names, names)
    datasets: dict[int, list[tuple[str, Any]]] = {}
    for number, name, digest in long.datasets:
        datasets.setdefault(number, []).append((name, digest))
    dvc_tags = tags.get(f"tags.{TAG_DATA}", [None] * len(numbers))
    frame_columns: dict[str, Any] = {
        "run_id": np.asarray(columns["run_id"], dtype=object),
        "run_name": names,
        "experiment": np.asarray(
            [long.experiments.get(e, e) for e in columns["experiment_id"]], dtype=object
        ),
        "experiment_id": np.asarray(columns["experiment_id"], dtype=object),
        "status": np.asarray(columns["status"], dtype=object),
        "start_time": start,
        "end_time": end,
        "duration": ((end - start) / pd.Timedelta(seconds=1)).to_numpy(dtype=float),
        "user": np.asarray(columns["user"], dtype=object),
        "artifact_uri": np.asarray(columns["artifact_uri"], dtype=object),
        "data": _data_column(numbers, dvc_tags, datasets),
    }
    frame_columns.update(_pivot(numbers, long.metrics, numeric=True, prefix="metrics."))
    frame_columns.update(_pivot(numbers, long.params, numeric=False, prefix="params."))
    frame_columns.update(tags)
    return pd.DataFrame(frame_columns, copy=False)


def _resolve_experiments(
    reader: RunReader,
    experiment: str | Sequence[str] | None,
    notebook: str | None,
    config: Config,
) -> list[str] | None:
    """Experiment ids to read (None when the experiment has no runs yet)."""
    known = reader.experiments()
    if experiment is None and config.experiment:
        experiment = str(config.experiment)
    if experiment is None:
        if notebook:
            found = reader.notebook_experiment(notebook)
            if found is not None:
                return [found]
            stem = Path(notebook).stem  # where the notebook's first run will go
            return [i for i, n, _ in known if n == stem] or None
        return [i for i, _, stage in known if stage == "active"] or None
    wanted = [experiment] if isinstance(experiment, str) else list(experiment)
    ids = []
    for name in wanted:
        match = [(i, stage) for i, n, stage in known if n == name or i == name]
        if not match:
            names = ", ".join(sorted(n for _, n, s in known if s == "active")) or "none"
            raise NotFoundError(f"No experiment {name!r} (experiments: {names})")
        exp_id, stage = match[0]
        if stage != "active":
            raise NotFoundError(f"Experiment {name!r} is deleted")
        ids.append(exp_id)
    return ids


def _pick(frame: pd.DataFrame, refs: Sequence[str]) -> pd.DataFrame:
    """Keep the runs the references name, in their order; errors for none or several."""
    ids = frame["run_id"].tolist()
    names = frame["run_name"].tolist()
    rows: list[int] = []
    for ref in refs:
        row = resolve_run_ref(
            ref, ids, names, hint=" (give a run id, a prefix of one, or a run name)"
        )
        if row not in rows:
            rows.append(row)
    return frame.iloc[rows]


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better, guessed from its name."""
    return bool(LOWER_IS_BETTER.search(metric))


def sort_runs(frame: pd.DataFrame, column: str, *, ascending: bool = True) -> pd.DataFrame:
    """``frame`` ordered by ``column``, numerically when its values read as numbers.

    Params are text in MLflow; sorting "100" after "20" would mislead. Missing values go last.
    """
    import pandas as pd

    if column not in frame.columns:
        raise QueryError(f"No column {column!r} to sort by")
    series = frame[column]
    key = series
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        numbers = numbers_of(series)
        if (numbers == numbers).sum() == series.notna().sum():
            key = pd.Series(numbers, index=series.index)
        else:
            key = (
                series.astype(object)
                .where(series.notna(), None)
                .map(lambda v: None if v is None else str(v))
            )
    order = key.sort_values(ascending=ascending, na_position="last", kind="stable").index
    return frame.loc[order]


def runs(
    experiment: str | Sequence[str] | None = None,
    *,
    run_ids: Sequence[str] = (),
    where: str | Where | None = None,
    metric: str | None = None,
    top: int | None = None,
    ascending: bool | None = None,
    notebook: str | None = None,
    reader: Reader = "auto",
    config: Config | None = None,
) -> pd.DataFrame:
    """The tracked runs as a DataFrame, one row per run, for comparison and analysis.

    ``experiment``: a name (or names, or ids); by default the current notebook's
    experiment, else every experiment. ``run_ids``: runs to pick (ids, unambiguous id
    prefixes or run names; any experiment unless one is given). ``where``: a filter such
    as ``"params.n_estimators >= 100 and metrics.accuracy > 0.9"`` (see :class:`Where`).
    ``metric``/``top``: order by that metric, best first (smaller is better for
    loss/error-like names unless ``ascending`` says otherwise), and keep the first ``top``.
    Without ``metric`` the newest runs come first. ``reader``: ``auto`` reads the embedded
    SQLite store directly and anything else through MLflow's client (see the module doc).
    """
    import pandas as pd

    config = config or load_config()
    condition = Where(where) if isinstance(where, str) else where
    if top is not None and top < 1:
        raise QueryError(f"--top must be at least 1, got {top}")
    refs = [str(r).strip() for r in run_ids if str(r).strip()]
    if notebook is None and experiment is None and not refs:
        from jupyter_mlops.tracking.environment import notebook_path

        notebook = notebook_path(None, config.root)
    source = open_reader(config, reader)
    if source is None:
        if experiment is not None:
            raise NotFoundError(
                f"No experiment {experiment!r}: {redact(config.tracking_uri)} is empty"
            )
        frame = _assemble(RunRows())
    else:
        try:
            ids: list[str] | None = []  # every experiment, for runs named by id
            if experiment is not None or not refs:
                ids = _resolve_experiments(source, experiment, notebook, config)
            if ids is None:
                long = RunRows()
            elif isinstance(source, ClientReader):
                pushed = condition.mlflow_filter() if condition else ""
                long = source.read(ids, refs, pushed)
            else:
                long = source.read(ids, refs)
        finally:
            source.close()
        frame = _assemble(long)
    if refs:
        frame = _pick(frame, refs)
    if condition is not None and len(frame):
        frame = condition.apply(frame)
    if metric:
        column = metric if metric.startswith("metrics.") else f"metrics.{metric}"
        if column not in frame.columns and len(frame):
            have = ", ".join(c.removeprefix("metrics.") for c in metric_columns(frame)) or "none"
            raise QueryError(f"No run has metric {metric!r} (metrics: {have})")
        if column in frame.columns:
            up = lower_is_better(column) if ascending is None else ascending
            frame = sort_runs(frame, column, ascending=up)
    elif not refs:
        frame = frame.sort_values(["start_time", "run_id"], ascending=[False, True], kind="stable")
    if top is not None:
        frame = frame.head(top)
    return pd.DataFrame(frame).reset_index(drop=True)


# -- helpers over a runs frame ----------------------------------------------------------
def param_columns(frame: pd.DataFrame) -> list[str]:
    """The ``params.*`` columns of a runs frame."""
    return [c for c in frame.columns if c.startswith("params.")]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The ``metrics.*`` columns of a runs frame."""
    return [c for c in frame.columns if c.startswith("metrics.")]


def varying(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The columns whose values differ between runs (a missing value counts as a value)."""
    out = []
    for c in columns:
        series = frame[c]
        if series.nunique(dropna=True) + int(series.isna().any() and series.notna().any()) > 1:
            out.append(c)
    return out


def model_names(frame: pd.DataFrame) -> list[str | None]:
    """Per run, the names of the models it logged (from the ``mlops.models`` tag)."""
    column = f"tags.{TAG_MODELS}"
    if column not in frame.columns:
        return [None] * len(frame)
    out: list[str | None] = []
    for raw in frame[column]:
        try:
            out.append(", ".join(json.loads(raw)) if isinstance(raw, str) and raw else None)
        except ValueError:
            out.append(None)
    return out


def metric_history(
    run_ids: Sequence[str],
    keys: Sequence[str] | None = None,
    *,
    reader: Reader = "auto",
    config: Config | None = None,
) -> pd.DataFrame:
    """Every logged value of the runs' metrics: columns run_id, key, step, timestamp, value."""
    import pandas as pd

    config = config or load_config()
    columns = ["run_id", "key", "step", "timestamp", "value"]
    if not run_ids:
        return pd.DataFrame(columns=columns)
    source = open_reader(config, reader)
    if source is None:
        return pd.DataFrame(columns=columns)
    try:
        rows = source.history(list(run_ids), list(keys) if keys else None)
    finally:
        source.close()
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["run_id", "key", "step", "timestamp"], kind="stable").reset_index(
        drop=True
    )


def stepped_metrics(history: pd.DataFrame) -> list[str]:
    """Metrics logged at more than one step by some run (worth a line chart)."""
    if history.empty:
        return []
    steps = history.groupby(["run_id", "key"])["step"].nunique()
    return sorted({str(key) for key in steps[steps > 1].index.get_level_values("key")})
