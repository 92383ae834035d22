"""A loaded model as a server worker runs it: the pyfunc, its input spec, its micro-batcher,
and the prediction-log records of every batch it answers.

A batch is predicted in one call when the model answers one row per input row; otherwise (or
when one request breaks the batch) its requests are predicted one by one, so a bad request
fails alone. The records are journaled before the answers are released: no answer without a
durable log entry.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from typing import Any

from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.predlog import LogWriter
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.batching import Batcher, Pending
from jupyter_mlops.serving.errors import PredictionError, log_failed
from jupyter_mlops.serving.frames import as_tensor_dtype, to_frame
from jupyter_mlops.serving.metrics import Metrics
from jupyter_mlops.serving.proba import proba_of, proba_rows
from jupyter_mlops.serving.scoring import EnforcedInput, fast_eligible
from jupyter_mlops.serving.targets import load_pyfunc, requirement_mismatches
from jupyter_mlops.serving.validation import (
    InputSpec,
    RawInput,
    TableInput,
    records_input,
)

__all__ = ["LoadedModel", "load_model"]

_log = safe_logger("jupyter_mlops.serving")


def _rows_of(raw: Any) -> list[Any] | None:
    """Predictions as one JSON-able item per input row, or None when not row-shaped."""
    if hasattr(raw, "to_dict") and hasattr(raw, "columns"):  # DataFrame: records, like MLflow
        return raw.to_dict(orient="records")  # type: ignore[no-any-return]
    if hasattr(raw, "tolist"):  # ndarray, Series
        rows = raw.tolist()
        return rows if isinstance(rows, list) else None
    if isinstance(raw, list | tuple):
        return list(raw)
    return None


class LoadedModel:
    """A pyfunc model with its input spec, batcher and prediction-log hook."""

    def __init__(
        self,
        ref: ModelRef,
        model: Any,
        *,
        deployment: str,
        executor: ThreadPoolExecutor,
        log: LogWriter | None,
        metrics: Metrics,
        batching: dict[str, Any],
    ) -> None:
        self.ref = ref
        self.model = model
        self.deployment = deployment
        self.spec = InputSpec.from_model(model)
        self.proba = proba_of(model)  # predict_proba and class order, None for labels only
        # the label as the most probable class, when that is provably what predict answers
        self.label_of = label_from_proba(model)
        self._proba_failed = False
        self.fast = fast_eligible(model, self.spec)  # /invocations may skip MLflow's parsing
        self.log = log
        self.metrics = metrics
        self.labels = (ref.name or "", ref.version or "")
        self.info = {"name": ref.name, "version": ref.version, "run_id": ref.run_id}
        self.batcher = Batcher(
            self.run_batch,
            executor,
            enabled=bool(batching.get("enabled", True)),
            max_wait_s=float(batching.get("max_wait_ms", 2.0)) / 1000.0,
            max_rows=int(batching.get("max_batch_rows", 256)),
        )

    def _one_by_one(self, batch: Sequence[Pending]) -> tuple[list[Any], Future[None] | None]:
        outcomes: list[Any] = []
        pending: list[Future[None]] = []
        for p in batch:
            outcome, durable = self.run_batch([p])
            outcomes.extend(outcome)
            if durable is not None:
                pending.append(durable)
        return outcomes, _all_done(pending) if pending else None

    def _predict(
        self, data: Any, params: dict[str, Any] | None, output: str = "label", *, enforced: bool
    ) -> tuple[Any, list[dict[str, float]] | None]:
        """The model's answer for ``data`` and, for a model with ``predict_proba``, one
        ``{class: probability}`` per row for the log (None otherwise).

        A label request costs a second call (``predict_proba`` beside ``predict``), unless the
        label provably is the most probable class (:func:`label_from_proba`): then one
        ``predict_proba`` call gives both."""
        if self.proba is None:
            return self._labels(data, params, enforced=enforced), None
        if output == "proba":
            rows = proba_rows(self.proba.fn(data), self.proba.classes)
            return rows, rows
        if self.label_of is not None and not params:
            matrix = self.proba.fn(data)
            return self.label_of(matrix), proba_rows(matrix, self.proba.classes)
        labels = self._labels(data, params, enforced=enforced)
        try:
            return labels, proba_rows(self.proba.fn(data), self.proba.classes)
        except Exception as exc:  # the answer stands; the log lacks its probabilities
            if not self._proba_failed:
                _log.warning("%s: no probabilities logged: %r", self.ref.label, exc)
                self._proba_failed = True
            return labels, None

    def _labels(self, data: Any, params: dict[str, Any] | None, *, enforced: bool) -> Any:
        if enforced:
            return _call_model(self.model, data, params)
        if params:
            return self.model.predict(data, params=params)
        return self.model.predict(data)

    def _predict_enforced(self, batch: Sequence[Pending]) -> tuple[Any, Any]:
        first = batch[0]
        if len(batch) == 1:
            data = first.input.value  # type: ignore[union-attr]
        else:  # joined only when they share columns and dtypes
            import pandas as pd

            data = pd.concat([p.input.value for p in batch], ignore_index=True)  # type: ignore[union-attr]
        return self._predict(data, first.params, first.output, enforced=True)

    def run_batch(self, batch: Sequence[Pending]) -> tuple[list[Any], Future[None] | None]:
        """Predict a batch in one call; one outcome (rows or exception) per request, and
        the future of their log records' group commit (None once already durable).

        ``/predict`` outcomes are JSON rows; ``/invocations`` outcomes are the model's own
        output for the request's rows (MLflow's scoring code serializes them)."""
        first = batch[0]
        try:
            if isinstance(first.input, RawInput):
                raw, proba = self._predict(
                    _as_array(first.input.value, self.spec),
                    first.params,
                    first.output,
                    enforced=False,
                )
                total = first.input.n_rows
            elif isinstance(first.input, EnforcedInput):
                raw, proba = self._predict_enforced(batch)
                total = sum(p.input.n_rows for p in batch)
            else:
                if len(batch) == 1:
                    data = first.input.data
                else:
                    data = {
                        k: list(chain.from_iterable(p.input.data[k] for p in batch))  # type: ignore[union-attr]
                        for k in first.input.key
                    }
                total = sum(p.input.n_rows for p in batch)
                raw, proba = self._predict(
                    to_frame(data, self.spec), first.params, first.output, enforced=False
                )
            if proba is not None and len(proba) != total:
                proba = None  # not one per row: the log cannot say which is whose
            if len(batch) == 1:
                parts, probas = [raw], [proba]
            elif _n_rows(raw) == total:
                parts, probas, start = [], [], 0
                for p in batch:
                    parts.append(_slice(raw, start, start + p.input.n_rows))
                    probas.append(proba[start : start + p.input.n_rows] if proba else None)
                    start += p.input.n_rows
            else:  # not row-shaped: predict the requests one by one
                return self._one_by_one(batch)
            outputs = [
                part if p.endpoint == "invocations" else _jsonable(part)
                for p, part in zip(batch, parts, strict=True)
            ]
        except Exception as exc:
            if len(batch) > 1:  # isolate the request that broke the batch
                return self._one_by_one(batch)
            sent = first.input.data if isinstance(first.input, TableInput) else {}
            absent = [n for n in self.spec.names if sent and n not in sent]
            return [_prediction_failed(exc, absent)], None
        self.metrics.observe_batch(self.labels, total)
        if self.log is None:
            return outputs, None
        done = time.perf_counter()
        try:  # a record that cannot be journalled fails its own request alone
            errors, durable = self.log.append_each(
                [
                    {
                        "request_id": p.request_id,
                        "ts": p.ts,
                        "deployment": self.deployment,
                        "model_name": self.ref.name,
                        "model_version": self.ref.version,
                        "run_id": self.ref.run_id,
                        "role": p.role,
                        "endpoint": p.endpoint,
                        "n_rows": p.input.n_rows,
                        "latency_ms": round((done - p.started) * 1000.0, 3),
                        "inputs": p.input.value if isinstance(p.input, RawInput) else p.input.data,
                        "outputs": _jsonable(out) if p.endpoint == "invocations" else out,
                        "proba": row_proba,
                    }
                    for p, out, row_proba in zip(batch, outputs, probas, strict=True)
                ]
            )
        except Exception as exc:  # no durable log entry, no answer
            _log.exception("prediction log write failed")
            return [log_failed(exc)] * len(batch), None
        for i, error in enumerate(errors):
            if error is not None:
                _log.error("prediction log write failed for %s: %r", batch[i].request_id, error)
                outputs[i] = log_failed(error)
        return outputs, durable


def label_from_proba(model: Any) -> Callable[[Any], Any] | None:
    """``classes_[argmax(proba)]`` for a pyfunc whose ``predict`` provably answers exactly
    that, so one ``predict_proba`` call gives the label and the logged probabilities; None
    for any other model (its labels come from its own ``predict``).

    Proven for scikit-learn forests (``RandomForestClassifier``, ``ExtraTreesClassifier``)
    with one output, served by MLflow's sklearn pyfunc wrapper with its default ``predict``:
    ``ForestClassifier.predict`` is ``classes_.take(argmax(predict_proba(X)), axis=0)``, and
    the wrapper's ``predict`` calls it on the same frame. A subclass overriding either
    method, or another ``pyfunc_predict_fn``, is not taken."""
    try:
        from mlflow.sklearn import _SklearnModelWrapper
        from sklearn.ensemble._forest import ForestClassifier
    except ImportError:  # another MLflow or scikit-learn layout: not proven, not taken
        return None
    bound = getattr(model, "_predict_fn", None)
    wrapper = getattr(bound, "__self__", None)
    if getattr(bound, "__func__", None) is not _SklearnModelWrapper.predict:
        return None
    native = getattr(wrapper, "sklearn_model", None)
    kind: Any = type(native)
    if (
        not isinstance(native, ForestClassifier)
        or kind.predict is not ForestClassifier.predict
        or kind.predict_proba is not ForestClassifier.predict_proba
        or getattr(native, "n_outputs_", 0) != 1
    ):
        return None
    classes = native.classes_

    def label(matrix: Any) -> Any:
        import numpy as np

        return classes.take(np.argmax(matrix, axis=1), axis=0)

    return label


def _n_rows(raw: Any) -> int | None:
    """How many rows a model output holds (None when it is not row-shaped)."""
    shape = getattr(raw, "shape", None)
    if shape:
        return int(shape[0])
    return len(raw) if isinstance(raw, list | tuple) else None


def _slice(raw: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a model output, of the output's own type."""
    if hasattr(raw, "iloc"):  # DataFrame, Series
        return raw.iloc[start:stop]
    return raw[start:stop]


def _call_model(model: Any, data: Any, params: dict[str, Any] | None) -> Any:
    """The model's implementation on input MLflow already enforced (no second enforcement).

    Uses ``PyFuncModel._predict_fn``, MLflow's private handle on the flavour's predict
    function, called as ``PyFuncModel._predict`` calls it; without it (another MLflow),
    ``predict`` enforces once more, which changes nothing for an enforced input."""
    import inspect

    predict_fn = getattr(model, "_predict_fn", None)
    if predict_fn is None:
        return model.predict(data, params=params) if params else model.predict(data)
    accepts = inspect.signature(predict_fn).parameters.get("params")
    if accepts is not None and accepts.kind != inspect.Parameter.VAR_KEYWORD:
        return predict_fn(data, params=params)
    return predict_fn(data)


def _all_done(futures: list[Future[None]]) -> Future[None]:
    """A future done when all ``futures`` are, failed if any failed."""
    combined: Future[None] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def one_done(done: Future[None]) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        error = done.exception()
        if error is not None and not combined.done():
            with contextlib.suppress(Exception):
                combined.set_exception(error)
        if last and not combined.done():
            with contextlib.suppress(Exception):
                combined.set_result(None)

    for future in futures:
        future.add_done_callback(one_done)
    return combined


def _as_array(value: Any, spec: InputSpec) -> Any:
    import numpy as np

    return np.asarray(value) if spec.tensor_dtype is None else as_tensor_dtype(value, spec)


def _jsonable(raw: Any) -> Any:
    rows = _rows_of(raw)
    if rows is not None:
        return rows
    if isinstance(raw, dict):
        return {k: _jsonable(v) for k, v in raw.items()}
    return raw


def _prediction_failed(exc: Exception, absent: list[str]) -> PredictionError:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    # MLflow's own schema enforcement: the input does not fit the model.
    status = 422 if "schema" in message.lower() or "incompatible" in message.lower() else 500
    if absent:  # optional columns left out, as MLflow leaves them out: say so
        status = 422
        message += (
            f" (optional column(s) {absent} were absent from the request; the model may need "
            "them: send them, null where unknown)"
        )
    error = PredictionError(f"The model failed on this input: {message}", status=status)
    error.__cause__ = exc  # what /invocations answers as MLflow does
    return error


def load_model(ref: ModelRef) -> Any:
    """Load ``ref`` (logging how the environment differs from its requirements) and warm it
    up: the first call of a freshly unpickled sklearn model is slower."""
    model = load_pyfunc(ref)
    for problem in requirement_mismatches(ref.source):
        _log.warning("%s: %s", ref.label, problem)
    if ref.example:
        with contextlib.suppress(Exception):
            spec = InputSpec.from_model(model)
            table = records_input(dict(ref.example), spec)
            model.predict(to_frame(table.data, spec))
    return model
