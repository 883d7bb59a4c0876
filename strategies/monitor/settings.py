"""What a monitoring night looks at: fields, metrics, windows and thresholds, validated.

The TOML file (``monitoring.toml``) is parsed by :mod:`tasks.monitoring.config`; this module holds
the typed result, so the analysis in :mod:`strategies.monitor.analysis` needs no I/O.

Windows for a night ``as_of`` (UTC days, inclusive): *current* is the last ``current_days`` days
ending at ``as_of``; *reference* is the ``reference_days`` days before it, so it always ends the
day before the current window and never includes the night judged. Drift compares the two for
the whole use case; the degradation rules compare the production configuration's current window
with its own reference window (its baseline).

Example:
    >>> import datetime as dt
    >>> w = Windows.for_night(dt.date(2026, 11, 15), MonitoringConfig(reference_days=7))
    >>> (w.reference_start, w.reference_end, w.current_start, w.current_end)
    (datetime.date(2026, 11, 8), datetime.date(2026, 11, 14), datetime.date(2026, 11, 15), \
datetime.date(2026, 11, 15))
    >>> MonitoringConfig(numeric_fields=("prompt_length",))
    Traceback (most recent call last):
    ...
    ValueError: monitoring: unknown numeric field 'prompt_length'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from strategies.monitor.anomaly import AnomalyThresholds
from strategies.monitor.change import (
    AdwinDetector,
    ChangeDetector,
    CusumDetector,
    PageHinkleyDetector,
)
from strategies.monitor.degradation import DegradationRules, RecoveryPolicy
from strategies.monitor.drift import DriftThresholds

NUMERIC_FIELDS = ("input_tokens", "output_tokens", "latency_ms", "ttft_ms", "quality", "cost_usd")
CATEGORICAL_FIELDS = ("model", "task_type", "language", "user_segment", "region", "prompt_id")
SERIES_METRIC_NAMES = ("quality", "success_rate", "cost_per_request", "latency_p95", "requests")
Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True, kw_only=True)
class NotifierConfig:
    """Where alerts go besides the log.

    Args:
        urls: Apprise URLs (none: the log only).
        min_severity: the lowest severity sent through Apprise.
        title_prefix: the start of every message title.
    """

    urls: tuple[str, ...] = ()
    min_severity: Severity = "warning"
    title_prefix: str = "[llmopt]"

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITY_RANK:
            raise ValueError(f"notifier: unknown min_severity {self.min_severity!r}")


@dataclass(frozen=True, kw_only=True)
class MonitoringConfig:
    """Parsed ``monitoring.toml`` (see that file for the meaning of every key).

    Raises:
        ValueError: a window shorter than a day, ``series_days <= reference_days``, or an
            unknown field or metric name.
    """

    reference_days: int = 14
    current_days: int = 1
    series_days: int = 28
    alert_window_days: int = 3
    hourly: bool = False
    hourly_days: int = 7
    numeric_fields: tuple[str, ...] = ("input_tokens", "output_tokens", "latency_ms", "quality")
    categorical_fields: tuple[str, ...] = ("model", "task_type", "language")
    quantile_bins: int = 100
    drift: DriftThresholds = field(default_factory=lambda: DriftThresholds(min_rows=100))
    change_metrics: tuple[str, ...] = ("quality", "success_rate", "cost_per_request", "latency_p95")
    change_min_votes: int = 2
    change_tolerance: int = 3
    min_relative_scale: float = 0.02
    adwin: Mapping[str, float] = field(default_factory=dict)
    page_hinkley: Mapping[str, float] = field(default_factory=dict)
    cusum: Mapping[str, float] = field(default_factory=dict)
    anomaly: AnomalyThresholds = field(default_factory=AnomalyThresholds)
    alert_on_anomalies: bool = False
    rules: DegradationRules = field(default_factory=DegradationRules)
    policy: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    use_case_rules: Mapping[str, DegradationRules] = field(default_factory=dict)
    use_case_policy: Mapping[str, RecoveryPolicy] = field(default_factory=dict)
    production_config_ids: Mapping[str, str] = field(default_factory=dict)
    notifier: NotifierConfig = field(default_factory=NotifierConfig)

    def __post_init__(self) -> None:
        if self.reference_days < 1 or self.current_days < 1:
            raise ValueError("monitoring: reference_days and current_days must be >= 1")
        if self.series_days <= self.reference_days:
            raise ValueError("monitoring: series_days must exceed reference_days")
        for name in self.numeric_fields:
            if name not in NUMERIC_FIELDS:
                raise ValueError(f"monitoring: unknown numeric field {name!r}")
        for name in self.categorical_fields:
            if name not in CATEGORICAL_FIELDS:
                raise ValueError(f"monitoring: unknown categorical field {name!r}")
        for name in self.change_metrics:
            if name not in SERIES_METRIC_NAMES:
                raise ValueError(f"monitoring: unknown series metric {name!r}")

    def rules_for(self, use_case: str) -> DegradationRules:
        """The degradation rules of ``use_case`` (its override, else the defaults)."""
        return self.use_case_rules.get(use_case, self.rules)

    def policy_for(self, use_case: str) -> RecoveryPolicy:
        """The recovery policy of ``use_case`` (its override, else the defaults)."""
        return self.use_case_policy.get(use_case, self.policy)

    def detectors(self) -> list[ChangeDetector]:
        """Fresh ADWIN, Page-Hinkley and CUSUM detectors with the configured arguments."""
        return [
            AdwinDetector(**dict[str, Any](self.adwin)),
            PageHinkleyDetector(**dict[str, Any](self.page_hinkley)),
            CusumDetector(**dict[str, Any](self.cusum)),
        ]


@dataclass(frozen=True, kw_only=True)
class Windows:
    """The reference and current windows of one night (UTC days, both ends inclusive)."""

    as_of: dt.date
    reference_start: dt.date
    reference_end: dt.date
    current_start: dt.date
    current_end: dt.date

    def __post_init__(self) -> None:
        if self.current_start <= self.reference_end:
            raise ValueError(f"the current window must follow the reference window: {self}")

    @classmethod
    def for_night(cls, as_of: dt.date, config: MonitoringConfig) -> Windows:
        """The windows of the night ``as_of``: the reference ends the day before the current.

        Args:
            as_of: the night judged (the last day of the current window).
            config: supplies ``current_days`` and ``reference_days``.

        Returns:
            The night's :class:`Windows`.
        """
        current_start = as_of - dt.timedelta(days=config.current_days - 1)
        reference_end = current_start - dt.timedelta(days=1)
        reference_start = reference_end - dt.timedelta(days=config.reference_days - 1)
        return cls(
            as_of=as_of,
            reference_start=reference_start,
            reference_end=reference_end,
            current_start=current_start,
            current_end=as_of,
        )


def series_range(as_of: dt.date, config: MonitoringConfig) -> tuple[dt.date, dt.date]:
    """First and last day of the daily series the change detectors read.

    Args:
        as_of: the night judged.
        config: supplies ``series_days``.

    Returns:
        ``(first, last)`` days, both inclusive; ``last`` is ``as_of``.
    """
    return as_of - dt.timedelta(days=config.series_days - 1), as_of


def hourly_range(as_of: dt.date, config: MonitoringConfig) -> tuple[dt.datetime, dt.datetime]:
    """First and last UTC hour (naive, both inclusive) of the hourly series.

    Args:
        as_of: the night judged.
        config: supplies ``hourly_days``.

    Returns:
        ``(first hour, last hour)``.
    """
    first = dt.datetime.combine(as_of - dt.timedelta(days=config.hourly_days - 1), dt.time(0))
    return first, dt.datetime.combine(as_of, dt.time(23))


__all__ = [
    "CATEGORICAL_FIELDS",
    "NUMERIC_FIELDS",
    "SERIES_METRIC_NAMES",
    "SEVERITY_RANK",
    "MonitoringConfig",
    "NotifierConfig",
    "Severity",
    "Windows",
    "hourly_range",
    "series_range",
]
