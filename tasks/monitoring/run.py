"""Nightly monitoring I/O: DuckDB aggregates in, alerts and decisions out.

Rows stay in DuckDB. For each use case and night this module asks the warehouse for small
aggregates only: binned counts per numeric field (fine quantile bins of both windows, so no bin
holds more than ``1/quantile_bins`` of either; an ``ASOF`` join does the binning), counts per
category, daily (and optionally hourly) metric series, and the sufficient statistics of the
production configuration. A night's run fetches them for all its use cases at once
(:func:`fetch_monitoring_inputs`: a constant number of statements grouped by use case, equal to
the per-use-case functions); the analysis then runs per use case on small arrays. The math is in
:mod:`strategies.monitor`; here we store alerts (``monitoring_alerts``), one report row per use
case (``monitoring_runs``), notify (the log always; Apprise URLs from the config when set) and
draw plots.

Windows for a night ``as_of`` (UTC days, inclusive): *current* is the last ``current_days`` days
ending at ``as_of``; *reference* is the ``reference_days`` before it. Drift compares the two for the
whole use case (the traffic view); degradation rules compare the production configuration's
current window with its own reference window (its baseline). Change detectors read the last
``series_days`` days of each metric, standardised on the first ``reference_days`` of them.

Entry points: :func:`run_monitoring` (the nightly flow) and :func:`plot_monitoring`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np

from strategies.monitor.anomaly import AnomalyThresholds, detect_anomalies
from strategies.monitor.change import (
    AdwinDetector,
    ChangeDetector,
    CusumDetector,
    PageHinkleyDetector,
    consensus_changes,
    detect_changes,
    standardise_details,
)
from strategies.monitor.degradation import (
    ACTION_SEVERITY,
    AlertCandidate,
    ApprovedConfig,
    DegradationRules,
    PastAlert,
    RecoveryAction,
    RecoveryPolicy,
    RuleEvaluation,
    Suppressed,
    WindowStats,
    decide_recovery,
    deduplicate,
    evaluate_rules,
    hold_open_incident,
)
from strategies.monitor.drift import (
    DriftResult,
    DriftThresholds,
    categorical_drift,
    numeric_drift,
)
from tasks.core.config import ConfigError, load_config
from tasks.core.settings import REPO_ROOT, Settings
from tasks.plots.canvas import PlacedText, draw_legend, draw_texts, nice_ticks, panel_transform

LOG = logging.getLogger("llmopt.monitoring")
MONITORING_SCHEMA = REPO_ROOT / "data" / "monitoring_schema.sql"

NUMERIC_FIELDS = ("input_tokens", "output_tokens", "latency_ms", "ttft_ms", "quality", "cost_usd")
CATEGORICAL_FIELDS = ("model", "task_type", "language", "user_segment", "region", "prompt_id")
SERIES_METRICS = {
    "quality": "avg(quality)",
    "success_rate": "avg(CASE WHEN status = 'success' THEN 1.0 ELSE 0.0 END)",
    "cost_per_request": "avg(cost_usd)",
    "latency_p95": "quantile_cont(latency_ms, 0.95)",
    "requests": "count(*)::DOUBLE",
}
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifierConfig:
    urls: tuple[str, ...] = ()
    min_severity: Literal["info", "warning", "critical"] = "warning"
    title_prefix: str = "[llmopt]"


@dataclass(frozen=True)
class MonitoringConfig:
    """Parsed ``monitoring.toml`` (see that file for the meaning of every key)."""

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
            raise ConfigError("monitoring: reference_days and current_days must be >= 1")
        if self.series_days <= self.reference_days:
            raise ConfigError("monitoring: series_days must exceed reference_days")
        for name in self.numeric_fields:
            if name not in NUMERIC_FIELDS:
                raise ConfigError(f"monitoring: unknown numeric field {name!r}")
        for name in self.categorical_fields:
            if name not in CATEGORICAL_FIELDS:
                raise ConfigError(f"monitoring: unknown categorical field {name!r}")
        for name in self.change_metrics:
            if name not in SERIES_METRICS:
                raise ConfigError(f"monitoring: unknown series metric {name!r}")

    def rules_for(self, use_case: str) -> DegradationRules:
        return self.use_case_rules.get(use_case, self.rules)

    def policy_for(self, use_case: str) -> RecoveryPolicy:
        return self.use_case_policy.get(use_case, self.policy)

    def detectors(self) -> list[ChangeDetector]:
        return [
            AdwinDetector(**dict[str, Any](self.adwin)),
            PageHinkleyDetector(**dict[str, Any](self.page_hinkley)),
            CusumDetector(**dict[str, Any](self.cusum)),
        ]


def _build(cls: type[Any], raw: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"monitoring.toml [{where}]: unknown keys {sorted(unknown)}")
    try:
        return cls(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"monitoring.toml [{where}]: {exc}") from exc


def parse_monitoring_config(raw: Mapping[str, Any]) -> MonitoringConfig:
    """Turn the TOML dict into a :class:`MonitoringConfig`; unknown keys are errors, not ignored."""
    windows = dict(raw.get("windows", {}))
    drift = dict(raw.get("drift", {}))
    change = dict(raw.get("change", {}))
    anomaly = dict(raw.get("anomaly", {}))
    base_rules = dict(raw.get("rules", {}))
    base_policy = dict(raw.get("policy", {}))
    use_case_rules: dict[str, DegradationRules] = {}
    use_case_policy: dict[str, RecoveryPolicy] = {}
    production: dict[str, str] = {}
    for name, raw_section in dict(raw.get("use_cases", {})).items():
        section = dict(raw_section)
        if "production_config_id" in section:
            production[name] = str(section.pop("production_config_id"))
        use_case_rules[name] = _build(
            DegradationRules, {**base_rules, **section.pop("rules", {})}, f"use_cases.{name}.rules"
        )
        use_case_policy[name] = _build(
            RecoveryPolicy, {**base_policy, **section.pop("policy", {})}, f"use_cases.{name}.policy"
        )
        if section:
            raise ConfigError(f"monitoring.toml [use_cases.{name}]: unknown keys {sorted(section)}")
    notifier = dict(raw.get("notifier", {}))
    notifier["urls"] = tuple(notifier.get("urls", ()))
    drift_fields: dict[str, Any] = {
        "numeric_fields": tuple(drift.pop("numeric", MonitoringConfig.numeric_fields)),
        "categorical_fields": tuple(drift.pop("categorical", MonitoringConfig.categorical_fields)),
        "quantile_bins": int(drift.pop("quantile_bins", 100)),
    }
    drift.setdefault("min_rows", 100)
    change_fields: dict[str, Any] = {
        "change_metrics": tuple(change.pop("metrics", MonitoringConfig.change_metrics)),
        "change_min_votes": int(change.pop("min_votes", 2)),
        "change_tolerance": int(change.pop("tolerance", 3)),
        "min_relative_scale": float(change.pop("min_relative_scale", 0.02)),
        "adwin": dict(change.pop("adwin", {})),
        "page_hinkley": dict(change.pop("page_hinkley", {})),
        "cusum": dict(change.pop("cusum", {})),
    }
    if change:
        raise ConfigError(f"monitoring.toml [change]: unknown keys {sorted(change)}")
    alert_on_anomalies = bool(anomaly.pop("alert", False))
    try:
        config = MonitoringConfig(
            **windows,
            **drift_fields,
            drift=_build(DriftThresholds, drift, "drift"),
            **change_fields,
            anomaly=_build(AnomalyThresholds, anomaly, "anomaly"),
            alert_on_anomalies=alert_on_anomalies,
            rules=_build(DegradationRules, base_rules, "rules"),
            policy=_build(RecoveryPolicy, base_policy, "policy"),
            use_case_rules=use_case_rules,
            use_case_policy=use_case_policy,
            production_config_ids=production,
            notifier=_build(NotifierConfig, notifier, "notifier"),
        )
        config.detectors()  # fail now on bad detector keys, not in the middle of the night
    except TypeError as exc:
        raise ConfigError(f"monitoring.toml: {exc}") from exc
    return config


def load_monitoring_config(settings: Settings | None = None) -> MonitoringConfig:
    """Read ``<config_dir>/monitoring.toml`` (all defaults when the file is absent)."""
    try:
        raw = load_config("monitoring", settings)
    except ConfigError as exc:
        if "not found" not in str(exc):
            raise
        raw = {}
    return parse_monitoring_config(raw)


# --------------------------------------------------------------------------------------------
# schema and SQL aggregates
# --------------------------------------------------------------------------------------------


def apply_monitoring_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the monitoring tables if missing (until the lead lists the file in SCHEMA_FILES)."""
    con.execute(MONITORING_SCHEMA.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Windows:
    as_of: dt.date
    reference_start: dt.date
    reference_end: dt.date
    current_start: dt.date
    current_end: dt.date

    @classmethod
    def for_night(cls, as_of: dt.date, config: MonitoringConfig) -> Windows:
        current_start = as_of - dt.timedelta(days=config.current_days - 1)
        reference_end = current_start - dt.timedelta(days=1)
        reference_start = reference_end - dt.timedelta(days=config.reference_days - 1)
        return cls(as_of, reference_start, reference_end, current_start, as_of)


def _binned_counts_sql(column: str) -> str:
    if column not in NUMERIC_FIELDS:
        raise ValueError(f"not a monitored numeric field: {column}")
    return f"""
WITH ref AS (
    SELECT CAST({column} AS DOUBLE) AS x FROM usage_logs
    WHERE use_case = $use_case AND day BETWEEN $ref_start AND $ref_end AND {column} IS NOT NULL
), cur AS (
    SELECT CAST({column} AS DOUBLE) AS x FROM usage_logs
    WHERE use_case = $use_case AND day BETWEEN $cur_start AND $cur_end AND {column} IS NOT NULL
), both_windows AS (
    SELECT x, 0 AS w FROM ref UNION ALL SELECT x, 1 AS w FROM cur
), edges AS (
    SELECT DISTINCT edge FROM (
        SELECT unnest(quantile_disc(x, $levels)) AS edge FROM ref
        UNION ALL SELECT unnest(quantile_disc(x, $levels)) FROM cur
        UNION ALL SELECT min(x) FROM both_windows
        UNION ALL SELECT max(x) FROM both_windows
    ) WHERE edge IS NOT NULL
), counts AS (
    -- each row lands in the bin whose upper edge is the smallest edge >= x
    SELECT e.edge, count(*) FILTER (WHERE b.w = 0) AS ref_n,
           count(*) FILTER (WHERE b.w = 1) AS cur_n
    FROM both_windows b ASOF JOIN edges e ON b.x <= e.edge
    GROUP BY e.edge
)
SELECT e.edge, coalesce(c.ref_n, 0) AS ref_n, coalesce(c.cur_n, 0) AS cur_n
FROM edges e LEFT JOIN counts c USING (edge)
ORDER BY e.edge
"""


def numeric_bins(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    column: str,
    windows: Windows,
    *,
    quantile_bins: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper bin edges and per-window counts of one numeric field (binning done in DuckDB)."""
    levels = [i / quantile_bins for i in range(1, quantile_bins)]
    rows = con.execute(
        _binned_counts_sql(column),
        {
            "use_case": use_case,
            "ref_start": windows.reference_start,
            "ref_end": windows.reference_end,
            "cur_start": windows.current_start,
            "cur_end": windows.current_end,
            "levels": levels,
        },
    ).fetchall()
    if not rows:
        empty = np.zeros(0)
        return empty, empty, empty
    array = np.asarray(rows, dtype=float)
    return array[:, 0], array[:, 1], array[:, 2]


def categorical_counts(
    con: duckdb.DuckDBPyConnection, use_case: str, column: str, windows: Windows
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Counts per category (missing values are the category ``(missing)``) in both windows."""
    if column not in CATEGORICAL_FIELDS:
        raise ValueError(f"not a monitored categorical field: {column}")
    rows = con.execute(
        f"""
        SELECT coalesce(CAST({column} AS VARCHAR), '(missing)') AS category,
               count(*) FILTER (WHERE day BETWEEN $ref_start AND $ref_end) AS ref_n,
               count(*) FILTER (WHERE day BETWEEN $cur_start AND $cur_end) AS cur_n
        FROM usage_logs
        WHERE use_case = $use_case AND day BETWEEN $ref_start AND $cur_end
        GROUP BY 1 ORDER BY 1
        """,
        {
            "use_case": use_case,
            "ref_start": windows.reference_start,
            "ref_end": windows.reference_end,
            "cur_start": windows.current_start,
            "cur_end": windows.current_end,
        },
    ).fetchall()
    return (
        [r[0] for r in rows],
        np.asarray([r[1] for r in rows], dtype=float),
        np.asarray([r[2] for r in rows], dtype=float),
    )


def metric_series(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    *,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    granularity: Literal["day", "hour"] = "day",
    config_id: str | None = None,
) -> dict[str, Any]:
    """Per-period metrics of a use case (optionally one configuration) over ``[start, end]``.

    Hourly periods are UTC hours; pass naive UTC datetimes for ``start`` / ``end`` (both
    inclusive hour starts).

    Every period of the range is present; periods without traffic hold ``NaN`` (a missing day
    is not a zero). Keys: ``periods`` (ISO strings) and one float array per metric.
    """
    metrics = ",\n".join(f"{sql} AS {name}" for name, sql in SERIES_METRICS.items())
    if granularity == "day":
        bucket, cast, step = "day", "DATE", "INTERVAL 1 DAY"
        where = "day BETWEEN $start AND $end"
    else:  # hours of UTC time, whatever the session time zone
        bucket, cast, step = (
            "date_trunc('hour', timezone('UTC', ts))",
            "TIMESTAMP",
            "INTERVAL 1 HOUR",
        )
        where = (
            "timezone('UTC', ts) >= CAST($start AS TIMESTAMP)"
            " AND timezone('UTC', ts) < CAST($end AS TIMESTAMP) + INTERVAL 1 HOUR"
        )
    grid = (
        f"SELECT CAST(g AS {cast}) AS period FROM generate_series("
        f"CAST($start AS TIMESTAMP), CAST($end AS TIMESTAMP), {step}) t(g)"
    )
    sql = f"""
    WITH grid AS ({grid}),
    agg AS (
        SELECT {bucket} AS period, {metrics}
        FROM usage_logs
        WHERE use_case = $use_case AND {where} AND ($config_id IS NULL OR config_id = $config_id)
        GROUP BY 1
    )
    SELECT grid.period, {", ".join(f"agg.{name}" for name in SERIES_METRICS)}
    FROM grid LEFT JOIN agg USING (period) ORDER BY grid.period
    """
    rows = con.execute(
        sql, {"use_case": use_case, "start": start, "end": end, "config_id": config_id}
    ).fetchall()
    out: dict[str, Any] = {"periods": [r[0].isoformat() for r in rows]}
    for i, name in enumerate(SERIES_METRICS, start=1):
        out[name] = np.asarray([np.nan if r[i] is None else float(r[i]) for r in rows])
    return out


def window_stats(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    config_id: str | None,
    start: dt.date,
    end: dt.date,
) -> WindowStats:
    """Sufficient statistics of one configuration (or the whole use case) over days [start, end]."""
    row = con.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE status = 'success'), count(quality),
               coalesce(sum(quality), 0), coalesce(sum(quality * quality), 0),
               coalesce(sum(cost_usd), 0), quantile_cont(latency_ms, 0.95)
        FROM usage_logs
        WHERE use_case = $use_case AND day BETWEEN $start AND $end
          AND ($config_id IS NULL OR config_id = $config_id)
        """,
        {"use_case": use_case, "config_id": config_id, "start": start, "end": end},
    ).fetchone()
    assert row is not None  # an aggregate always returns one row
    return _stats_from_row(row)


def infer_production_config(
    con: duckdb.DuckDBPyConnection, use_case: str, start: dt.date, end: dt.date
) -> str | None:
    """The most-served configuration outside experiment treatments (control arms count)."""
    row = con.execute(
        """
        SELECT config_id FROM usage_logs
        WHERE use_case = $use_case AND day BETWEEN $start AND $end AND config_id IS NOT NULL
          AND (variant_id IS NULL OR variant_id = 'control')
        GROUP BY config_id ORDER BY count(*) DESC, config_id LIMIT 1
        """,
        {"use_case": use_case, "start": start, "end": end},
    ).fetchone()
    return None if row is None else str(row[0])


def monitored_use_cases(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> list[str]:
    rows = con.execute(
        "SELECT DISTINCT use_case FROM usage_logs WHERE day BETWEEN $start AND $end ORDER BY 1",
        {"start": start, "end": end},
    ).fetchall()
    return [str(r[0]) for r in rows]


def latest_day(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    row = con.execute("SELECT max(day) FROM usage_logs").fetchone()
    return None if row is None or row[0] is None else row[0]


# --------------------------------------------------------------------------------------------
# batched inputs: every use case of a night in a constant number of statements
# --------------------------------------------------------------------------------------------
#
# The per-use-case functions above filter ``WHERE use_case = ?``; the table is not ordered by
# use case, so each of them reads the whole window again. The functions below compute the same
# aggregates for many use cases at once, each statement grouped by use case (and window), and are
# tested to give exactly the per-use-case functions' results. Statements per night: production
# ids (only when some must be inferred), window stats, daily series, hourly series (when on),
# category counts, bin edges, bin counts.

#: Bin edges of one numeric field a single bin-count statement may hold, summed over its use
#: cases (about 200 per use case): beyond it the use cases are split over several statements, so
#: the histogram states stay small. 20 000 is about 100 use cases per statement.
HISTOGRAM_MAX_EDGES = 20_000


@dataclass(frozen=True, eq=False)
class MonitoringInputs:
    """Everything the analysis of one use case reads from the warehouse for one night.

    Filled for many use cases at once by :func:`fetch_monitoring_inputs`. Each part equals what
    the per-use-case function named beside it returns. (No ``==``: the parts hold arrays.)
    """

    use_case: str
    windows: Windows
    production_config_id: str | None  # known, else infer_production_config over both windows
    current_all: WindowStats  # window_stats(use_case, None, current window)
    baseline: WindowStats | None  # window_stats(use_case, production, reference window)
    current: WindowStats | None  # window_stats(use_case, production, current window)
    numeric: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # numeric_bins per field
    categorical: Mapping[str, tuple[list[str], np.ndarray, np.ndarray]]  # categorical_counts
    daily: Mapping[str, Any]  # metric_series, days of the series_days ending at as_of
    hourly: Mapping[str, Any] | None  # metric_series, UTC hours of hourly_days (config.hourly)


def series_range(as_of: dt.date, config: MonitoringConfig) -> tuple[dt.date, dt.date]:
    """First and last day of the daily series the change detectors read."""
    return as_of - dt.timedelta(days=config.series_days - 1), as_of


def hourly_range(as_of: dt.date, config: MonitoringConfig) -> tuple[dt.datetime, dt.datetime]:
    """First and last UTC hour (naive, both inclusive) of the hourly series."""
    first = dt.datetime.combine(as_of - dt.timedelta(days=config.hourly_days - 1), dt.time(0))
    return first, dt.datetime.combine(as_of, dt.time(23))


def known_production_config(
    use_case: str,
    config: MonitoringConfig,
    *,
    production_config_id: str | None = None,
    approved_configs: Sequence[ApprovedConfig] = (),
) -> str | None:
    """The production configuration when the caller, the registry or the config names it (else
    it is inferred from traffic)."""
    return (
        production_config_id
        or next((c.config_id for c in approved_configs if c.is_production), None)
        or config.production_config_ids.get(use_case)
        or None
    )


def _window_params(windows: Windows) -> dict[str, Any]:
    if windows.current_start <= windows.reference_end:
        raise ValueError(f"the current window must follow the reference window: {windows}")
    return {
        "ref_start": windows.reference_start,
        "ref_end": windows.reference_end,
        "cur_start": windows.current_start,
        "cur_end": windows.current_end,
    }


def _windowed_rows(columns: str) -> str:
    """Rows of ``$use_cases`` in either window, with ``w`` = 0 (reference) or 1 (current)."""
    return f"""
    SELECT use_case, w, {columns} FROM (
        SELECT *, CASE WHEN day BETWEEN $ref_start AND $ref_end THEN 0
                       WHEN day BETWEEN $cur_start AND $cur_end THEN 1 END AS w
        FROM usage_logs
        WHERE list_contains($use_cases, use_case) AND day BETWEEN $ref_start AND $cur_end
    ) WHERE w IS NOT NULL
    """


def _stats_from_row(row: Sequence[Any]) -> WindowStats:
    return WindowStats(
        n=int(row[0]),
        successes=int(row[1]),
        quality_n=int(row[2]),
        quality_sum=float(row[3]),
        quality_sum_squares=float(row[4]),
        cost_sum=float(row[5]),
        latency_p95=None if row[6] is None else float(row[6]),
    )


_EMPTY_STATS = WindowStats(0, 0, 0, 0.0, 0.0, 0.0, None)
_STATS_SQL = """count(*), count(*) FILTER (WHERE status = 'success'), count(quality),
    coalesce(sum(quality), 0), coalesce(sum(quality * quality), 0),
    coalesce(sum(cost_usd), 0), quantile_cont(latency_ms, 0.95)"""


def infer_production_configs(
    con: duckdb.DuckDBPyConnection, use_cases: Sequence[str], start: dt.date, end: dt.date
) -> dict[str, str | None]:
    """:func:`infer_production_config` of many use cases in one statement."""
    names = list(dict.fromkeys(use_cases))
    if not names:
        return {}
    rows = con.execute(
        """
        SELECT use_case, config_id FROM (
            SELECT use_case, config_id, count(*) AS n FROM usage_logs
            WHERE list_contains($use_cases, use_case) AND day BETWEEN $start AND $end
              AND config_id IS NOT NULL AND (variant_id IS NULL OR variant_id = 'control')
            GROUP BY use_case, config_id
        ) QUALIFY row_number() OVER (PARTITION BY use_case ORDER BY n DESC, config_id) = 1
        """,
        {"use_cases": names, "start": start, "end": end},
    ).fetchall()
    found = {str(u): str(c) for u, c in rows}
    return {name: found.get(name) for name in names}


def window_stats_many(
    con: duckdb.DuckDBPyConnection, use_cases: Sequence[str], windows: Windows
) -> dict[tuple[str, str | None, int], WindowStats]:
    """:func:`window_stats` of many use cases in one statement.

    Keys ``(use_case, None, 1)``: the whole use case in the current window; ``(use_case,
    config_id, w)``: each configuration in the reference (``w`` = 0) and current (1) window.
    Combinations without rows are absent (their stats are all zero). Every configuration is
    grouped (a plain filtered scan, like the reference; a join with the production ids could
    change the order rows are summed in, and so the last bits of the sums).
    """
    names = list(dict.fromkeys(use_cases))
    if not names:
        return {}
    columns = "config_id, status, quality, cost_usd, latency_ms"
    rows = con.execute(
        f"""
        SELECT use_case, NULL AS config_id, 1 AS w, {_STATS_SQL}
        FROM usage_logs
        WHERE list_contains($use_cases, use_case) AND day BETWEEN $cur_start AND $cur_end
        GROUP BY use_case
        UNION ALL
        SELECT use_case, config_id, w, {_STATS_SQL}
        FROM ({_windowed_rows(columns)}) WHERE config_id IS NOT NULL
        GROUP BY use_case, config_id, w
        """,
        {"use_cases": names} | _window_params(windows),
    ).fetchall()
    return {
        (str(r[0]), None if r[1] is None else str(r[1]), int(r[2])): _stats_from_row(r[3:])
        for r in rows
    }


def metric_series_many(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    *,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    granularity: Literal["day", "hour"] = "day",
) -> dict[str, dict[str, Any]]:
    """:func:`metric_series` (no config filter) of many use cases in one statement."""
    names = list(dict.fromkeys(use_cases))
    if not names:
        return {}
    metrics = ",\n".join(f"{sql} AS {name}" for name, sql in SERIES_METRICS.items())
    if granularity == "day":
        bucket, cast, step = "day", "DATE", "INTERVAL 1 DAY"
        where = "day BETWEEN $start AND $end"
    else:  # UTC hours; the bound on ts itself (not on timezone(ts)) lets the scan skip row groups
        bucket, cast, step = (
            "date_trunc('hour', timezone('UTC', ts))",
            "TIMESTAMP",
            "INTERVAL 1 HOUR",
        )
        where = (
            "ts >= timezone('UTC', CAST($start AS TIMESTAMP))"
            " AND ts < timezone('UTC', CAST($end AS TIMESTAMP) + INTERVAL 1 HOUR)"
        )
    sql = f"""
    WITH grid AS (
        SELECT u.use_case, CAST(g AS {cast}) AS period
        FROM (SELECT unnest($use_cases) AS use_case) u,
             generate_series(CAST($start AS TIMESTAMP), CAST($end AS TIMESTAMP), {step}) t(g)
    ), agg AS (
        SELECT use_case, {bucket} AS period, {metrics}
        FROM usage_logs
        WHERE list_contains($use_cases, use_case) AND {where}
        GROUP BY 1, 2
    )
    SELECT grid.use_case, grid.period, {", ".join(f"agg.{name}" for name in SERIES_METRICS)}
    FROM grid LEFT JOIN agg USING (use_case, period) ORDER BY grid.use_case, grid.period
    """
    rows = con.execute(sql, {"use_cases": names, "start": start, "end": end}).fetchall()
    by_use_case: dict[str, list[Any]] = {name: [] for name in names}
    for row in rows:
        by_use_case[str(row[0])].append(row)
    out: dict[str, dict[str, Any]] = {}
    for name, items in by_use_case.items():
        series: dict[str, Any] = {"periods": [r[1].isoformat() for r in items]}
        for i, metric in enumerate(SERIES_METRICS, start=2):
            series[metric] = np.asarray(
                [np.nan if r[i] is None else float(r[i]) for r in items], dtype=float
            )
        out[name] = series
    return out


def categorical_counts_many(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    columns: Sequence[str],
    windows: Windows,
) -> dict[str, dict[str, tuple[list[str], np.ndarray, np.ndarray]]]:
    """:func:`categorical_counts` of many use cases and fields in one statement (one pass:
    a grouping set per field)."""
    names = list(dict.fromkeys(use_cases))
    fields = list(dict.fromkeys(columns))
    for column in fields:
        if column not in CATEGORICAL_FIELDS:
            raise ValueError(f"not a monitored categorical field: {column}")
    empty = (list[str](), np.zeros(0), np.zeros(0))
    out = {name: dict.fromkeys(fields, empty) for name in names}
    if not names or not fields:
        return out
    aliases = [f"c{i}" for i in range(len(fields))]
    categories = ", ".join(
        f"coalesce(CAST({column} AS VARCHAR), '(missing)') AS {alias}"
        for column, alias in zip(fields, aliases, strict=True)
    )
    # in each grouping set exactly one alias is grouped (never NULL: coalesced above)
    rows = con.execute(
        f"""
        SELECT use_case, GROUPING({", ".join(aliases)}) AS g, coalesce({", ".join(aliases)}),
               count(*) FILTER (WHERE w = 0), count(*) FILTER (WHERE w = 1),
               {", ".join(f"{a} IS NOT NULL" for a in aliases)}
        FROM ({_windowed_rows(categories)})
        GROUP BY GROUPING SETS ({", ".join(f"(use_case, {a})" for a in aliases)})
        ORDER BY use_case, g, 3
        """,
        {"use_cases": names} | _window_params(windows),
    ).fetchall()
    collected: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for row in rows:
        column = fields[list(row[5:]).index(True)]
        collected.setdefault((str(row[0]), column), []).append((str(row[2]), row[3], row[4]))
    for (name, column), items in collected.items():
        out[name][column] = (
            [c for c, _, _ in items],
            np.asarray([r for _, r, _ in items], dtype=float),
            np.asarray([c for _, _, c in items], dtype=float),
        )
    return out


def numeric_bins_many(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    columns: Sequence[str],
    windows: Windows,
    *,
    quantile_bins: int = 100,
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """:func:`numeric_bins` of many use cases and fields, in two passes over the windows.

    1. Edges per use case and field: the reference and current quantiles (``quantile_disc``
       grouped by use case and window) plus the minimum and maximum, distinct and sorted.
    2. Counts: one ``histogram`` per field and (use case, window) over the union of all the use
       cases' edges of the field (a constant list, so DuckDB bins each row by binary search).
       Every use case's own edges are among them and none of its rows lies below its first edge
       or above its last, so summing the union's bins between two consecutive edges of the use
       case gives exactly its bin count (each row in the bin of the smallest edge >= it, as the
       ``ASOF`` join does). Only non-empty bins come back.
    """
    names = list(dict.fromkeys(use_cases))
    fields = list(dict.fromkeys(columns))
    for column in fields:
        if column not in NUMERIC_FIELDS:
            raise ValueError(f"not a monitored numeric field: {column}")
    empty = (np.zeros(0), np.zeros(0), np.zeros(0))
    out = {name: dict.fromkeys(fields, empty) for name in names}
    if not names or not fields:
        return out
    params = _window_params(windows)
    aliases = [f"x{i}" for i in range(len(fields))]
    value_of = {
        alias: f"CAST({column} AS DOUBLE) AS {alias}"
        for column, alias in zip(fields, aliases, strict=True)
    }
    # quantiles per (use case, window), then their union per use case (faster than a FILTER
    # per window). Levels 0 and 1 are each window's minimum and maximum (quantile_disc's
    # index is exactly 0 and n - 1 there, and cheaper than min() and max() beside it): only
    # the smaller minimum and the larger maximum are edges. list_distinct drops the NULLs of
    # windows without values.
    per_window = ", ".join(f"quantile_disc({a}, $levels) AS q_{a}" for a in aliases)
    edge_lists = ", ".join(
        f"list_sort(list_distinct(flatten(list(q_{a}[2:-2])) || [min(q_{a}[1]), max(q_{a}[-1])]))"
        for a in aliases
    )
    levels = [0.0] + [i / quantile_bins for i in range(1, quantile_bins)] + [1.0]
    rows = con.execute(
        f"""
        WITH q AS (
            SELECT use_case, w, {per_window}
            FROM ({_windowed_rows(", ".join(value_of.values()))})
            GROUP BY use_case, w
        )
        SELECT use_case, {edge_lists} FROM q GROUP BY use_case
        """,
        {"use_cases": names, "levels": levels} | params,
    ).fetchall()
    edges = {
        (str(row[0]), column): np.asarray(row[1 + i] or [], dtype=float)
        for row in rows
        for i, column in enumerate(fields)
    }
    # use cases in statements of at most HISTOGRAM_MAX_EDGES edges per field
    chunks: list[list[str]] = [[]]
    sizes = dict.fromkeys(fields, 0)
    for name in sorted({u for u, _ in edges}):
        add = {c: edges[(name, c)].size for c in fields}
        if chunks[-1] and any(sizes[c] + add[c] > HISTOGRAM_MAX_EDGES for c in fields):
            chunks.append([])
            sizes = dict.fromkeys(fields, 0)
        chunks[-1].append(name)
        sizes = {c: sizes[c] + add[c] for c in fields}
    counts: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
    for chunk in chunks:
        if not chunk:
            continue
        bounds = {
            a: sorted({float(e) for name in chunk for e in edges[(name, c)]})
            for c, a in zip(fields, aliases, strict=True)
        }
        used = [a for a in aliases if bounds[a]]
        if not used:
            continue
        histograms = ", ".join(f"histogram({a}, $b_{a}) AS h_{a}" for a in used)
        nonempty = ", ".join(
            f"[e.key FOR e IN map_entries(h_{a}) IF e.value > 0],"
            f" [e.value FOR e IN map_entries(h_{a}) IF e.value > 0]"
            for a in used
        )
        hist_rows = con.execute(
            f"""
            WITH h AS (
                SELECT use_case, w, {histograms}
                FROM ({_windowed_rows(", ".join(value_of[a] for a in used))})
                GROUP BY use_case, w
            )
            SELECT use_case, w, {nonempty} FROM h
            """,
            {"use_cases": chunk} | {f"b_{a}": bounds[a] for a in used} | params,
        ).fetchall()
        for row in hist_rows:
            for i, a in enumerate(used):
                keys, n = row[2 + 2 * i], row[3 + 2 * i]
                counts[(str(row[0]), fields[aliases.index(a)], int(row[1]))] = (
                    np.asarray(keys or [], dtype=float),
                    np.asarray(n or [], dtype=np.int64),
                )
    for (name, column), e in edges.items():
        if e.size == 0:
            continue
        binned = []
        for w in (0, 1):
            keys, n = counts.get((name, column, w), (np.zeros(0), np.zeros(0, dtype=np.int64)))
            # rows <= each edge, then per bin (previous edge, edge]
            cumulative = np.concatenate(([0], np.cumsum(n)))
            at_edges = cumulative[np.searchsorted(keys, e, side="right")]
            binned.append(np.diff(at_edges, prepend=0).astype(float))
        out[name][column] = (e, binned[0], binned[1])
    return out


def fetch_monitoring_inputs(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    *,
    as_of: dt.date,
    config: MonitoringConfig,
    production_configs: Mapping[str, str | None] | None = None,
) -> dict[str, MonitoringInputs]:
    """The night's monitoring inputs of every use case in ``use_cases``, in a constant number of
    statements (each grouped by use case), whatever their number.

    ``production_configs`` gives the known production configuration per use case (see
    :func:`known_production_config`); the others are inferred from traffic, all in one
    statement.
    """
    names = list(dict.fromkeys(use_cases))
    if not names:
        return {}
    windows = Windows.for_night(as_of, config)
    production: dict[str, str | None] = {
        name: (production_configs or {}).get(name) or None for name in names
    }
    unknown = [name for name, c in production.items() if c is None]
    if unknown:
        production |= infer_production_configs(
            con, unknown, windows.reference_start, windows.current_end
        )
    stats = window_stats_many(con, names, windows)
    series_start, series_end = series_range(as_of, config)
    daily = metric_series_many(con, names, start=series_start, end=series_end)
    hourly: dict[str, dict[str, Any]] = {}
    if config.hourly:
        h_start, h_end = hourly_range(as_of, config)
        hourly = metric_series_many(con, names, start=h_start, end=h_end, granularity="hour")
    numeric = numeric_bins_many(
        con, names, config.numeric_fields, windows, quantile_bins=config.quantile_bins
    )
    categorical = categorical_counts_many(con, names, config.categorical_fields, windows)
    out: dict[str, MonitoringInputs] = {}
    for name in names:
        config_id = production[name]
        out[name] = MonitoringInputs(
            use_case=name,
            windows=windows,
            production_config_id=config_id,
            current_all=stats.get((name, None, 1), _EMPTY_STATS),
            baseline=None if config_id is None else stats.get((name, config_id, 0), _EMPTY_STATS),
            current=None if config_id is None else stats.get((name, config_id, 1), _EMPTY_STATS),
            numeric=numeric[name],
            categorical=categorical[name],
            daily=daily[name],
            hourly=hourly.get(name) if config.hourly else None,
        )
    return out


# --------------------------------------------------------------------------------------------
# report types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnomalyFlag:
    metric: str
    period: str
    value: float
    z_score: float
    iqr_distance: float
    mad_score: float
    methods: tuple[str, ...]


@dataclass(frozen=True)
class SeriesResult:
    """One metric series of one use case with its change points and anomalies."""

    metric: str
    granularity: Literal["day", "hour"]
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


@dataclass(frozen=True)
class UseCaseReport:
    use_case: str
    as_of: dt.date
    status: Literal["ok", "warning", "critical", "no_data"]
    reference_window: tuple[dt.date, dt.date]
    current_window: tuple[dt.date, dt.date]
    production_config_id: str | None
    drift: tuple[DriftResult, ...]
    series: tuple[SeriesResult, ...]
    rules: tuple[RuleEvaluation, ...]
    alerts: tuple[AlertCandidate, ...]
    suppressed: tuple[Suppressed, ...]
    action: RecoveryAction | None
    notes: tuple[str, ...] = ()

    @property
    def drifted_fields(self) -> tuple[str, ...]:
        return tuple(d.feature for d in self.drift if d.drift_detected)


@dataclass(frozen=True)
class MonitoringReport:
    """Everything one monitoring run found; JSON-serialisable via ``flows.cli_support``."""

    run_id: str
    as_of: dt.date
    use_cases: tuple[UseCaseReport, ...]
    alerts_stored: int
    notified: tuple[str, ...]

    @property
    def actions(self) -> tuple[RecoveryAction, ...]:
        return tuple(u.action for u in self.use_cases if u.action is not None)

    @property
    def alerts(self) -> tuple[AlertCandidate, ...]:
        return tuple(a for u in self.use_cases for a in u.alerts)

    def summary(self) -> dict[str, Any]:
        """Small dict for logs / MLflow metrics."""
        return {
            "as_of": self.as_of.isoformat(),
            "alerts": len(self.alerts),
            "actions": {a.use_case: a.kind for a in self.actions},
            "status": {u.use_case: u.status for u in self.use_cases},
        }


# --------------------------------------------------------------------------------------------
# analysis of one use case
# --------------------------------------------------------------------------------------------


def analyse_series(
    metric: str,
    periods: Sequence[str],
    values: np.ndarray,
    config: MonitoringConfig,
    *,
    granularity: Literal["day", "hour"] = "day",
    reference_length: int | None = None,
) -> SeriesResult:
    """Change points (consensus of the three detectors) and anomalies of one series.

    Periods without data are skipped (not imputed). The first ``reference_length`` present
    points set the standardisation; with fewer than that plus one, the series is not analysable.
    """
    ref_len = reference_length or config.reference_days
    raw = tuple(None if not math.isfinite(v) else float(v) for v in values)
    present = [i for i, v in enumerate(raw) if v is not None]
    kept_periods = [periods[i] for i in present]
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
    hits: dict[str, list[int]] = {}
    for detector in config.detectors():
        hits[detector.name] = detect_changes(detector, std.values)
    changes = consensus_changes(
        hits, min_votes=config.change_min_votes, tolerance=config.change_tolerance
    )
    # changes inside the reference part are old news; report them, alert only on recent ones
    recent_from = len(x) - config.alert_window_days
    scores = detect_anomalies(x[ref_len:], reference=x[:ref_len], thresholds=config.anomaly)
    anomalies = tuple(
        AnomalyFlag(
            metric,
            kept_periods[ref_len + i],
            s.value,
            s.z_score,
            s.iqr_distance,
            s.mad_score,
            s.methods,
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
        detector_hits={k: tuple(kept_periods[i] for i in v) for k, v in hits.items()},
        change_points=tuple(kept_periods[i] for i in changes),
        recent_change_points=tuple(kept_periods[i] for i in changes if i >= recent_from),
        anomalies=anomalies,
    )


def _drift_results(inputs: MonitoringInputs, config: MonitoringConfig) -> list[DriftResult]:
    results: list[DriftResult] = []
    for column in config.numeric_fields:
        edges, ref, cur = inputs.numeric[column]
        results.append(numeric_drift(column, edges, ref, cur, thresholds=config.drift))
    for column in config.categorical_fields:
        categories, ref, cur = inputs.categorical[column]
        results.append(categorical_drift(column, categories, ref, cur, thresholds=config.drift))
    return results


def _alert_candidates(
    use_case: str,
    *,
    windows: Windows,
    drift: Sequence[DriftResult],
    series: Sequence[SeriesResult],
    rules: Sequence[RuleEvaluation],
    action: RecoveryAction | None,
    config: MonitoringConfig,
) -> list[AlertCandidate]:
    """One alert per fired rule, one per use case for drift / change / anomaly (listing fields)."""
    out: list[AlertCandidate] = []
    for rule in rules:
        if not rule.fired:
            continue
        acting = action is not None and action.rule == rule.rule
        critical = acting and action is not None and ACTION_SEVERITY[action.kind] >= 2
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
                    "action": action.kind if acting and action else None,
                    "target_config_id": action.target_config_id if acting and action else None,
                },
            )
        )
    drifted = [d for d in drift if d.drift_detected]
    if drifted:
        out.append(
            AlertCandidate(
                incident_key=f"{use_case}|drift",
                use_case=use_case,
                kind="drift",
                name="drift",
                severity="warning",
                message=f"{use_case}: distribution drift on "
                f"{windows.current_start}..{windows.as_of} "
                f"vs the {config.reference_days} days before: "
                + "; ".join(f"{d.feature}: {d.reason}" for d in drifted),
                details={d.feature: d.psi for d in drifted},
            )
        )
    changed = [s for s in series if s.recent_change_points]
    if changed:
        out.append(
            AlertCandidate(
                incident_key=f"{use_case}|change",
                use_case=use_case,
                kind="change",
                name="change",
                severity="warning",
                message=f"{use_case}: change detected in "
                + ", ".join(
                    f"{s.metric} ({s.granularity}) at {s.recent_change_points[-1]}" for s in changed
                ),
                details={s.metric: s.recent_change_points[-1] for s in changed},
            )
        )
    last_period = {s.metric: s.periods[-1] if s.periods else None for s in series}
    today = [a for s in series for a in s.anomalies if a.period == last_period.get(a.metric)]
    if config.alert_on_anomalies and today:
        out.append(
            AlertCandidate(
                incident_key=f"{use_case}|anomaly",
                use_case=use_case,
                kind="anomaly",
                name="anomaly",
                severity="info",
                message=f"{use_case}: anomalous "
                + ", ".join(f"{a.metric}={a.value:.4g} ({'+'.join(a.methods)})" for a in today),
                details={a.metric: a.value for a in today},
            )
        )
    return out


def _check_inputs(
    inputs: MonitoringInputs, use_case: str, windows: Windows, config: MonitoringConfig
) -> None:
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


def analyse_use_case(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    *,
    as_of: dt.date,
    config: MonitoringConfig,
    history: Sequence[PastAlert] = (),
    approved_configs: Sequence[ApprovedConfig] = (),
    production_config_id: str | None = None,
    inputs: MonitoringInputs | None = None,
) -> UseCaseReport:
    """Drift, change points, anomalies, rules, deduplicated alerts and the recovery action.

    ``inputs`` are the use case's warehouse aggregates when already fetched (for many use cases
    at once by :func:`fetch_monitoring_inputs`, with the same production configuration);
    without them they are fetched here for this use case alone.
    """
    windows = Windows.for_night(as_of, config)
    notes: list[str] = []
    if inputs is None:
        known_id = known_production_config(
            use_case,
            config,
            production_config_id=production_config_id,
            approved_configs=approved_configs,
        )
        inputs = fetch_monitoring_inputs(
            con, [use_case], as_of=as_of, config=config, production_configs={use_case: known_id}
        )[use_case]
    _check_inputs(inputs, use_case, windows, config)
    production = inputs.production_config_id
    inferred = production_config_id is None and use_case not in config.production_config_ids
    if inferred and not any(c.is_production for c in approved_configs):
        notes.append(f"production configuration inferred from traffic: {production}")
    if inputs.current_all.n == 0:
        return UseCaseReport(
            use_case,
            as_of,
            "no_data",
            (windows.reference_start, windows.reference_end),
            (windows.current_start, windows.current_end),
            production,
            (),
            (),
            (),
            (),
            (),
            None,
            (f"no traffic for {use_case} in {windows.current_start}..{windows.current_end}",),
        )
    drift = _drift_results(inputs, config)

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

    rules = config.rules_for(use_case)
    policy = config.policy_for(use_case)
    evaluations: list[RuleEvaluation] = []
    if production is None:
        notes.append("no production configuration known: degradation rules skipped")
    else:
        baseline = inputs.baseline or _EMPTY_STATS
        current = inputs.current or _EMPTY_STATS
        # the registry's numbers for the production config are its baseline when known: a
        # rolling window would slowly absorb a lasting degradation into "normal"
        known = next((c for c in approved_configs if c.config_id == production), None)
        evaluations = evaluate_rules(
            current,
            baseline if baseline.n else None,
            rules,
            baseline_quality=known.quality if known else None,
            baseline_cost=known.cost_per_request if known else None,
        )
    action = decide_recovery(
        use_case,
        evaluations,
        production_config_id=production,
        approved_configs=approved_configs,
        policy=policy,
        rules=rules,
    )
    candidates = _alert_candidates(
        use_case,
        windows=windows,
        drift=drift,
        series=series,
        rules=evaluations,
        action=action,
        config=config,
    )
    new, suppressed = deduplicate(
        candidates, history, as_of=as_of, cooldown_days=policy.cooldown_days
    )
    if action is not None and action.rule is not None:
        key = f"{use_case}|rule|{action.rule}"
        held = next((s for s in suppressed if s.alert.incident_key == key), None)
        if held is not None:
            action = hold_open_incident(action, held.reason)
    if not new and not suppressed and action is None:
        status: Literal["ok", "warning", "critical", "no_data"] = "ok"
    elif any(a.severity == "critical" for a in new) or (
        action is not None and action.kind in ("rollback", "circuit_breaker")
    ):
        status = "critical"
    else:
        status = "warning"
    return UseCaseReport(
        use_case=use_case,
        as_of=as_of,
        status=status,
        reference_window=(windows.reference_start, windows.reference_end),
        current_window=(windows.current_start, windows.current_end),
        production_config_id=production,
        drift=tuple(drift),
        series=tuple(series),
        rules=tuple(evaluations),
        alerts=tuple(new),
        suppressed=tuple(suppressed),
        action=action,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# alerts: storage and notification
# --------------------------------------------------------------------------------------------


def alert_history(
    con: duckdb.DuckDBPyConnection,
    *,
    until: dt.date,
    days: int = 60,
    exclude_run_id: str | None = None,
) -> list[PastAlert]:
    """Incidents seen (raised or suppressed) in the ``days`` before ``until``, for de-duplication.

    ``exclude_run_id`` leaves out the run being redone, so re-running a night re-raises its own
    alerts instead of suppressing them against themselves.
    """
    rows = con.execute(
        "SELECT incident_key, as_of, raised FROM monitoring_signals"
        " WHERE as_of BETWEEN $start AND $end AND ($run_id IS NULL OR run_id <> $run_id)",
        {"start": until - dt.timedelta(days=days), "end": until, "run_id": exclude_run_id},
    ).fetchall()
    return [PastAlert(incident_key=str(k), as_of=d, raised=bool(r)) for k, d, r in rows]


def _jsonable(value: Any) -> Any:
    """Dataclasses, dates, numpy values and NaN to plain JSON (tasks may not import flows)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_to_dict(report: MonitoringReport | UseCaseReport) -> dict[str, Any]:
    """The report as plain JSON values (what ``monitoring_runs.report`` stores)."""
    data: dict[str, Any] = _jsonable(report)
    if isinstance(report, MonitoringReport):
        data["summary"] = report.summary()
    return data


def store_report(
    con: duckdb.DuckDBPyConnection, report: MonitoringReport, *, notified_via: str
) -> int:
    """Insert the report's new alerts and one run row per use case; re-running a run_id replaces
    its rows (idempotent). Returns the number of alerts stored."""
    stored = 0
    names = [u.use_case for u in report.use_cases]  # one run's use cases may be stored apart
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "DELETE FROM monitoring_alerts WHERE run_id = ? AND list_contains(?, use_case)",
            [report.run_id, names],
        )
        con.execute(
            "DELETE FROM monitoring_runs WHERE run_id = ? AND list_contains(?, use_case)",
            [report.run_id, names],
        )
        con.execute(
            "DELETE FROM monitoring_signals WHERE run_id = ? "
            "AND list_contains(?, split_part(incident_key, '|', 1))",
            [report.run_id, names],
        )
        for uc in report.use_cases:
            seen = [(a.incident_key, True) for a in uc.alerts]
            seen += [(s.alert.incident_key, False) for s in uc.suppressed]
            first: dict[str, bool] = {}
            for key, raised in seen:
                first.setdefault(key, raised)
            for key, raised in first.items():
                con.execute(
                    "INSERT INTO monitoring_signals VALUES (?, ?, ?, ?)",
                    [report.run_id, report.as_of, key, raised],
                )
            for alert in uc.alerts:
                acting = (
                    uc.action is not None
                    and alert.kind == "rule"
                    and (uc.action.rule == alert.name)
                )
                con.execute(
                    """
                    INSERT INTO monitoring_alerts (alert_id, incident_key, run_id, as_of, use_case,
                        kind, name, severity, message, details, action_kind, target_config_id,
                        notified_via)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        f"{report.run_id}|{alert.incident_key}",
                        alert.incident_key,
                        report.run_id,
                        report.as_of,
                        alert.use_case,
                        alert.kind,
                        alert.name,
                        alert.severity,
                        alert.message,
                        json.dumps(_jsonable(alert.details)),
                        uc.action.kind if acting and uc.action else None,
                        uc.action.target_config_id if acting and uc.action else None,
                        notified_via,
                    ],
                )
                stored += 1
            con.execute(
                "INSERT INTO monitoring_runs (run_id, as_of, use_case, status, action_kind, report)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    report.run_id,
                    report.as_of,
                    uc.use_case,
                    uc.status,
                    uc.action.kind if uc.action else None,
                    json.dumps(report_to_dict(uc)),
                ],
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return stored


def notify(alerts: Sequence[AlertCandidate], notifier: NotifierConfig) -> tuple[str, ...]:
    """Log every alert; send those at or above ``min_severity`` through Apprise, one message per
    use case. Returns the channels used (``log``, ``apprise:<n>``); a failed delivery is logged
    and reported as ``apprise-failed`` (the alert is still stored), never raised mid-run."""
    channels = ["log"]
    for alert in alerts:
        level = logging.ERROR if alert.severity == "critical" else logging.WARNING
        LOG.log(level, "%s alert %s: %s", alert.severity, alert.incident_key, alert.message)
    if not notifier.urls:
        return tuple(channels)
    floor = SEVERITY_RANK[notifier.min_severity]
    selected = [a for a in alerts if SEVERITY_RANK[a.severity] >= floor]
    if not selected:
        return tuple(channels)
    import apprise

    sender = apprise.Apprise()
    for url in notifier.urls:
        if not sender.add(url):
            LOG.error("notifier: unusable Apprise URL %s", url.split("://", 1)[0] + "://...")
    by_use_case: dict[str, list[AlertCandidate]] = {}
    for alert in selected:
        by_use_case.setdefault(alert.use_case, []).append(alert)
    ok = True
    for use_case, items in by_use_case.items():
        worst = max(items, key=lambda a: SEVERITY_RANK[a.severity]).severity
        title = f"{notifier.title_prefix} {worst}: {use_case} ({len(items)} alert(s))"
        body = "\n".join(f"- [{a.severity}] {a.message}" for a in items)
        notify_type = (
            apprise.NotifyType.FAILURE if worst == "critical" else apprise.NotifyType.WARNING
        )
        ok = bool(sender.notify(title=title, body=body, notify_type=notify_type)) and ok
    channels.append(f"apprise:{len(sender)}" if ok else "apprise-failed")
    if not ok:
        LOG.error("notifier: Apprise delivery failed for at least one alert")
    return tuple(channels)


def run_monitoring(
    con: duckdb.DuckDBPyConnection,
    settings: Settings | None = None,
    *,
    as_of: dt.date | None = None,
    run_id: str | None = None,
    config: MonitoringConfig | None = None,
    approved_configs: Mapping[str, Sequence[ApprovedConfig]] | None = None,
    production_configs: Mapping[str, str] | None = None,
    use_cases: Sequence[str] | None = None,
    record: bool = True,
) -> MonitoringReport:
    """One nightly monitoring pass over every use case with traffic (or ``use_cases``).

    ``approved_configs`` maps a use case to the approved configurations the registry could roll
    back / switch to (with their quality and cost; ``is_production`` marks the serving one).
    ``production_configs`` overrides the production config id per use case. With ``record``
    (default) new alerts and the per-use-case report go to the warehouse and the notifier;
    without it nothing is written (the CLI's read-only status view).
    """
    config = config or load_monitoring_config(settings)
    apply_monitoring_schema(con)
    as_of = as_of or latest_day(con)
    if as_of is None:
        return MonitoringReport(run_id or "monitor-empty", dt.date.today(), (), 0, ())
    run_id = run_id or f"monitor-{as_of.isoformat()}"
    history = alert_history(con, until=as_of, exclude_run_id=run_id)
    windows = Windows.for_night(as_of, config)
    names = (
        list(use_cases)
        if use_cases
        else monitored_use_cases(con, windows.reference_start, windows.current_end)
    )
    approved = approved_configs or {}
    # every use case's aggregates at once: a constant number of statements, not ~12 per use case
    inputs = fetch_monitoring_inputs(
        con,
        names,
        as_of=as_of,
        config=config,
        production_configs={
            name: known_production_config(
                name,
                config,
                production_config_id=(production_configs or {}).get(name),
                approved_configs=approved.get(name, ()),
            )
            for name in names
        },
    )
    reports = [
        analyse_use_case(
            con,
            name,
            as_of=as_of,
            config=config,
            history=history,
            approved_configs=approved.get(name, ()),
            production_config_id=(production_configs or {}).get(name),
            inputs=inputs[name],
        )
        for name in names
    ]
    report = MonitoringReport(run_id, as_of, tuple(reports), 0, ())
    if not record:
        return report
    channels = notify(report.alerts, config.notifier)
    stored = store_report(con, report, notified_via=",".join(channels))
    return dataclasses.replace(report, alerts_stored=stored, notified=channels)


def plot_monitoring(
    report: MonitoringReport | UseCaseReport | Sequence[UseCaseReport], out_dir: Path | str
) -> list[Path]:
    """One PNG per use case (``monitor_<use case>_<as_of>.png``); returns the written paths.

    A panel per monitored metric (rows) and granularity (columns: day, and hour when hourly
    monitoring is on): the series, the use case's reference window (grey) and current window
    (yellow), the series centre (dotted), consensus change points (red lines) and anomalies
    (orange dots). A plain ``Figure`` (no pyplot state: safe from several threads), fixed
    margins, panels, ticks and text drawn as a few artists: ~50 ms per use case.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(report, MonitoringReport):
        reports: Sequence[UseCaseReport] = report.use_cases
    elif isinstance(report, UseCaseReport):
        reports = (report,)
    else:
        reports = report
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for uc in reports:
        columns = [g for g in ("day", "hour") if any(s.granularity == g for s in uc.series)]
        if not columns:
            continue
        metrics = list(dict.fromkeys(s.metric for s in uc.series))
        panels: dict[tuple[str, str], SeriesResult] = {
            (s.metric, s.granularity): s for s in uc.series
        }
        # fixed layout in inches: title + legend on top, dates under the last row
        col_w = 9.0 if len(columns) == 1 else 6.4
        left, right, gap_x, top, bottom, row_h, gap_y = 0.75, 0.15, 0.8, 0.72, 0.35, 1.35, 0.34
        fig_w = left + right + len(columns) * col_w + (len(columns) - 1) * gap_x
        fig_h = top + bottom + len(metrics) * row_h + (len(metrics) - 1) * gap_y
        fig = Figure(figsize=(fig_w, fig_h), dpi=_PLOT_DPI)
        FigureCanvasAgg(fig)
        texts: list[PlacedText] = [
            (
                f"{uc.use_case}: {' and '.join(columns)} series to {uc.as_of} ({uc.status})",
                (0.1, fig_h - 0.1),
                11.0,
                "left",
                "top",
                "black",
                True,
            )
        ]
        for j, granularity in enumerate(columns):
            present = [m for m in metrics if (m, granularity) in panels]
            for i, metric in enumerate(metrics):
                s = panels.get((metric, granularity))
                if s is None:
                    continue
                box = (
                    left + j * (col_w + gap_x),
                    fig_h - top - (i + 1) * row_h - i * gap_y,
                    col_w,
                    row_h,
                )
                _monitor_panel(fig, box, s, uc, texts, last_row=metric == present[-1])
        draw_legend(fig, texts, (0.1, fig_h - 0.47), _MONITOR_LEGEND)
        draw_texts(fig, texts)
        path = out / f"monitor_{uc.use_case}_{uc.as_of.isoformat()}.png"
        fig.savefig(path, dpi=_PLOT_DPI)
        paths.append(path)
    return paths


_PLOT_DPI = 80
_TICK_PT, _LABEL_PT = 3.0, 7.0
_MONITOR_LEGEND: tuple[tuple[str, dict[str, Any]], ...] = (
    ("series", {"color": "tab:blue", "marker": ".", "lw": 1}),
    ("series centre", {"color": "0.35", "ls": ":", "lw": 0.9}),
    ("reference window (drift, rules)", {"patch": "0.88"}),
    ("current window", {"patch": "#fff1c4"}),
    ("change point", {"color": "tab:red", "marker": "|", "ms": 10, "mew": 1.5, "ls": "none"}),
    ("anomaly", {"color": "tab:orange", "marker": "o", "ms": 6, "ls": "none"}),
)


def _monitor_panel(
    fig: Any,
    box: tuple[float, float, float, float],
    s: SeriesResult,
    uc: UseCaseReport,
    texts: list[PlacedText],
    *,
    last_row: bool,
) -> None:
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    x0, y0, w, h = box
    n = len(s.periods)
    y = np.asarray([np.nan if v is None else v for v in s.values], dtype=float)
    shown = [float(v) for v in y if np.isfinite(v)] + [a.value for a in s.anomalies]
    shown += [s.center] if s.center is not None else []
    lo, hi = (min(shown), max(shown)) if shown else (0.0, 1.0)
    pad = 0.08 * (hi - lo) if hi > lo else abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    x_lim = (-0.5, max(n, 1) - 0.5)
    data, clip = panel_transform(fig, box, x_lim, (lo, hi))
    y_ticks, y_labels = nice_ticks(lo, hi, 4)
    step = max(1, -(-n // 9))
    if s.granularity == "hour":
        step = max(step, 24 * max(1, -(-n // (24 * 9))))  # whole days when hours span many
    x_ticks = list(range(0, n, step))

    artists: list[Any] = []
    days = [p[:10] for p in s.periods]
    for (start, end), colour in ((uc.reference_window, "0.88"), (uc.current_window, "#fff1c4")):
        inside = [k for k, d in enumerate(days) if start.isoformat() <= d <= end.isoformat()]
        if inside:
            span = inside[-1] - inside[0] + 1
            artists.append(Rectangle((inside[0] - 0.5, lo), span, hi - lo, color=colour, lw=0))
    grid = [[(x_lim[0], v), (x_lim[1], v)] for v in y_ticks] + [[(k, lo), (k, hi)] for k in x_ticks]
    artists.append(LineCollection(grid, colors="0.9", linewidths=0.6, zorder=0.5))
    artists.append(
        Line2D(np.arange(n), y, marker=".", ms=4 if n > 60 else 6, lw=1, color="tab:blue", zorder=2)
    )
    if s.center is not None:
        artists.append(Line2D(x_lim, [s.center] * 2, color="0.35", lw=0.9, ls=":", zorder=2))
    index = {p: k for k, p in enumerate(s.periods)}
    changes = [[(index[p], lo), (index[p], hi)] for p in s.change_points if p in index]
    if changes:
        artists.append(LineCollection(changes, colors="tab:red", linewidths=1.5, zorder=2.5))
    flagged = [(index[a.period], a.value) for a in s.anomalies if a.period in index]
    if flagged:
        xs, ys = zip(*flagged, strict=True)
        artists.append(Line2D(xs, ys, ls="none", marker="o", ms=6.5, color="tab:orange", zorder=3))
    for artist in artists:
        artist.set_transform(data)
        artist.set_clip_box(clip)
        fig.add_artist(artist)

    inches = fig.dpi_scale_trans
    fig.add_artist(Rectangle((x0, y0), w, h, fill=False, ec="black", lw=0.8, transform=inches))
    tick = _TICK_PT / 72
    y_at = [y0 + (v - lo) / (hi - lo) * h for v in y_ticks]
    x_at = [x0 + (k + 0.5) / max(n, 1) * w for k in x_ticks]
    marks = [[(x0 - tick, v), (x0, v)] for v in y_at]
    marks += [[(v, y0 - tick), (v, y0)] for v in x_at] if last_row else []
    fig.add_artist(LineCollection(marks, colors="black", linewidths=0.8, transform=inches))
    for at, label in zip(y_at, y_labels, strict=True):
        texts.append(
            (label, (x0 - tick - 2 / 72, at), _LABEL_PT, "right", "center", "black", False)
        )
    if last_row:
        for at, k in zip(x_at, x_ticks, strict=True):
            p = s.periods[k]
            label = p[5:10] if s.granularity == "day" else p[5:13].replace("T", " ") + "h"
            texts.append(
                (label, (at, y0 - tick - 2 / 72), _LABEL_PT, "center", "top", "black", False)
            )
    title = f"{s.metric} ({s.granularity}): {s.reason}"
    texts.append((title, (x0, y0 + h + 3 / 72), 8.0, "left", "baseline", "black", False))


__all__ = [
    "HISTOGRAM_MAX_EDGES",
    "MONITORING_SCHEMA",
    "MonitoringConfig",
    "MonitoringInputs",
    "MonitoringReport",
    "NotifierConfig",
    "SeriesResult",
    "UseCaseReport",
    "Windows",
    "alert_history",
    "analyse_series",
    "analyse_use_case",
    "apply_monitoring_schema",
    "categorical_counts",
    "categorical_counts_many",
    "fetch_monitoring_inputs",
    "hourly_range",
    "infer_production_config",
    "infer_production_configs",
    "known_production_config",
    "latest_day",
    "load_monitoring_config",
    "metric_series",
    "metric_series_many",
    "notify",
    "numeric_bins",
    "numeric_bins_many",
    "parse_monitoring_config",
    "plot_monitoring",
    "report_to_dict",
    "run_monitoring",
    "series_range",
    "store_report",
    "window_stats",
    "window_stats_many",
]
