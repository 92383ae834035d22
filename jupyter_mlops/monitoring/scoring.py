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
        proba = [c for c in outcomes.columns if str(c).startswith("proba_")]
        self.classification = task == "classification"
        self.proba: np.ndarray | None = None
        order = None
        if proba and self.classification:
            self.proba = outcomes[proba].to_numpy(dtype=float, na_value=np.nan)
            # Rows ordered by the last class's probability: every group's rows are then
            # sorted for ROC AUC already (binary: the one sort it needs, done once here).
            order = np.argsort(self.proba[:, -1], kind="stable")
            self.proba = self.proba[order]
        stamps = outcomes["timestamp"]
        if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
            stamps = pd.to_datetime(stamps, utc=True)
        business = list(business)
        wanted = {"outcome", "prediction", "delay_s", *(c for m in business for c in m.columns)}
        frame = outcomes[[c for c in outcomes.columns if c in wanted]].reset_index(drop=True)
        #: What rows are grouped by (in the scorer's row order): groups index the scorer.
        self.frame = pd.DataFrame(
            {
                "timestamp": stamps.reset_index(drop=True),
                "model_version": outcomes["model_version"].astype(str).astype("category"),
                "role": outcomes["role"].astype(str).astype("category"),
            }
        ).reset_index(drop=True)
        self.size = len(self.frame)
        if order is not None:
            self.frame = self.frame.take(order).reset_index(drop=True)
            frame = frame.take(order).reset_index(drop=True)
        self.task = task
        self.business = business
        self.positive = positive
        self.notes = notes if notes is not None else {}
        self.classes: list[str] | None = [str(c)[6:] for c in proba] or None
        self.positive_code: int | None = None
        if self.classification:
            self.true, self.pred, self.labels = _label_codes(
                frame["outcome"], frame["prediction"], self.classes or []
            )
            if positive is None:
                self.positive_code = len(self.labels) - 1  # as scores: the last class
            elif str(positive) in self.labels:
                self.positive_code = self.labels.index(str(positive))
            else:
                self.positive_code = -1  # a class never seen: no positives
        else:
            self.true = _floats(frame["outcome"])
            self.pred = _floats(frame["prediction"])
            self.labels = []
        # scores see integer codes: the probability columns' classes are codes 0..k-1
        self.code_classes = list(range(len(self.classes))) if self.classes else None
        delay = frame["delay_s"] if "delay_s" in frame.columns else None
        self.delay = (
            delay.to_numpy(dtype=float, na_value=np.nan)
            if delay is not None
            else np.full(len(frame), np.nan)
        )
        columns = sorted({c for m in self.business for c in m.columns})
        self.columns = frame[[c for c in columns if c in frame.columns]].reset_index(drop=True)
        self.counted = any(m.names & set(COUNT_NAMES) for m in self.business)
        self._cache: dict[tuple[int, int], dict[str, Any]] = {}

    def score(self, idx: np.ndarray | None) -> dict[str, Any]:
        """``n_labelled``, ``delay_s_median``, scores and business metrics of rows ``idx``.

        The same rows asked twice (a version that is all of its role, a role that is all of
        the window) are scored once."""
        import numpy as np

        if idx is None or len(idx) == 0:
            return {"n_labelled": 0}
        idx = np.asarray(idx, dtype=np.int64)  # ascending, as groupby gives them
        key = (len(idx), hash(idx.tobytes()))
        if key not in self._cache:
            self._cache[key] = self._score(idx)
        return dict(self._cache[key])

    def _score(self, idx: np.ndarray) -> dict[str, Any]:
        import numpy as np

        from jupyter_mlops.predlog.scores import (
            classification_scores,
            confusion_counts,
            regression_scores,
        )

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
            classes = self.code_classes
            scores = classification_scores(true, pred, proba=proba, classes=classes)
            if self.counted:
                names.update(
                    confusion_counts(true, pred, positive=self.positive_code, classes=classes)
                )
        else:
            scores = regression_scores(true, pred)
        out.update(scores)
        names.update(scores)
        if self.business:
            rows = self.columns.iloc[idx] if len(idx) != len(self.columns) else self.columns
            out.update(business_values(self.business, names, rows, self.notes))
        return out


def _floats(column: pd.Series) -> np.ndarray:
    import numpy as np
    import pandas as pd

    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _label_codes(
    outcome: pd.Series, prediction: pd.Series, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Outcomes and predictions as integer codes over one class list: ``classes`` (the
    probability columns') first, then any other label seen, sorted as text; labels compare
    as text, as :mod:`~jupyter_mlops.predlog.scores` does. Coded once for every group."""
    import numpy as np
    import pandas as pd

    both = pd.concat([outcome, prediction], ignore_index=True)
    raw, uniques = pd.factorize(both, use_na_sentinel=False)
    texts = [str(u) for u in np.asarray(uniques, dtype=object)]
    names = list(classes) + sorted(set(texts) - set(classes))
    index = {name: i for i, name in enumerate(names)}
    codes = np.array([index[t] for t in texts], dtype=np.int64)[raw]
    return codes[: len(outcome)], codes[len(outcome) :], names
