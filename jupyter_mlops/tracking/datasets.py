"""In-memory training data recorded with a run: a content fingerprint and MLflow's dataset.

A model fitted on a DataFrame or array keeps a link to exactly that data: its sha256 over
the full content (index, values and schema), its shape and column types, and an MLflow
dataset input tagged ``training`` with that hash.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_mlops.client import quiet_mlflow

if TYPE_CHECKING:
    from mlflow.data.pandas_dataset import PandasDataset
    from mlflow.entities import DatasetInput

CONTENT_HASH_TAG = "mlops.content_hash"


@dataclass
class DatasetRecord:
    """A fingerprint of an in-memory object a model was fitted on."""

    name: str
    digest: str
    content_hash: str
    shape: tuple[int, ...]
    schema: dict[str, str]


def fingerprint_data(obj: Any) -> tuple[str, tuple[int, ...], dict[str, str]] | None:
    """(sha256 of the full content, shape, column -> dtype) of a DataFrame/Series/array."""
    if "pandas" in sys.modules:
        import pandas as pd

        if isinstance(obj, pd.DataFrame | pd.Series):
            hashed = pd.util.hash_pandas_object(obj, index=True).to_numpy()
            digest = hashlib.sha256(hashed.tobytes())
            if isinstance(obj, pd.DataFrame):
                schema = {str(c): str(t) for c, t in obj.dtypes.items()}
                digest.update(json.dumps(schema).encode())
            else:
                schema = {str(obj.name): str(obj.dtype)}
            return digest.hexdigest(), tuple(obj.shape), schema
    if "numpy" in sys.modules:
        import numpy as np

        if isinstance(obj, np.ndarray) and obj.dtype != object:
            data = np.ascontiguousarray(obj)
            digest = hashlib.sha256(data.tobytes())
            digest.update(f"{data.dtype}{data.shape}".encode())
            return digest.hexdigest(), tuple(obj.shape), {"array": str(obj.dtype)}
    return None


def _values(obj: Any) -> Any:
    return obj.to_numpy() if hasattr(obj, "to_numpy") else obj


def _as_frame(obj: Any) -> Any:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return obj
    if isinstance(obj, pd.Series):
        return obj.to_frame()
    import numpy as np

    arr = np.asarray(obj)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


def training_dataset(obj: Any, name: str, *, targets: Any = None) -> PandasDataset:
    """MLflow's dataset of ``obj`` (and of the ``targets`` column, when it has a name)."""
    from mlflow.data.pandas_dataset import from_pandas

    with warnings.catch_warnings(), quiet_mlflow():
        warnings.simplefilter("ignore")
        frame = _as_frame(obj)
        target_name = getattr(targets, "name", None)
        if target_name is not None and target_name not in frame.columns:
            frame = frame.assign(**{str(target_name): _values(targets)})
        dataset: PandasDataset = from_pandas(
            frame, name=name, targets=str(target_name) if target_name else None
        )
    return dataset


def training_input(dataset: PandasDataset, content_hash: str) -> DatasetInput:
    """The run input that links ``dataset`` to the run as its training data."""
    from mlflow.entities import DatasetInput, InputTag

    tags = [
        InputTag("mlflow.data.context", "training"),
        InputTag(CONTENT_HASH_TAG, content_hash),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's integer-column schema hint
        return DatasetInput(dataset._to_mlflow_entity(), tags)
