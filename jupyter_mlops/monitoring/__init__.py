"""Monitoring of deployments: drift statistics, monitored figures, alert rules.

* :func:`drift` compares two DataFrames; :func:`drift_for_deployment` compares a
  deployment's logged inputs with its model's training data (found through lineage).
* :func:`figures` gives a deployment's numbers by name (requests, rps, p50_ms, p95_ms,
  p99_ms, errors, error_rate, drift_share, n_drifted, and per-version variants), for
  alert rules and retraining triggers written as :class:`~jupyter_mlops.conditions.Condition`.
* :func:`performance` joins a deployment's predictions to their outcomes (ground truth
  that arrives later) and scores them per model version and time window, with business
  metrics (:class:`BusinessMetric`, stored with :func:`set_business`); its figures
  (``accuracy``, ``label_coverage``, ``revenue_per_1k``...) are part of :func:`figures`.
* :func:`fit_estimator` / :func:`estimator_for` estimate a classifier's accuracy before its
  labels arrive, from its predicted probabilities (confidence-based estimation).
* :func:`check` evaluates the stored alert rules (:func:`set_rules`), records firings,
  POSTs them to a webhook and runs actions (:func:`register_action`).

Every module here imports numpy, scipy, pandas or MLflow only inside the functions that
need them, so importing this package is cheap.
"""

from __future__ import annotations

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring.actions import register_action, registered_actions
from jupyter_mlops.monitoring.alerts import (
    AlertRule,
    CheckResult,
    RuleResult,
    RuleSet,
    alert_history,
    check,
    get_rules,
    remove_rules,
    set_rules,
)
from jupyter_mlops.monitoring.business import (
    BusinessMetric,
    get_business,
    remove_business,
    set_business,
)
from jupyter_mlops.monitoring.deployment import drift_for_deployment
from jupyter_mlops.monitoring.drift import drift
from jupyter_mlops.monitoring.estimation import Estimator, fit_estimator
from jupyter_mlops.monitoring.estimation_reference import estimator_for
from jupyter_mlops.monitoring.feature import FeatureDrift
from jupyter_mlops.monitoring.live import LiveMonitor, LiveSnapshot
from jupyter_mlops.monitoring.performance import (
    PerformanceReport,
    performance,
    score_outcomes,
)
from jupyter_mlops.monitoring.profile import ReferenceProfile, profile
from jupyter_mlops.monitoring.reference import read_table, training_data
from jupyter_mlops.monitoring.report import DriftReport
from jupyter_mlops.monitoring.verdict import DriftThresholds
from jupyter_mlops.monitoring.vitals import Figures, figures, scrape, timeseries
from jupyter_mlops.monitoring.window import parse_window

__all__ = [
    "AlertRule",
    "BusinessMetric",
    "CheckResult",
    "DriftReport",
    "DriftThresholds",
    "Estimator",
    "FeatureDrift",
    "Figures",
    "LiveMonitor",
    "LiveSnapshot",
    "MonitoringError",
    "PerformanceReport",
    "ReferenceProfile",
    "RuleResult",
    "RuleSet",
    "alert_history",
    "check",
    "drift",
    "drift_for_deployment",
    "estimator_for",
    "figures",
    "fit_estimator",
    "get_business",
    "get_rules",
    "parse_window",
    "performance",
    "profile",
    "read_table",
    "register_action",
    "registered_actions",
    "remove_business",
    "remove_rules",
    "score_outcomes",
    "scrape",
    "set_business",
    "set_rules",
    "timeseries",
    "training_data",
]
