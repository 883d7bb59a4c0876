"""Monitoring math: drift, change detection, anomalies, degradation rules and recovery decisions.

Pure computation (numpy, scipy and River's drift detectors); the warehouse queries, alert storage
and notifications live in :mod:`tasks.monitoring.run`.
"""

from __future__ import annotations

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
    AlertCandidate,
    ApprovedConfig,
    DegradationRules,
    PastAlert,
    RecoveryAction,
    RecoveryPolicy,
    RuleEvaluation,
    WindowStats,
    decide_recovery,
    deduplicate,
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
    "PageHinkleyDetector",
    "PastAlert",
    "RecoveryAction",
    "RecoveryPolicy",
    "RuleEvaluation",
    "WindowStats",
    "categorical_drift",
    "consensus_changes",
    "decide_recovery",
    "deduplicate",
    "detect_anomalies",
    "detect_changes",
    "evaluate_rules",
    "numeric_drift",
    "psi",
    "psi_band",
    "standardise",
]
