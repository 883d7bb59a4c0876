"""Daily and hourly metric series of use cases, summed from daily rollups.

Every period of a range is present; a period without traffic holds ``NaN`` (a missing day is not
a zero). Daily sums come from the warehouse's ``rollup_config_day`` (per configuration and day),
the daily latency p95 from ``rollup_monitor_bins`` (or ``rollup_config_latency`` for one
configuration), hourly series from ``rollup_monitor_hourly`` and
``rollup_monitor_hourly_latency`` (:mod:`tasks.monitoring.rollups`). The p95 is within 1% of
``quantile_cont`` on the raw rows (:mod:`strategies.rollup_quantiles`).

The hourly latency bins are not in the nightly rollup set (only hourly monitoring reads them):
an hourly series first brings that one table up to date (:func:`hourly_latency_source`), or on
a read-only connection bins the window's raw rows with the rollup's own SELECT; either way the
bins, and so the p95, are the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

import duckdb
import numpy as np

from tasks.monitoring.rollups import (
    MONITOR_BINS,
    MONITOR_HOURLY,
    MONITOR_HOURLY_LATENCY,
    hourly_latency_select,
)
from tasks.monitoring.sql import SERIES_METRICS, quantiles_by_key
from tasks.warehouse.dask_rollups import refresh_night_rollups
from tasks.warehouse.rollup_specs import CONFIG_DAY, CONFIG_LATENCY
from tasks.warehouse.rollups import COVERAGE_SPEC, read_only

_DAYS = (
    "list_contains($use_cases, use_case)"
    " AND day BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)"
)


# one statement: the hourly latency table is complete, no pair is pending for it, no ingest is
# newer than the watermark and the rolled-up row count is the raw one (as rollups_current)
_HOURLY_CURRENT_SQL = f"""
SELECT (SELECT count(*) FROM rollup_tables WHERE complete AND name = $name) = 1
   AND NOT EXISTS (SELECT 1 FROM rollup_stale WHERE name = $name)
   AND NOT EXISTS (SELECT 1 FROM ingest_manifest
                   WHERE ingest_id NOT IN (SELECT ingest_id FROM rollup_ingests))
   AND (SELECT count(*) FROM usage_logs) = (SELECT coalesce(sum(n), 0) FROM {COVERAGE_SPEC.name})
"""


def _hourly_current(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        row = con.execute(_HOURLY_CURRENT_SQL, {"name": MONITOR_HOURLY_LATENCY.name}).fetchall()
    except duckdb.CatalogException:  # never rolled up (the bookkeeping tables are missing)
        return False
    return bool(row and row[0][0])


def hourly_latency_source(con: duckdb.DuckDBPyConnection) -> str:
    """The relation to read hourly latency bins from (columns of ``rollup_monitor_hourly_latency``).

    The rollup table when it is current; else, on a writable connection, the table after a
    refresh of that spec alone (a new table is rolled up over every pair: the backfill when
    hourly monitoring is turned on; later only the pairs the nightly refreshes left pending for
    it); on a read-only connection, the rollup's SELECT over the raw rows of the series' use
    cases and days (parameters ``$use_cases``, ``$start``, ``$end``).

    Args:
        con: a warehouse connection.

    Returns:
        A table name or a parenthesised subquery.
    """
    if _hourly_current(con):
        return MONITOR_HOURLY_LATENCY.name
    if not read_only(con):
        refresh_night_rollups(con, (MONITOR_HOURLY_LATENCY,))
        return MONITOR_HOURLY_LATENCY.name
    return f"({hourly_latency_select(f'(SELECT * FROM usage_logs WHERE {_DAYS})')})"


def _grid(granularity: Literal["day", "hour"]) -> str:
    """Every (use case, period) of ``[$start, $end]``."""
    cast, step = (
        ("DATE", "INTERVAL 1 DAY") if granularity == "day" else ("TIMESTAMP", "INTERVAL 1 HOUR")
    )
    return f"""
        SELECT u.use_case, CAST(g AS {cast}) AS period
        FROM (SELECT unnest($use_cases) AS use_case) u,
             generate_series(CAST($start AS TIMESTAMP), CAST($end AS TIMESTAMP), {step}) t(g)
    """


def _series_sql(
    granularity: Literal["day", "hour"], config_key: bool, hourly_bins: str = ""
) -> tuple[str, str]:
    """(SELECT of the summed metrics per use case and period, SELECT of the latency bins);
    ``hourly_bins``: the relation of the hourly latency bins (:func:`hourly_latency_source`)."""
    metrics = """sum(quality_sum) / nullif(sum(quality_n), 0) AS quality,
        sum(successes)::DOUBLE / sum(n) AS success_rate,
        sum(cost_sum) / sum(n) AS cost_per_request, sum(n)::DOUBLE AS requests"""
    days = _DAYS
    if granularity == "hour":
        period = "CAST(day AS TIMESTAMP) + to_hours(hour)"
        sums = f"""SELECT use_case, {period} AS period, {metrics}
            FROM {MONITOR_HOURLY.name} WHERE {days} GROUP BY ALL"""
        bins = f"""SELECT use_case, day, hour, sum(n), min(vmin), max(vmax)
            FROM {hourly_bins} WHERE {days}
            GROUP BY use_case, day, hour, bin ORDER BY use_case, day, hour, bin"""
        return sums, bins
    one = "AND config_key = $config_id" if config_key else ""
    sums = f"""SELECT use_case, day AS period, {metrics}
        FROM {CONFIG_DAY.name} WHERE {days} {one} GROUP BY ALL"""
    if config_key:
        bins = f"""SELECT use_case, day, sum(n), min(vmin), max(vmax)
            FROM {CONFIG_LATENCY.name} WHERE {days} {one}
            GROUP BY use_case, day, bin ORDER BY use_case, day, bin"""
    else:
        bins = f"""SELECT use_case, day, sum(n), min(vmin), max(vmax)
            FROM {MONITOR_BINS.name} WHERE {days} AND field = 'latency_ms'
            GROUP BY use_case, day, bin ORDER BY use_case, day, bin"""
    return sums, bins


def _series(
    con: duckdb.DuckDBPyConnection,
    names: list[str],
    *,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    granularity: Literal["day", "hour"],
    config_id: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Series of many use cases: the summed metrics on the grid, then the latency p95."""
    if granularity == "hour" and config_id is not None:
        raise ValueError("hourly series are rolled up per use case, not per configuration")
    hourly_bins = hourly_latency_source(con) if granularity == "hour" else ""
    sums, bins = _series_sql(granularity, config_id is not None, hourly_bins)
    plain = [name for name in SERIES_METRICS if name != "latency_p95"]
    params: dict[str, Any] = {"use_cases": names, "start": start, "end": end}
    if config_id is not None:
        params["config_id"] = config_id
    rows = con.execute(
        f"""
        WITH grid AS ({_grid(granularity)}), agg AS ({sums})
        SELECT grid.use_case, grid.period, {", ".join(f"agg.{m}" for m in plain)}
        FROM grid LEFT JOIN agg USING (use_case, period) ORDER BY grid.use_case, grid.period
        """,
        params,
    ).fetchall()
    keys = 3 if granularity == "hour" else 2
    p95 = quantiles_by_key(con, bins, params, keys=keys)
    collected: dict[str, list[Any]] = {name: [] for name in names}
    for row in rows:
        collected[str(row[0])].append(row)
    out: dict[str, dict[str, Any]] = {}
    for name, items in collected.items():
        series: dict[str, Any] = {"periods": [r[1].isoformat() for r in items]}
        values = {
            m: [np.nan if r[2 + i] is None else float(r[2 + i]) for r in items]
            for i, m in enumerate(plain)
        }
        at = [(name, r[1].date(), r[1].hour) if keys == 3 else (name, r[1]) for r in items]
        values["latency_p95"] = [p95.get(key, np.nan) for key in at]
        for metric in SERIES_METRICS:
            series[metric] = np.asarray(values[metric], dtype=float)
        out[name] = series
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
        con: warehouse connection (rollups refreshed).
        use_case: the use case.
        start: first day, or first UTC hour (naive datetime) for hourly series.
        end: last day or hour, inclusive.
        granularity: ``"day"`` or ``"hour"``.
        config_id: only this configuration key (``None``: the whole use case; daily only).

    Returns:
        ``periods`` (ISO strings) and one float array per metric of ``SERIES_METRICS``.

    Raises:
        ValueError: an hourly series of one configuration (not rolled up).
    """
    return _series(
        con, [use_case], start=start, end=end, granularity=granularity, config_id=config_id
    )[use_case]


def metric_series_many(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    *,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    granularity: Literal["day", "hour"] = "day",
) -> dict[str, dict[str, Any]]:
    """:func:`metric_series` (no configuration filter) of many use cases in two statements.

    Args:
        con: warehouse connection (rollups refreshed).
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
    return _series(con, names, start=start, end=end, granularity=granularity)


__all__ = ["hourly_latency_source", "metric_series", "metric_series_many"]
