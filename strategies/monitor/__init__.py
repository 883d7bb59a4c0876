"""Monitoring math: drift, change detection, anomalies, degradation rules and recovery decisions.

Pure computation (numpy, scipy and River's drift detectors); the warehouse queries, alert storage
and notifications live in :mod:`tasks.monitoring`.

Example:
    >>> sorted(name for name in __all__ if name.endswith("_drift"))
    ['categorical_drift', 'numeric_drift']
"""

from __future__ import annotations

from strategies.monitor.alerts import AlertCandidate, PastAlert, Suppressed, deduplicate
from strategies.monitor.analysis import analyse_series, judge_use_case
from strategies.monitor.anomaly import AnomalyScore, AnomalyThresholds, detect_anomalies
from strategies.monitor.change import (
    AdwinDetector,
    ChangeDetector,
    CusumDetector,
    PageHinkleyDetector,
    consensus_changes,
    detect_changes,
    standardise,
)
from strategies.monitor.degradation import (
    ApprovedConfig,
    DegradationRules,
    RecoveryAction,
    RecoveryPolicy,
    RuleEvaluation,
    WindowStats,
    evaluate_rules,
)
from strategies.monitor.drift import (
    DriftResult,
    DriftThresholds,
    categorical_drift,
    numeric_drift,
    psi,
    psi_band,
)
from strategies.monitor.recovery import decide_recovery, hold_open_incident
from strategies.monitor.report import MonitoringInputs, MonitoringReport, UseCaseReport
from strategies.monitor.settings import MonitoringConfig, NotifierConfig, Windows

__all__ = [
    "AdwinDetector",
    "AlertCandidate",
    "AnomalyScore",
    "AnomalyThresholds",
    "ApprovedConfig",
    "ChangeDetector",
    "CusumDetector",
    "DegradationRules",
    "DriftResult",
    "DriftThresholds",
    "MonitoringConfig",
    "MonitoringInputs",
    "MonitoringReport",
    "NotifierConfig",
    "PageHinkleyDetector",
    "PastAlert",
    "RecoveryAction",
    "RecoveryPolicy",
    "RuleEvaluation",
    "Suppressed",
    "UseCaseReport",
    "WindowStats",
    "Windows",
    "analyse_series",
    "categorical_drift",
    "consensus_changes",
    "decide_recovery",
    "deduplicate",
    "detect_anomalies",
    "detect_changes",
    "evaluate_rules",
    "hold_open_incident",
    "judge_use_case",
    "numeric_drift",
    "psi",
    "psi_band",
    "standardise",
]
