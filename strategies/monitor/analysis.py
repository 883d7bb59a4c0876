"""One use case on one night, from its warehouse aggregates to a report: no I/O.

:func:`judge_use_case` runs drift (reference window vs current window), the change detectors and
anomaly scores on the daily (and hourly) series, the degradation rules of the production
configuration against *its own reference window* (the ``reference_days`` before the night: a
spike never dilutes its own baseline), the recovery decision, and the de-duplication of alerts
against earlier runs. The warehouse side is :mod:`tasks.monitoring.inputs`.

Example:
    >>> import numpy as np
    >>> days = [f"2026-11-{d:02d}" for d in range(1, 29)]
    >>> values = np.r_[np.full(25, 0.80), np.full(3, 0.55)]
    >>> s = analyse_series("quality", days, values, MonitoringConfig())
    >>> s.analysable, s.recent_change_points
    (True, ('2026-11-26',))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from strategies.monitor.anomaly import detect_anomalies
from strategies.monitor.candidates import alert_candidates
from strategies.monitor.change import consensus_changes, detect_changes, standardise_details
from strategies.monitor.degradation import (
    AlertCandidate,
    ApprovedConfig,
    PastAlert,
    RecoveryAction,
    RuleEvaluation,
    Suppressed,
    deduplicate,
    evaluate_rules,
)
from strategies.monitor.drift import DriftResult, categorical_drift, numeric_drift
from strategies.monitor.recovery import decide_recovery, hold_open_incident
from strategies.monitor.report import (
    AnomalyFlag,
    Granularity,
    MonitoringInputs,
    SeriesResult,
    Status,
    UseCaseReport,
)
from strategies.monitor.settings import MonitoringConfig, Windows


def analyse_series(
    metric: str,
    periods: Sequence[str],
    values: np.ndarray,
    config: MonitoringConfig,
    *,
    granularity: Granularity = "day",
    reference_length: int | None = None,
) -> SeriesResult:
    """Change points (consensus of the three detectors) and anomalies of one series.

    Periods without data are skipped (not imputed). The first ``reference_length`` present
    points set the standardisation; with fewer than that plus one, the series is not analysable.

    Args:
        metric: the metric's name.
        periods: ISO day (or hour) of each value.
        values: one value per period, ``NaN`` where the period had no traffic.
        config: detectors, votes, tolerance, anomaly thresholds, alert window.
        granularity: ``"day"`` or ``"hour"``.
        reference_length: points that set the scale (default ``config.reference_days``).

    Returns:
        A :class:`SeriesResult` (``analysable=False`` with a reason when too short).
    """
    ref_len = reference_length or config.reference_days
    raw = tuple(None if not math.isfinite(v) else float(v) for v in values)
    present = [i for i, v in enumerate(raw) if v is not None]
    kept = [periods[i] for i in present]
    x = np.asarray([raw[i] for i in present], dtype=float)
    base: dict[str, Any] = {
        "metric": metric,
        "granularity": granularity,
        "periods": tuple(periods),
        "values": raw,
    }
    if x.size < ref_len + 1:
        return SeriesResult(
            **base,
            analysable=False,
            reason=f"{x.size} periods with data; need {ref_len + 1} (reference {ref_len} + 1)",
        )
    std = standardise_details(
        x, reference=x[:ref_len], min_relative_scale=config.min_relative_scale
    )
    hits = {d.name: detect_changes(d, std.values) for d in config.detectors()}
    changes = consensus_changes(
        hits, min_votes=config.change_min_votes, tolerance=config.change_tolerance
    )
    # changes inside the reference part are old news; report them, alert only on recent ones
    recent_from = len(x) - config.alert_window_days
    scores = detect_anomalies(x[ref_len:], reference=x[:ref_len], thresholds=config.anomaly)
    anomalies = tuple(
        AnomalyFlag(
            metric=metric,
            period=kept[ref_len + i],
            value=s.value,
            z_score=s.z_score,
            iqr_distance=s.iqr_distance,
            mad_score=s.mad_score,
            methods=s.methods,
        )
        for i, s in enumerate(scores)
        if s.is_anomaly
    )
    floored = " (scale floored: near-constant reference)" if std.scale_floored else ""
    return SeriesResult(
        **base,
        analysable=True,
        reason=f"{len(changes)} change point(s), {len(anomalies)} anomaly(ies){floored}",
        center=std.center,
        scale=std.scale,
        detector_hits={k: tuple(kept[i] for i in v) for k, v in hits.items()},
        change_points=tuple(kept[i] for i in changes),
        recent_change_points=tuple(kept[i] for i in changes if i >= recent_from),
        anomalies=anomalies,
    )


def drift_results(inputs: MonitoringInputs, config: MonitoringConfig) -> list[DriftResult]:
    """Drift of every configured field, reference window vs current window.

    Args:
        inputs: the use case's binned and category counts.
        config: the fields and thresholds.

    Returns:
        One :class:`DriftResult` per numeric then categorical field.
    """
    results: list[DriftResult] = []
    for column in config.numeric_fields:
        edges, ref, cur = inputs.numeric[column]
        results.append(numeric_drift(column, edges, ref, cur, thresholds=config.drift))
    for column in config.categorical_fields:
        categories, ref, cur = inputs.categorical[column]
        results.append(categorical_drift(column, categories, ref, cur, thresholds=config.drift))
    return results


def check_inputs(
    inputs: MonitoringInputs, use_case: str, windows: Windows, config: MonitoringConfig
) -> None:
    """Refuse inputs fetched for another use case, other windows or other fields.

    Args:
        inputs: the aggregates handed over.
        use_case: the use case being judged.
        windows: the night's windows.
        config: the configured fields.

    Raises:
        ValueError: the inputs do not fit (a programming error, not a user's).
    """
    problems = []
    if inputs.use_case != use_case:
        problems.append(f"they are {inputs.use_case!r}'s")
    if inputs.windows != windows:
        problems.append(f"their windows are {inputs.windows}, the night's {windows}")
    missing = [c for c in config.numeric_fields if c not in inputs.numeric]
    missing += [c for c in config.categorical_fields if c not in inputs.categorical]
    if missing:
        problems.append(f"fields {missing} are missing")
    if config.hourly and inputs.hourly is None:
        problems.append("the hourly series is missing")
    if problems:
        raise ValueError(f"monitoring inputs do not fit {use_case}: " + "; ".join(problems))


def known_production_config(
    use_case: str,
    config: MonitoringConfig,
    *,
    production_config_id: str | None = None,
    approved_configs: Sequence[ApprovedConfig] = (),
) -> str | None:
    """The production configuration key when the caller, the registry or the config names it.

    Args:
        use_case: the use case.
        config: ``production_config_ids`` from ``monitoring.toml``.
        production_config_id: the caller's (the nightly flow's) production key.
        approved_configs: the registry's approved configurations.

    Returns:
        The key, or ``None`` (then it is inferred from traffic).
    """
    return (
        production_config_id
        or next((c.config_id for c in approved_configs if c.is_production), None)
        or config.production_config_ids.get(use_case)
        or None
    )


def _series(inputs: MonitoringInputs, config: MonitoringConfig) -> list[SeriesResult]:
    daily = inputs.daily
    series = [
        analyse_series(metric, daily["periods"], daily[metric], config)
        for metric in config.change_metrics
    ]
    if config.hourly and inputs.hourly is not None:
        hourly = inputs.hourly
        ref_hours = max(12, len(hourly["periods"]) * 5 // 7)  # the first 5 of 7 days
        series += [
            analyse_series(
                metric,
                hourly["periods"],
                hourly[metric],
                config,
                granularity="hour",
                reference_length=ref_hours,
            )
            for metric in config.change_metrics
        ]
    return series


def _rules(inputs: MonitoringInputs, config: MonitoringConfig) -> list[RuleEvaluation]:
    """The rules of the production configuration: current window vs its reference window."""
    if inputs.current is None:
        return []
    baseline = inputs.baseline
    return evaluate_rules(
        inputs.current,
        baseline if baseline and baseline.n else None,
        config.rules_for(inputs.use_case),
    )


def _status(
    new: Sequence[AlertCandidate], suppressed: Sequence[Suppressed], action: RecoveryAction | None
) -> Status:
    if not new and not suppressed and action is None:
        return "ok"
    tonight = [s.alert for s in suppressed if s.kind == "raised_tonight"]
    if any(a.severity == "critical" for a in [*new, *tonight]) or (
        action is not None and action.kind in ("rollback", "circuit_breaker")
    ):
        return "critical"
    return "warning"


def _hold_if_open(
    action: RecoveryAction | None, suppressed: Sequence[Suppressed], use_case: str
) -> RecoveryAction | None:
    """An action whose incident was already open on an earlier night is not repeated."""
    if action is None or action.rule is None:
        return action
    key = f"{use_case}|rule|{action.rule}"
    held = next(
        (s for s in suppressed if s.alert.incident_key == key and s.kind == "open_incident"), None
    )
    return action if held is None else hold_open_incident(action, held.reason)


def judge_use_case(
    inputs: MonitoringInputs,
    *,
    config: MonitoringConfig,
    history: Sequence[PastAlert] = (),
    approved_configs: Sequence[ApprovedConfig] = (),
    notes: Sequence[str] = (),
) -> UseCaseReport:
    """Drift, change points, anomalies, rules, deduplicated alerts and the recovery action.

    Args:
        inputs: the use case's aggregates for the night (see :class:`MonitoringInputs`).
        config: the monitoring configuration.
        history: incidents seen by other runs (this night's and earlier), for de-duplication.
        approved_configs: configurations the registry could switch to (rollback targets).
        notes: lines to carry into the report (e.g. "production inferred from traffic").

    Returns:
        The :class:`UseCaseReport` (``status="no_data"`` without traffic in the current window).

    Raises:
        ValueError: the inputs do not fit the night or the configuration.
    """
    use_case, windows = inputs.use_case, inputs.windows
    check_inputs(inputs, use_case, Windows.for_night(windows.as_of, config), config)
    frame: dict[str, Any] = {
        "use_case": use_case,
        "as_of": windows.as_of,
        "reference_window": (windows.reference_start, windows.reference_end),
        "current_window": (windows.current_start, windows.current_end),
        "production_config_id": inputs.production_config_id,
    }
    out_notes = list(notes)
    if inputs.current_all.n == 0:
        out_notes.append(
            f"no traffic for {use_case} in {windows.current_start}..{windows.current_end}"
        )
        return UseCaseReport(**frame, status="no_data", notes=tuple(out_notes))
    drift = drift_results(inputs, config)
    series = _series(inputs, config)
    if inputs.production_config_id is None:
        out_notes.append("no production configuration known: degradation rules skipped")
    evaluations = _rules(inputs, config)
    policy = config.policy_for(use_case)
    action = decide_recovery(
        use_case,
        evaluations,
        production_config_id=inputs.production_config_id,
        approved_configs=approved_configs,
        policy=policy,
        rules=config.rules_for(use_case),
    )
    candidates = alert_candidates(
        use_case,
        windows=windows,
        drift=drift,
        series=series,
        rules=evaluations,
        action=action,
        config=config,
    )
    new, suppressed = deduplicate(
        candidates, history, as_of=windows.as_of, cooldown_days=policy.cooldown_days
    )
    action = _hold_if_open(action, suppressed, use_case)
    return UseCaseReport(
        **frame,
        status=_status(new, suppressed, action),
        drift=tuple(drift),
        series=tuple(series),
        rules=tuple(evaluations),
        alerts=tuple(new),
        suppressed=tuple(suppressed),
        action=action,
        notes=tuple(out_notes),
    )


__all__ = [
    "analyse_series",
    "check_inputs",
    "drift_results",
    "judge_use_case",
    "known_production_config",
]
