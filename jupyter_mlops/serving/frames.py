"""Validated column lists -> the DataFrame a model predicts on.

The dtypes are the ones MLflow's scoring server gives the same JSON (``dataframe_from_parsed_json``
then ``cast_df_types_according_to_schema``), so a model answers here as it does behind
``mlflow models serve`` and in ``mlflow.pyfunc``.
"""

from __future__ import annotations

import math
from typing import Any

from jupyter_mlops.serving.errors import InputError
from jupyter_mlops.serving.validation import InputSpec

__all__ = ["as_tensor_dtype", "to_frame"]

_NUMPY_DTYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
}


def to_frame(data: dict[str, list[Any]], spec: InputSpec) -> Any:
    """One DataFrame from column lists, with the dtypes MLflow's scoring server would give.

    Doubles and floats take NaN for null; strings are inferred by pandas (as MLflow builds its
    frame), booleans with a null stay objects, as ``mlflow.pyfunc`` passes them on. Absent
    optional columns stay absent.
    """
    import numpy as np
    import pandas as pd

    if spec.columns is None:
        frame = pd.DataFrame(data)
        return frame if spec.tensor_dtype is None else as_tensor_dtype(frame, spec)
    columns: dict[str, Any] = {}
    for column in spec.columns:
        if column.name not in data:
            continue
        values = data[column.name]
        dtype = _NUMPY_DTYPES.get(column.type)
        if dtype is not None and None not in values:
            columns[column.name] = np.asarray(values, dtype=dtype)
        elif column.type in ("double", "float"):
            columns[column.name] = np.asarray(
                [math.nan if v is None else v for v in values], dtype=dtype
            )
        elif column.type == "datetime":
            columns[column.name] = pd.to_datetime(values)
        elif column.type == "string":
            columns[column.name] = pd.Series(values)
        else:
            columns[column.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns, copy=False)


def as_tensor_dtype(values: Any, spec: InputSpec) -> Any:
    """A DataFrame (columns in the request's order) or JSON lists as the model's tensor dtype."""
    import numpy as np

    try:
        return (
            values.astype(spec.tensor_dtype)
            if hasattr(values, "astype")
            else np.asarray(values, dtype=spec.tensor_dtype)
        )
    except (TypeError, ValueError) as exc:  # "schema": answered 422, like MLflow's own check
        raise InputError(f"Not {spec.tensor_dtype} numbers (tensor schema): {exc}") from exc
