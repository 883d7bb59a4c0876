"""Tonight's alert candidates of one use case: one per fired rule, one each for drift, change
and (when enabled) anomalies, before de-duplication (:mod:`strategies.monitor.alerts`).

Example:
    >>> import datetime as dt
    >>> night = Windows.for_night(dt.date(2026, 11, 15), MonitoringConfig())
    >>> alert_candidates("claims-triage", windows=night, drift=[], series=[], rules=[],
    ...                  action=None, config=MonitoringConfig())
    []
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from strategies.monitor.alerts import AlertCandidate
from strategies.monitor.degradation import ACTION_SEVERITY, RecoveryAction, RuleEvaluation
from strategies.monitor.drift import DriftResult
from strategies.monitor.report import SeriesResult
from strategies.monitor.settings import MonitoringConfig, Windows


def _rule_alerts(
    use_case: str, rules: Sequence[RuleEvaluation], action: RecoveryAction | None
) -> list[AlertCandidate]:
    out: list[AlertCandidate] = []
    for rule in rules:
        if not rule.fired:
            continue
        acting = action if action is not None and action.rule == rule.rule else None
        critical = acting is not None and ACTION_SEVERITY[acting.kind] >= 2
        out.append(
            AlertCandidate(
                incident_key=f"{use_case}|rule|{rule.rule}",
                use_case=use_case,
                kind="rule",
                name=rule.rule,
                severity="critical" if critical else "warning",
                message=f"{use_case}: {rule.reason}",
                details={
                    "observed": rule.observed,
                    "baseline": rule.baseline,
                    "threshold": rule.threshold,
                    "action": acting.kind if acting else None,
                    "target_config_id": acting.target_config_id if acting else None,
                },
            )
        )
    return out


def _use_case_alert(
    use_case: str,
    kind: Literal["drift", "change", "anomaly"],
    severity: Literal["info", "warning"],
    message: str,
    details: Mapping[str, float | str | int | bool | None],
) -> AlertCandidate:
    """The one alert of ``kind`` a use case gets per night (its incident key names no field)."""
    return AlertCandidate(
        incident_key=f"{use_case}|{kind}",
        use_case=use_case,
        kind=kind,
        name=kind,
        severity=severity,
        message=f"{use_case}: {message}",
        details=details,
    )


def alert_candidates(
    use_case: str,
    *,
    windows: Windows,
    drift: Sequence[DriftResult],
    series: Sequence[SeriesResult],
    rules: Sequence[RuleEvaluation],
    action: RecoveryAction | None,
    config: MonitoringConfig,
) -> list[AlertCandidate]:
    """One alert per fired rule, one per use case for drift / change / anomaly (listing fields).

    Args:
        use_case: the use case.
        windows: the night's windows (named in the drift message).
        drift: the drift results.
        series: the analysed series.
        rules: the rule evaluations.
        action: the recovery action (makes its rule's alert critical when it switches).
        config: ``alert_on_anomalies`` and ``reference_days``.

    Returns:
        The candidates, before de-duplication.
    """
    out = _rule_alerts(use_case, rules, action)
    drifted = [d for d in drift if d.drift_detected]
    if drifted:
        message = (
            f"distribution drift on {windows.current_start}..{windows.as_of} "
            f"vs the {config.reference_days} days before: "
            + "; ".join(f"{d.feature}: {d.reason}" for d in drifted)
        )
        out.append(
            _use_case_alert(
                use_case, "drift", "warning", message, {d.feature: d.psi for d in drifted}
            )
        )
    changed = [s for s in series if s.recent_change_points]
    if changed:
        message = "change detected in " + ", ".join(
            f"{s.metric} ({s.granularity}) at {s.recent_change_points[-1]}" for s in changed
        )
        out.append(
            _use_case_alert(
                use_case,
                "change",
                "warning",
                message,
                {s.metric: s.recent_change_points[-1] for s in changed},
            )
        )
    last_period = {s.metric: s.periods[-1] if s.periods else None for s in series}
    today = [a for s in series for a in s.anomalies if a.period == last_period.get(a.metric)]
    if config.alert_on_anomalies and today:
        message = "anomalous " + ", ".join(
            f"{a.metric}={a.value:.4g} ({'+'.join(a.methods)})" for a in today
        )
        out.append(
            _use_case_alert(
                use_case, "anomaly", "info", message, {a.metric: a.value for a in today}
            )
        )
    return out


__all__ = ["alert_candidates"]
