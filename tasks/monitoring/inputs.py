"""The night's monitoring inputs from daily rollups: a constant number of grouped statements.

For each use case the analysis needs small aggregates only: binned and category counts
(:mod:`tasks.monitoring.histograms`), daily (and optionally hourly) metric series
(:mod:`tasks.monitoring.series`), and the
sufficient statistics of the production configuration over the reference window (its baseline,
the ``reference_days`` before the night) and the current window. All of them are sums of daily
rollup rows (a window is the sum of its days), never a scan of the raw window:

- counts and sums per configuration and day: the warehouse's ``rollup_config_day``
  (:mod:`tasks.warehouse.rollup_specs`), exact;
- a configuration's latency p95: the warehouse's ``rollup_config_latency`` bins;
- a use case's latency p95 (series and current window), drift bins, category counts and the
  hourly series: monitoring's own rollups (:mod:`tasks.monitoring.rollups`).

Every latency p95 is read from fixed log-spaced bins (:mod:`strategies.rollup_quantiles`, ratio
1.01, each bin with its smallest and largest value): within 1% of ``quantile_cont`` on the raw
rows.

:func:`refresh_monitoring_rollups` brings every rollup up to date; :func:`run_monitoring
<tasks.monitoring.run.run_monitoring>` calls it before reading (after the nightly flow's own
refresh it only checks that nothing changed). The functions here assume fresh rollups.

Configurations are matched on the warehouse's configuration key (``config_id``, else
``model|prompt|t=..|p=..|mt=..``; :mod:`tasks.monitoring.sql`), the key the nightly flow uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from strategies.monitor.degradation import WindowStats
from strategies.monitor.report import EMPTY_STATS, MonitoringInputs
from strategies.monitor.settings import MonitoringConfig, Windows, hourly_range, series_range
from tasks.monitoring.histograms import categorical_counts_many, numeric_bins_many
from tasks.monitoring.rollups import MONITOR_BINS
from tasks.monitoring.series import metric_series, metric_series_many
from tasks.monitoring.sql import (
    quantiles_by_key,
    stats_from_row,
    window_params,
    windowed_rollup,
)
from tasks.warehouse.dask_rollups import refresh_night_rollups
from tasks.warehouse.lake import part_paths
from tasks.warehouse.rollup_specs import CONFIG_DAY, CONFIG_LATENCY
from tasks.warehouse.rollups import COVERAGE_SPEC, RefreshReport, changed_pairs

#: the sums a window's statistics add up, from ``rollup_config_day``
_STATS_SUMS = """sum(n), sum(successes), sum(quality_n), sum(quality_sum),
    sum(quality_sum_squares), sum(cost_sum)"""


def refresh_monitoring_rollups(con: duckdb.DuckDBPyConnection) -> RefreshReport | None:
    """Refresh every capability's rollups (the nightly set), so monitoring reads fresh sums.

    All specs are refreshed together: the rollup watermark is shared, so refreshing a subset
    would leave the others behind. Nothing is recomputed when no (use case, day) changed.

    Args:
        con: a writable warehouse connection.

    Returns:
        What the refresh did; ``None`` when no pair had changed (checked first, in a few
        statements: after the nightly flow's own refresh, the usual case).
    """
    from tasks.nightly.rollup_set import ALL_SPECS  # lazy: the nightly set imports this package

    if not part_paths(con) and not changed_pairs(con, ALL_SPECS):
        return None
    # in lake mode the change check reads lake_parts, never the raw parts
    return refresh_night_rollups(con, ALL_SPECS)


def rolled_up_latest_day(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The last UTC day with usage logs, from the rollups' coverage (rows per use case and day).

    Args:
        con: warehouse connection (rollups refreshed).

    Returns:
        The day, or ``None`` without any rolled-up row.
    """
    row = con.execute(f"SELECT max(day) FROM {COVERAGE_SPEC.name} WHERE n > 0").fetchone()
    return None if row is None or row[0] is None else row[0]


def rolled_up_use_cases(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> list[str]:
    """The use cases with traffic between ``start`` and ``end`` (inclusive), sorted, from the
    rollups' coverage.

    Args:
        con: warehouse connection (rollups refreshed).
        start: first day.
        end: last day.

    Returns:
        The use case names.
    """
    rows = con.execute(
        f"SELECT DISTINCT use_case FROM {COVERAGE_SPEC.name}"
        " WHERE n > 0 AND day BETWEEN $start AND $end ORDER BY 1",
        {"start": start, "end": end},
    ).fetchall()
    return [str(r[0]) for r in rows]


def window_stats_many(
    con: duckdb.DuckDBPyConnection, use_cases: Sequence[str], windows: Windows
) -> dict[tuple[str, str | None, int], WindowStats]:
    """Sufficient statistics of many use cases, whole and per configuration, in three statements.

    Args:
        con: warehouse connection (rollups refreshed).
        use_cases: the use cases.
        windows: the night's windows.

    Returns:
        ``(use_case, None, 1)``: the whole use case in the current window; ``(use_case, key,
        w)``: each configuration key in the reference (``w`` = 0) and current (1) window.
        Combinations without rows are absent (their stats are all zero).
    """
    names = list(dict.fromkeys(use_cases))
    if not names:
        return {}
    params = {"use_cases": names} | window_params(windows)
    rows = con.execute(
        f"""
        SELECT use_case, NULL AS config_key, 1 AS w, {_STATS_SUMS}
        FROM {CONFIG_DAY.name}
        WHERE list_contains($use_cases, use_case) AND day BETWEEN $cur_start AND $cur_end
        GROUP BY use_case
        UNION ALL
        SELECT use_case, config_key, w, {_STATS_SUMS}
        FROM {windowed_rollup(CONFIG_DAY.name)}
        GROUP BY use_case, config_key, w
        """,
        params,
    ).fetchall()
    p95: dict[tuple[Any, ...], float] = quantiles_by_key(
        con,
        f"""SELECT use_case, config_key, w, sum(n), min(vmin), max(vmax)
        FROM {windowed_rollup(CONFIG_LATENCY.name)}
        GROUP BY use_case, config_key, w, bin ORDER BY use_case, config_key, w, bin""",
        params,
        keys=3,
    )
    whole = quantiles_by_key(
        con,
        f"""SELECT use_case, sum(n), min(vmin), max(vmax) FROM {MONITOR_BINS.name}
        WHERE list_contains($use_cases, use_case) AND day BETWEEN $cur_start AND $cur_end
          AND field = 'latency_ms'
        GROUP BY use_case, bin ORDER BY use_case, bin""",
        params,
        keys=1,
    )
    p95 |= {(name, None, 1): v for (name,), v in whole.items()}
    out: dict[tuple[str, str | None, int], WindowStats] = {}
    for r in rows:
        key = (str(r[0]), None if r[1] is None else str(r[1]), int(r[2]))
        out[key] = stats_from_row((*r[3:9], p95.get(key)))  # the p95 from the bins
    return out


def window_stats(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    config_id: str | None,
    start: dt.date,
    end: dt.date,
) -> WindowStats:
    """Sufficient statistics of one configuration (or the whole use case) over days [start, end].

    Args:
        con: warehouse connection (rollups refreshed).
        use_case: the use case.
        config_id: a configuration key, or ``None`` for the whole use case.
        start: first day.
        end: last day, inclusive.

    Returns:
        The :class:`WindowStats` (all zero without rows).
    """
    # the range as a current window after a one-day reference window before it
    windows = Windows(
        as_of=end,
        reference_start=start - dt.timedelta(days=1),
        reference_end=start - dt.timedelta(days=1),
        current_start=start,
        current_end=end,
    )
    return window_stats_many(con, [use_case], windows).get((use_case, config_id, 1), EMPTY_STATS)


def infer_production_configs(
    con: duckdb.DuckDBPyConnection, use_cases: Sequence[str], start: dt.date, end: dt.date
) -> dict[str, str | None]:
    """The incumbent configuration key of each use case, as the nightly flow picks it.

    The configuration most served outside experiments (control arms count), then the most
    served, then the smallest key.

    Args:
        con: warehouse connection (rollups refreshed).
        use_cases: the use cases.
        start: first day.
        end: last day, inclusive.

    Returns:
        use case -> key (``None`` without traffic).
    """
    names = list(dict.fromkeys(use_cases))
    if not names:
        return {}
    rows = con.execute(
        f"""
        SELECT use_case, key FROM (
            SELECT use_case, config_key AS key, sum(incumbent_n) AS incumbent, sum(n) AS n
            FROM {CONFIG_DAY.name}
            WHERE list_contains($use_cases, use_case) AND day BETWEEN $start AND $end
            GROUP BY 1, 2
        ) QUALIFY row_number() OVER (PARTITION BY use_case ORDER BY incumbent DESC, n DESC, key) = 1
        """,
        {"use_cases": names, "start": start, "end": end},
    ).fetchall()
    found = {str(u): str(c) for u, c in rows}
    return {name: found.get(name) for name in names}


def infer_production_config(
    con: duckdb.DuckDBPyConnection, use_case: str, start: dt.date, end: dt.date
) -> str | None:
    """:func:`infer_production_configs` of one use case.

    Args:
        con: warehouse connection (rollups refreshed).
        use_case: the use case.
        start: first day.
        end: last day, inclusive.

    Returns:
        The incumbent configuration key, or ``None`` without traffic.
    """
    return infer_production_configs(con, [use_case], start, end)[use_case]


def fetch_monitoring_inputs(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    *,
    as_of: dt.date,
    config: MonitoringConfig,
    production_configs: Mapping[str, str | None] | None = None,
) -> dict[str, MonitoringInputs]:
    """The night's monitoring inputs of every use case in ``use_cases``, in a constant number of
    statements over the rollups (each grouped by use case), whatever their number.

    Args:
        con: warehouse connection (rollups refreshed: :func:`refresh_monitoring_rollups`).
        use_cases: the use cases.
        as_of: the night judged.
        config: windows, fields, series lengths.
        production_configs: the known production configuration key per use case; the others
            are inferred from traffic over both windows, all in one statement.

    Returns:
        use case -> :class:`MonitoringInputs`.
    """
    names = list(dict.fromkeys(use_cases))
    if not names:
        return {}
    windows = Windows.for_night(as_of, config)
    production = {name: (production_configs or {}).get(name) or None for name in names}
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
        key = production[name]
        out[name] = MonitoringInputs(
            use_case=name,
            windows=windows,
            production_config_id=key,
            current_all=stats.get((name, None, 1), EMPTY_STATS),
            baseline=None if key is None else stats.get((name, key, 0), EMPTY_STATS),
            current=None if key is None else stats.get((name, key, 1), EMPTY_STATS),
            numeric=numeric[name],
            categorical=categorical[name],
            daily=daily[name],
            hourly=hourly.get(name) if config.hourly else None,
        )
    return out


__all__ = [
    "fetch_monitoring_inputs",
    "infer_production_config",
    "infer_production_configs",
    "metric_series",
    "metric_series_many",
    "refresh_monitoring_rollups",
    "rolled_up_latest_day",
    "rolled_up_use_cases",
    "window_stats",
    "window_stats_many",
]
