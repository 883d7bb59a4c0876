"""The night's monitoring inputs from the warehouse: a constant number of grouped statements.

For each use case the analysis needs small aggregates only: binned and category counts
(:mod:`tasks.monitoring.histograms`), daily (and optionally hourly) metric series, and the
sufficient statistics of the production configuration over the reference window (its baseline,
the ``reference_days`` before the night) and the current window. :func:`fetch_monitoring_inputs`
fetches them for all of a night's use cases at once; the per-use-case functions are the
reference the batched ones are tested against.

Configurations are matched on the warehouse's configuration key (``config_id``, else
``model|prompt|t=..|p=..|mt=..``; :mod:`tasks.monitoring.sql`), the key the nightly flow uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import duckdb
import numpy as np

from strategies.monitor.degradation import WindowStats
from strategies.monitor.report import EMPTY_STATS, MonitoringInputs
from strategies.monitor.settings import MonitoringConfig, Windows, hourly_range, series_range
from tasks.monitoring.histograms import categorical_counts_many, numeric_bins_many
from tasks.monitoring.sql import (
    INCUMBENT_SQL,
    KEY_SQL,
    SERIES_METRICS,
    STATS_SQL,
    stats_from_row,
    window_params,
    windowed_rows,
)


def _bucket(granularity: Literal["day", "hour"], *, skip_row_groups: bool) -> tuple[str, ...]:
    """(bucket expression, cast, step, where) of a daily or UTC-hourly series."""
    if granularity == "day":
        return "day", "DATE", "INTERVAL 1 DAY", "day BETWEEN $start AND $end"
    bucket = "date_trunc('hour', timezone('UTC', ts))"
    if skip_row_groups:  # a bound on ts itself (not on timezone(ts)) lets the scan skip groups
        where = (
            "ts >= timezone('UTC', CAST($start AS TIMESTAMP))"
            " AND ts < timezone('UTC', CAST($end AS TIMESTAMP) + INTERVAL 1 HOUR)"
        )
    else:
        where = (
            "timezone('UTC', ts) >= CAST($start AS TIMESTAMP)"
            " AND timezone('UTC', ts) < CAST($end AS TIMESTAMP) + INTERVAL 1 HOUR"
        )
    return bucket, "TIMESTAMP", "INTERVAL 1 HOUR", where


def _series_of(rows: Sequence[Sequence[Any]], first: int) -> dict[str, Any]:
    out: dict[str, Any] = {"periods": [r[first - 1].isoformat() for r in rows]}
    for i, name in enumerate(SERIES_METRICS, start=first):
        out[name] = np.asarray([np.nan if r[i] is None else float(r[i]) for r in rows], dtype=float)
    return out


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

    Every period of the range is present; periods without traffic hold ``NaN`` (a missing day
    is not a zero).

    Args:
        con: warehouse connection.
        use_case: the use case.
        start: first day, or first UTC hour (naive datetime) for hourly series.
        end: last day or hour, inclusive.
        granularity: ``"day"`` or ``"hour"``.
        config_id: only this configuration key (``None``: the whole use case).

    Returns:
        ``periods`` (ISO strings) and one float array per metric of ``SERIES_METRICS``.
    """
    metrics = ",\n".join(f"{sql} AS {name}" for name, sql in SERIES_METRICS.items())
    bucket, cast, step, where = _bucket(granularity, skip_row_groups=False)
    sql = f"""
    WITH grid AS (
        SELECT CAST(g AS {cast}) AS period FROM generate_series(
            CAST($start AS TIMESTAMP), CAST($end AS TIMESTAMP), {step}) t(g)
    ), agg AS (
        SELECT {bucket} AS period, {metrics}
        FROM usage_logs
        WHERE use_case = $use_case AND {where}
          AND ($config_id IS NULL OR {KEY_SQL} = $config_id)
        GROUP BY 1
    )
    SELECT grid.period, {", ".join(f"agg.{name}" for name in SERIES_METRICS)}
    FROM grid LEFT JOIN agg USING (period) ORDER BY grid.period
    """
    params = {"use_case": use_case, "start": start, "end": end, "config_id": config_id}
    return _series_of(con.execute(sql, params).fetchall(), 1)


def metric_series_many(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    *,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    granularity: Literal["day", "hour"] = "day",
) -> dict[str, dict[str, Any]]:
    """:func:`metric_series` (no configuration filter) of many use cases in one statement.

    Args:
        con: warehouse connection.
        use_cases: the use cases.
        start: first day (or UTC hour).
        end: last day (or UTC hour), inclusive.
        granularity: ``"day"`` or ``"hour"``.

    Returns:
        use case -> the series as :func:`metric_series` returns it.
    """
    names = list(dict.fromkeys(use_cases))
    if not names:
        return {}
    metrics = ",\n".join(f"{sql} AS {name}" for name, sql in SERIES_METRICS.items())
    bucket, cast, step, where = _bucket(granularity, skip_row_groups=True)
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
    return {name: _series_of(items, 2) for name, items in by_use_case.items()}


def window_stats(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    config_id: str | None,
    start: dt.date,
    end: dt.date,
) -> WindowStats:
    """Sufficient statistics of one configuration (or the whole use case) over days [start, end].

    Args:
        con: warehouse connection.
        use_case: the use case.
        config_id: a configuration key, or ``None`` for the whole use case.
        start: first day.
        end: last day, inclusive.

    Returns:
        The :class:`WindowStats` (all zero without rows).
    """
    row = con.execute(
        f"""
        SELECT {STATS_SQL} FROM usage_logs
        WHERE use_case = $use_case AND day BETWEEN $start AND $end
          AND ($config_id IS NULL OR {KEY_SQL} = $config_id)
        """,
        {"use_case": use_case, "config_id": config_id, "start": start, "end": end},
    ).fetchone()
    assert row is not None  # an aggregate always returns one row
    return stats_from_row(row)


def window_stats_many(
    con: duckdb.DuckDBPyConnection, use_cases: Sequence[str], windows: Windows
) -> dict[tuple[str, str | None, int], WindowStats]:
    """:func:`window_stats` of many use cases in one statement.

    Args:
        con: warehouse connection.
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
    columns = f"{KEY_SQL} AS config_key, status, quality, cost_usd, latency_ms"
    rows = con.execute(
        f"""
        SELECT use_case, NULL AS config_key, 1 AS w, {STATS_SQL}
        FROM usage_logs
        WHERE list_contains($use_cases, use_case) AND day BETWEEN $cur_start AND $cur_end
        GROUP BY use_case
        UNION ALL
        SELECT use_case, config_key, w, {STATS_SQL}
        FROM ({windowed_rows(columns)})
        GROUP BY use_case, config_key, w
        """,
        {"use_cases": names} | window_params(windows),
    ).fetchall()
    return {
        (str(r[0]), None if r[1] is None else str(r[1]), int(r[2])): stats_from_row(r[3:])
        for r in rows
    }


def infer_production_configs(
    con: duckdb.DuckDBPyConnection, use_cases: Sequence[str], start: dt.date, end: dt.date
) -> dict[str, str | None]:
    """The incumbent configuration key of each use case, as the nightly flow picks it.

    The configuration most served outside experiments (control arms count), then the most
    served, then the smallest key.

    Args:
        con: warehouse connection.
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
            SELECT use_case, {KEY_SQL} AS key, {INCUMBENT_SQL} AS incumbent, count(*) AS n
            FROM usage_logs
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
        con: warehouse connection.
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
    statements (each grouped by use case), whatever their number.

    Args:
        con: warehouse connection.
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
    "window_stats",
    "window_stats_many",
]
