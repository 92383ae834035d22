"""Live monitoring: one step, taken every few seconds by the monitor widget and the sidebar.

Each :meth:`LiveMonitor.snapshot` of a deployment computes its figures over the window
(:func:`~jupyter_mlops.monitoring.figures`), its drift at most every ``drift_every``
seconds (drift compares the logged inputs with the training data, so it costs far more
than the traffic figures; in between, the last drift figures are carried over), and
evaluates its stored alert rules over them without recording or notifying (firing is the
job of ``monitor check``). Performance figures (predictions joined to outcomes: reading the
outcome store) are throttled the same way, every ``performance_every`` seconds. A
:class:`LiveMonitor` holds the throttles' state, so a face keeps one per deployment it shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_mlops.monitoring.alerts import CheckResult, check, get_rules
from jupyter_mlops.monitoring.performance import PERFORMANCE_FIGURES
from jupyter_mlops.monitoring.vitals import Figures, figures

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config
    from jupyter_mlops.monitoring.report import DriftReport

#: The figures a drift computation gives (see :meth:`DriftReport.figures`).
DRIFT_FIGURES = (
    "drift_share", "dataset_drift", "n_drifted", "n_features", "prediction_psi",
    "prediction_drift",
)  # fmt: skip


@dataclass
class LiveSnapshot:
    """One step of live monitoring."""

    figures: Figures
    checks: CheckResult | None  # the stored rules over ``figures`` (None without rules)
    drift_report: DriftReport | None  # the latest drift report, of this step or before
    drift_fresh: bool  # whether drift was computed in this step


class LiveMonitor:
    """The live state of one deployment: when its drift was last computed, and what it gave."""

    def __init__(
        self,
        deployment: str,
        *,
        last: str | float | None = "1h",
        drift_every: float = 60.0,
        performance_every: float = 30.0,
        rules: bool = True,
        config: Config | None = None,
    ) -> None:
        from jupyter_mlops.config import load_config

        self.deployment = deployment
        self.last = last
        self.drift_every = float(drift_every)
        self.rules = rules
        self.config = config or load_config()
        self.drift_at: float | None = None  # time.monotonic() of the last drift computation
        self.drift_report: DriftReport | None = None
        self._drift_values: dict[str, float] = {}
        self._drift_notes: dict[str, str] = {}
        self.performance_every = float(performance_every)
        self.performance_at: float | None = None
        self._performance_values: dict[str, float] = {}
        self._performance_notes: dict[str, str] = {}

    @property
    def drift_due(self) -> bool:
        return self.drift_at is None or time.monotonic() - self.drift_at >= self.drift_every

    def snapshot(
        self, predictions: pd.DataFrame | None = None, *, drift: bool = True
    ) -> LiveSnapshot:
        """Figures, throttled drift and rule states now.

        ``predictions``: the window's prediction log when the caller has read it already
        (else it is read here). ``drift=False``: no drift in this step, none carried over
        (e.g. when the window holds no predictions).
        """
        fresh = drift and self.drift_due
        options: dict[str, Any] = {} if predictions is None else {"predictions": predictions}
        now = time.monotonic()
        scored = self.performance_at is None or now - self.performance_at >= self.performance_every
        figs = figures(
            self.deployment, last=self.last, config=self.config, drift=fresh,
            performance=scored, **options,
        )  # fmt: skip
        if scored:
            self.performance_at = now
            report = figs.performance_report
            self._performance_values = dict(report.figures()) if report is not None else {}
            own = set(PERFORMANCE_FIGURES) | set(report.notes if report is not None else ())
            self._performance_notes = {k: v for k, v in figs.notes.items() if k in own}
        else:
            for key, value in self._performance_values.items():
                figs.setdefault(key, value)
            for key, note in self._performance_notes.items():
                figs.notes.setdefault(key, note)
        if fresh:
            self.drift_at = time.monotonic()
            self.drift_report = getattr(figs, "drift_report", None)
            self._drift_values = {k: figs[k] for k in DRIFT_FIGURES if k in figs}
            self._drift_notes = {k: v for k, v in figs.notes.items() if k in DRIFT_FIGURES}
        elif drift:
            for key, value in self._drift_values.items():
                figs.setdefault(key, value)
            for key, note in self._drift_notes.items():
                figs.notes.setdefault(key, note)
        return LiveSnapshot(figs, self._check(figs), self.drift_report, fresh)

    def _check(self, figs: Figures) -> CheckResult | None:
        if not self.rules:
            return None
        rules = get_rules(self.deployment, config=self.config).rules
        if not rules:
            return None
        result = check(
            self.deployment, rules, figures=figs, record=False, notify=False, config=self.config
        )
        result.figures = figs  # with its notes on absent figures
        return result
