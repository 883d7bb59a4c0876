"""The shapes a monitoring night reads and writes: its inputs and its reports.

:class:`MonitoringInputs` is what the warehouse hands over per use case (binned counts, category
counts, metric series, sufficient statistics; filled by :mod:`tasks.monitoring.inputs`);
:class:`UseCaseReport` and :class:`MonitoringReport` are what the analysis
(:mod:`strategies.monitor.analysis`) returns. All frozen and built by keyword.

Example:
    >>> import datetime as dt
    >>> night = dt.date(2026, 11, 15)
    >>> uc = UseCaseReport(use_case="claims-triage", as_of=night, status="ok",
    ...                    reference_window=(dt.date(2026, 11, 1), dt.date(2026, 11, 14)),
    ...                    current_window=(night, night), production_config_id=None)
    >>> MonitoringReport(run_id="r1", as_of=night, use_cases=(uc,)).summary()["status"]
    {'claims-triage': 'ok'}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from strategies.monitor.degradation import (
    AlertCandidate,
    RecoveryAction,
    RuleEvaluation,
    Suppressed,
    WindowStats,
)
from strategies.monitor.drift import DriftResult
from strategies.monitor.settings import Windows

Status = Literal["ok", "warning", "critical", "no_data"]
Granularity = Literal["day", "hour"]
EMPTY_STATS = WindowStats(n=0, successes=0)

#: binned counts of one numeric field: (upper bin edges, reference counts, current counts)
Bins = tuple[np.ndarray, np.ndarray, np.ndarray]
#: counts per category: (categories, reference counts, current counts)
CategoryCounts = tuple[list[str], np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False, kw_only=True)
class MonitoringInputs:
    """Everything the analysis of one use case reads from the warehouse for one night.

    ``production_config_id`` is a configuration key (``config_id`` when the logs carry it, else
    ``model|prompt|t=..|p=..|mt=..``, the nightly flow's key). ``baseline`` is the production
    configuration over the reference window (before the night), ``current`` over the current
    window; both ``None`` when no production configuration is known. (No ``==``: arrays.)
    """

    use_case: str
    windows: Windows
    production_config_id: str | None
    current_all: WindowStats
    baseline: WindowStats | None
    current: WindowStats | None
    numeric: Mapping[str, Bins]
    categorical: Mapping[str, CategoryCounts]
    daily: Mapping[str, Any]
    hourly: Mapping[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class AnomalyFlag:
    """One anomalous point of a metric series, with the scores that flagged it."""

    metric: str
    period: str
    value: float
    z_score: float
    iqr_distance: float
    mad_score: float
    methods: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SeriesResult:
    """One metric series of one use case with its change points and anomalies."""

    metric: str
    granularity: Granularity
    periods: tuple[str, ...]
    values: tuple[float | None, ...]
    analysable: bool
    reason: str
    center: float | None = None
    scale: float | None = None
    detector_hits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    change_points: tuple[str, ...] = ()
    recent_change_points: tuple[str, ...] = ()
    anomalies: tuple[AnomalyFlag, ...] = ()


@dataclass(frozen=True, kw_only=True)
class UseCaseReport:
    """One use case on one night: drift, series, rules, alerts, suppressed alerts, action.

    ``alerts`` are raised by this run (stored and notified); ``suppressed`` holds the others,
    among them those another run of the same night already raised (``kind ==
    "raised_tonight"``): :attr:`night_alerts` lists both, what a person asks for.
    """

    use_case: str
    as_of: dt.date
    status: Status
    reference_window: tuple[dt.date, dt.date]
    current_window: tuple[dt.date, dt.date]
    production_config_id: str | None
    drift: tuple[DriftResult, ...] = ()
    series: tuple[SeriesResult, ...] = ()
    rules: tuple[RuleEvaluation, ...] = ()
    alerts: tuple[AlertCandidate, ...] = ()
    suppressed: tuple[Suppressed, ...] = ()
    action: RecoveryAction | None = None
    notes: tuple[str, ...] = ()

    @property
    def drifted_fields(self) -> tuple[str, ...]:
        """The fields whose drift was declared."""
        return tuple(d.feature for d in self.drift if d.drift_detected)

    @property
    def night_alerts(self) -> tuple[tuple[AlertCandidate, str | None], ...]:
        """Every alert of the night with the run that raised it (``None``: this run)."""
        own = [(a, None) for a in self.alerts]
        other = [(s.alert, s.run_id) for s in self.suppressed if s.kind == "raised_tonight"]
        return tuple(own + other)


@dataclass(frozen=True, kw_only=True)
class MonitoringReport:
    """Everything one monitoring run found; JSON-serialisable via ``tasks.core.jsonable``."""

    run_id: str
    as_of: dt.date
    use_cases: tuple[UseCaseReport, ...]
    alerts_stored: int = 0
    notified: tuple[str, ...] = ()

    @property
    def actions(self) -> tuple[RecoveryAction, ...]:
        """The recovery actions decided, one per use case at most."""
        return tuple(u.action for u in self.use_cases if u.action is not None)

    @property
    def alerts(self) -> tuple[AlertCandidate, ...]:
        """The alerts this run raised."""
        return tuple(a for u in self.use_cases for a in u.alerts)

    def summary(self) -> dict[str, Any]:
        """Small dict for logs / MLflow metrics."""
        return {
            "as_of": self.as_of.isoformat(),
            "alerts": len(self.alerts),
            "actions": {a.use_case: a.kind for a in self.actions},
            "status": {u.use_case: u.status for u in self.use_cases},
        }


__all__ = [
    "EMPTY_STATS",
    "AnomalyFlag",
    "Bins",
    "CategoryCounts",
    "Granularity",
    "MonitoringInputs",
    "MonitoringReport",
    "SeriesResult",
    "Status",
    "UseCaseReport",
]
