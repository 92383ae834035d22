"""Scoring groups of labelled rows: the arrays taken from the frame once, sliced per group.

A :class:`GroupScorer` holds a ``read_outcomes`` frame as numpy arrays (outcomes,
predictions, class probabilities, label delays, the outcome columns business metrics
aggregate), so scoring a model version, a role or a time window is an index into them and a
call to :mod:`jupyter_mlops.predlog.scores`: no per-group DataFrame copies, which is what
keeps a million labelled rows within the ``--performance`` view's time budget.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring.business import COUNT_NAMES, BusinessMetric, business_values

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

REQUIRED = ("request_id", "timestamp", "model_version", "role", "prediction", "outcome")


class GroupScorer:
    """Scores of any subset of the labelled rows of ``outcomes`` (see the module's doc)."""

    def __init__(
        self,
        outcomes: pd.DataFrame,
        task: str,
        business: Iterable[BusinessMetric] = (),
        *,
        positive: Any = None,
        notes: dict[str, str] | None = None,
    ) -> None:
        import numpy as np
        import pandas as pd

        missing = [c for c in REQUIRED if c not in outcomes.columns]
        if missing:
            raise MonitoringError(f"the outcome rows lack the column(s) {', '.join(missing)}")
        frame = outcomes.copy(deep=False)
        frame["model_version"] = frame["model_version"].astype(str)
        if not isinstance(frame["timestamp"].dtype, pd.DatetimeTZDtype):
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        self.frame = frame
        self.task = task
        self.business = list(business)
        self.positive = positive
        self.notes = notes if notes is not None else {}
        self.classification = task == "classification"
        proba = [c for c in frame.columns if str(c).startswith("proba_")]
        self.classes: list[str] | None = [str(c)[6:] for c in proba] or None
        self.proba: np.ndarray | None = None
        if proba and self.classification:
            self.proba = frame[proba].to_numpy(dtype=float, na_value=np.nan)
        kind = object if self.classification else float
        self.true = _array(frame["outcome"], kind)
        self.pred = _array(frame["prediction"], kind)
        delay = frame["delay_s"] if "delay_s" in frame.columns else None
        self.delay = (
            delay.to_numpy(dtype=float, na_value=np.nan)
            if delay is not None
            else np.full(len(frame), np.nan)
        )
        columns = sorted({c for m in self.business for c in m.columns})
        self.columns = frame[[c for c in columns if c in frame.columns]]
        self.counted = any(m.names & set(COUNT_NAMES) for m in self.business)

    def score(self, idx: np.ndarray | None) -> dict[str, Any]:
        """``n_labelled``, ``delay_s_median``, scores and business metrics of rows ``idx``."""
        import numpy as np

        from jupyter_mlops.predlog.scores import (
            classification_scores,
            confusion_counts,
            regression_scores,
        )

        if idx is None or len(idx) == 0:
            return {"n_labelled": 0}
        true, pred = self.true[idx], self.pred[idx]
        delay = self.delay[idx]
        delay = delay[np.isfinite(delay)]
        out: dict[str, Any] = {
            "n_labelled": len(idx),
            "delay_s_median": float(np.median(delay)) if delay.size else float("nan"),
        }
        names: dict[str, float] = {"n": float(len(idx))}
        if self.classification:
            proba = self.proba[idx] if self.proba is not None else None
            scores = classification_scores(true, pred, proba=proba, classes=self.classes)
            if self.counted:
                names.update(
                    confusion_counts(true, pred, positive=self.positive, classes=self.classes)
                )
        else:
            scores = regression_scores(true, pred)
        out.update(scores)
        names.update(scores)
        if self.business:
            rows = self.columns.iloc[idx] if len(idx) != len(self.columns) else self.columns
            out.update(business_values(self.business, names, rows, self.notes))
        return out


def _array(column: pd.Series, kind: type) -> np.ndarray:
    import numpy as np
    import pandas as pd

    if kind is float:
        values = pd.to_numeric(column, errors="coerce")
        return values.to_numpy(dtype=float, na_value=np.nan)
    return column.to_numpy(dtype=object)
