"""Batch scoring: predict a CSV or Parquet file with lineage columns beside each prediction.

The output keeps the input columns, adds the predictions, and tags every row with what made
it: model name, version and run id, model URI, the input file and its MD5, and when it was
scored. Files are read and written in chunks, so their size is bounded by disk, not memory;
the output appears atomically (written to a temporary file, then renamed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.errors import InputError, ServingError
from jupyter_mlops.serving.targets import (
    load_pyfunc,
    requirement_mismatches,
    resolve_target,
)

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

LINEAGE_COLUMNS = (
    "model_name",
    "model_version",
    "run_id",
    "model_uri",
    "input_file",
    "input_md5",
    "scored_at",
)
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class BatchResult:
    """What a batch scoring job wrote."""

    output_path: Path
    rows: int
    model: ModelRef
    input_path: Path
    input_md5: str
    seconds: float

    def __str__(self) -> str:
        return (
            f"Scored {self.rows} rows of {self.input_path} (md5 {self.input_md5}) with "
            f"{self.model.label} in {self.seconds:.2f} s -> {self.output_path}"
        )

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(str(self))}</p>"


def _format(path: Path, what: str) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ServingError(f"{what} {path} must end in .csv or .parquet.")
    return fmt


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file, read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _chunks(path: Path, fmt: str, rows: int) -> Iterator[pd.DataFrame]:
    import pandas as pd

    if fmt == "csv":
        yield from pd.read_csv(path, chunksize=rows)
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield batch.to_pandas()


def _prediction_columns(raw: Any, n: int) -> dict[str, Any]:
    """Predictions as output columns: ``prediction`` or ``prediction_<name>``."""
    import numpy as np

    if hasattr(raw, "columns"):  # DataFrame
        return {f"prediction_{c}": raw[c].to_numpy() for c in raw.columns}
    if isinstance(raw, dict):
        return {f"prediction_{k}": np.asarray(v) for k, v in raw.items()}
    values = np.asarray(raw)
    if values.ndim == 2:
        return {f"prediction_{i}": values[:, i] for i in range(values.shape[1])}
    if values.ndim != 1 or len(values) != n:
        raise ServingError(f"The model answered shape {values.shape} for {n} rows.")
    return {"prediction": values}


def _integer_columns(schema: Any) -> list[tuple[str, str]]:
    """The (name, type) of the signature's integer columns: MLflow refuses nulls in them."""
    out = []
    for spec in schema.inputs:
        kind = getattr(spec.type, "name", None)
        if kind in ("long", "integer"):
            out.append((str(spec.name), str(kind)))
    return out


def _refuse_missing_integers(
    features: pd.DataFrame, integers: list[tuple[str, str]], source: Path, offset: int
) -> None:
    """The error the server answers (422) for a missing integer, naming column and row."""
    for name, kind in integers:
        if name in features.columns:
            missing = features[name].isna().to_numpy().nonzero()[0]
            if len(missing):
                raise InputError(
                    f"Input file {source}: column {name!r} is an integer column ({kind}) and "
                    f"row {offset + int(missing[0])} is empty: MLflow signatures allow no "
                    "missing integers. Fill it, or log the model from data where this column "
                    "has missing values (it becomes double).",
                    code="MISSING_VALUE",
                    column=name,
                )


def _predict(model: Any, features: pd.DataFrame, wanted: list[str] | None) -> Any:
    """``model.predict``; when optional columns are absent (MLflow then leaves them out)
    and the model fails, an error naming them, as the server answers."""
    absent = [c for c in wanted or [] if c not in features.columns]
    if not absent:
        return model.predict(features)
    try:
        return model.predict(features)
    except Exception as exc:
        text = str(getattr(exc, "message", None) or exc).strip().splitlines()
        raise InputError(
            f"The model failed on this input: {text[0] if text else type(exc).__name__} "
            f"(optional column(s) {absent} are absent from the file; the model may need "
            "them: add them, empty where unknown)",
            column=absent[0],
        ) from exc


def batch_predict(
    target: str,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    chunk_rows: int = 100_000,
    config: Config | None = None,
) -> BatchResult:
    """Score ``input_path`` (CSV/Parquet) with ``target``; write ``output_path`` (CSV/Parquet).

    Columns the model does not take (ids, labels) are passed through untouched; a column the
    model needs but the file lacks is an error naming it.
    """
    import pandas as pd

    started = time.perf_counter()
    source, dest = Path(input_path).resolve(), Path(output_path).resolve()
    in_fmt, out_fmt = _format(source, "Input"), _format(dest, "Output")
    if not source.is_file():
        raise ServingError(f"Input file {source} does not exist.")
    ref = resolve_target(target, config)
    model = load_pyfunc(ref)
    for problem in requirement_mismatches(ref.source):
        warnings.warn(f"{ref.label}: {problem}", stacklevel=2)
    schema = model.metadata.get_input_schema()
    wanted = schema.input_names() if schema is not None and schema.has_input_names() else None
    required = set(schema.required_input_names()) if wanted else set()
    integers = _integer_columns(schema) if wanted else []
    md5 = file_md5(source)
    lineage: dict[str, Any] = {
        "model_name": ref.name,
        "model_version": ref.version,
        "run_id": ref.run_id,
        "model_uri": ref.uri,
        "input_file": str(source),
        "input_md5": md5,
        "scored_at": pd.Timestamp(dt.datetime.now(dt.UTC)),
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    rows, writer = 0, None
    try:
        for chunk in _chunks(source, in_fmt, chunk_rows):
            if wanted is not None:
                missing = [c for c in wanted if c in required and c not in chunk.columns]
                if missing:
                    raise InputError(
                        f"Input file {source} lacks column {missing[0]!r} the model needs "
                        f"(model columns: {wanted}).",
                        column=missing[0],
                    )
                features = chunk[[c for c in wanted if c in chunk.columns]]
                _refuse_missing_integers(features, integers, source, rows)
            else:
                features = chunk
            predictions = _prediction_columns(_predict(model, features, wanted), len(chunk))
            clash = [c for c in (*predictions, *LINEAGE_COLUMNS) if c in chunk.columns]
            if clash:
                raise ServingError(
                    f"Input file {source} already has a column named {clash[0]!r}; "
                    "rename it before scoring."
                )
            out = chunk.assign(**predictions, **{k: [v] * len(chunk) for k, v in lineage.items()})
            writer = _write(out, tmp, out_fmt, writer)
            rows += len(chunk)
        if writer is None:  # empty input: still write the header
            empty = pd.DataFrame(columns=[*(wanted or []), "prediction", *LINEAGE_COLUMNS])
            writer = _write(empty, tmp, out_fmt, None)
        if out_fmt == "parquet":
            writer.close()
        tmp.replace(dest)
    finally:
        if out_fmt == "parquet" and writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return BatchResult(dest, rows, ref, source, md5, time.perf_counter() - started)


def _write(frame: pd.DataFrame, path: Path, fmt: str, writer: Any) -> Any:
    """Append ``frame``; returns the writer state to pass on (True for CSV, a ParquetWriter)."""
    if fmt == "csv":
        frame.to_csv(path, mode="a" if writer else "w", header=not writer, index=False)
        return True
    import pyarrow as pa
    import pyarrow.parquet as pq

    if writer is None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = pq.ParquetWriter(path, table.schema)
    else:
        table = pa.Table.from_pandas(frame, schema=writer.schema, preserve_index=False)
    writer.write_table(table)
    return writer
