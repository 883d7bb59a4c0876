"""The raw-scan monitoring inputs: the reference the rollup path is tested against.

These are the per-use-case functions monitoring used before it read daily rollups (issue 17),
each one statement over the raw ``usage_logs`` window, kept here for the tests only: counts and
sums must equal the rollup path exactly (floating-point sums to the last bits of their
order), latency p95 within the bins' bound, and the drift statistics of the old quantile-edge
bins must stay close to those of the fixed bins. :func:`fixed_bins_raw` bins the raw window rows
on the fixed bins directly (no rollup), which the rollup path must equal exactly.

Loaded by ``conftest.py`` (the ``raw_scan`` fixture); not a test module.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

import duckdb
import numpy as np

from strategies.monitor.degradation import WindowStats
from strategies.monitor.report import Bins, CategoryCounts, MonitoringInputs
from strategies.monitor.settings import (
    CATEGORICAL_FIELDS,
    NUMERIC_FIELDS,
    MonitoringConfig,
    Windows,
    hourly_range,
    series_range,
)
from strategies.rollup_quantiles import RATIO, LogHistogram, bin_sql, drift_bins
from tasks.monitoring.sql import (
    INCUMBENT_SQL,
    KEY_SQL,
    SERIES_METRICS,
    STATS_SQL,
    stats_from_row,
    window_params,
)


def _check(columns: Sequence[str], allowed: Sequence[str], kind: str) -> None:
    for column in columns:
        if column not in allowed:
            raise ValueError(f"not a monitored {kind} field: {column}")


def _binned_counts_sql(column: str) -> str:
    _check([column], NUMERIC_FIELDS, "numeric")
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
) -> Bins:
    """Upper bin edges and per-window counts of one numeric field (binning done in DuckDB).

    Args:
        con: warehouse connection.
        use_case: the use case.
        column: one of ``NUMERIC_FIELDS``.
        windows: the night's windows.
        quantile_bins: quantile levels per window.

    Returns:
        ``(edges, reference counts, current counts)``; empty arrays without rows.

    Raises:
        ValueError: ``column`` is not a monitored numeric field.
    """
    levels = [i / quantile_bins for i in range(1, quantile_bins)]
    params = {"use_case": use_case, "levels": levels} | window_params(windows)
    rows = con.execute(_binned_counts_sql(column), params).fetchall()
    if not rows:
        empty = np.zeros(0)
        return empty, empty, empty
    array = np.asarray(rows, dtype=float)
    return array[:, 0], array[:, 1], array[:, 2]


def categorical_counts(
    con: duckdb.DuckDBPyConnection, use_case: str, column: str, windows: Windows
) -> CategoryCounts:
    """Counts per category (missing values are the category ``(missing)``) in both windows.

    Args:
        con: warehouse connection.
        use_case: the use case.
        column: one of ``CATEGORICAL_FIELDS``.
        windows: the night's windows.

    Returns:
        ``(categories, reference counts, current counts)``.

    Raises:
        ValueError: ``column`` is not a monitored categorical field.
    """
    _check([column], CATEGORICAL_FIELDS, "categorical")
    rows = con.execute(
        f"""
        SELECT coalesce(CAST({column} AS VARCHAR), '(missing)') AS category,
               count(*) FILTER (WHERE day BETWEEN $ref_start AND $ref_end) AS ref_n,
               count(*) FILTER (WHERE day BETWEEN $cur_start AND $cur_end) AS cur_n
        FROM usage_logs
        WHERE use_case = $use_case AND day BETWEEN $ref_start AND $cur_end
        GROUP BY 1 ORDER BY 1
        """,
        {"use_case": use_case} | window_params(windows),
    ).fetchall()
    return (
        [r[0] for r in rows],
        np.asarray([r[1] for r in rows], dtype=float),
        np.asarray([r[2] for r in rows], dtype=float),
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


def fixed_bins_raw(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    column: str,
    windows: Windows,
    *,
    quantile_bins: int = 100,
) -> Bins:
    """The drift bins of one field from the raw window rows, binned directly on the fixed bins."""
    _check([column], NUMERIC_FIELDS, "numeric")
    histograms = []
    for start, end in (
        (windows.reference_start, windows.reference_end),
        (windows.current_start, windows.current_end),
    ):
        rows = con.execute(
            f"""
            SELECT {bin_sql("x")} AS bin, count(*), min(x), max(x)
            FROM (SELECT CAST({column} AS DOUBLE) AS x FROM usage_logs
                  WHERE use_case = $use_case AND day BETWEEN $start AND $end)
            WHERE isfinite(x) GROUP BY bin ORDER BY bin
            """,
            {"use_case": use_case, "start": start, "end": end},
        ).fetchall()
        a = np.asarray(rows, dtype=float).reshape(-1, 4)
        histograms.append(LogHistogram(a[:, 0].astype(np.int64), a[:, 1], a[:, 2], a[:, 3]))
    return drift_bins(histograms[0], histograms[1], levels=quantile_bins)


def reference_inputs(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    as_of: dt.date,
    config: MonitoringConfig,
    known: str | None,
    quantile_edges: bool = False,
) -> MonitoringInputs:
    """One use case's inputs from raw scans, one statement each: the fixed bins binned from
    the raw rows, or (``quantile_edges``) the quantile-edge bins of before."""
    windows = Windows.for_night(as_of, config)
    production = known or infer_production_config(
        con, name, windows.reference_start, windows.current_end
    )
    series_start, series_end = series_range(as_of, config)
    hour_start, hour_end = hourly_range(as_of, config)
    binned = numeric_bins if quantile_edges else fixed_bins_raw
    return MonitoringInputs(
        use_case=name,
        windows=windows,
        production_config_id=production,
        current_all=window_stats(con, name, None, windows.current_start, windows.current_end),
        baseline=None
        if production is None
        else window_stats(con, name, production, windows.reference_start, windows.reference_end),
        current=None
        if production is None
        else window_stats(con, name, production, windows.current_start, windows.current_end),
        numeric={
            c: binned(con, name, c, windows, quantile_bins=config.quantile_bins)
            for c in config.numeric_fields
        },
        categorical={
            c: categorical_counts(con, name, c, windows) for c in config.categorical_fields
        },
        daily=metric_series(con, name, start=series_start, end=series_end),
        hourly=metric_series(con, name, start=hour_start, end=hour_end, granularity="hour")
        if config.hourly
        else None,
    )


#: relative error of a latency p95 read from the fixed bins
P95_BOUND = RATIO - 1
#: floating-point sums added per day, then over days, against one raw sum
SUM_RTOL = 1e-9


def _close(got: float | None, want: float | None, rtol: float) -> bool:
    if got is None or want is None:
        return got is want
    if np.isnan(want):
        return bool(np.isnan(got))
    return abs(got - want) <= rtol * abs(want) + 1e-12


def _assert_series_close(got: Any, want: Any) -> None:
    assert got["periods"] == want["periods"]
    assert set(got) == set(want)
    assert np.array_equal(got["requests"], want["requests"], equal_nan=True)
    for metric in want:
        if metric == "periods":
            continue
        assert got[metric].dtype == want[metric].dtype
        rtol = P95_BOUND if metric == "latency_p95" else SUM_RTOL
        assert np.array_equal(np.isnan(got[metric]), np.isnan(want[metric])), metric
        assert all(_close(g, w, rtol) for g, w in zip(got[metric], want[metric], strict=True))


def _assert_stats_close(got: Any, want: Any) -> None:
    assert (got is None) == (want is None)
    if want is None:
        return
    assert (got.n, got.successes, got.quality_n) == (want.n, want.successes, want.quality_n)
    for name in ("quality_sum", "quality_sum_squares", "cost_sum"):
        assert _close(getattr(got, name), getattr(want, name), SUM_RTOL), name
    assert _close(got.latency_p95, want.latency_p95, P95_BOUND)


def assert_inputs_close(got: MonitoringInputs, want: MonitoringInputs) -> None:
    assert got.use_case == want.use_case and got.windows == want.windows
    assert got.production_config_id == want.production_config_id
    for name in ("current_all", "baseline", "current"):
        _assert_stats_close(getattr(got, name), getattr(want, name))
    assert set(got.numeric) == set(want.numeric)
    for column, (edges, ref, cur) in want.numeric.items():
        g_edges, g_ref, g_cur = got.numeric[column]
        assert np.array_equal(g_edges, edges), column
        assert np.array_equal(g_ref, ref) and np.array_equal(g_cur, cur), column
        assert g_edges.dtype == g_ref.dtype == g_cur.dtype == edges.dtype
    assert set(got.categorical) == set(want.categorical)
    for column, (categories, ref, cur) in want.categorical.items():
        g_categories, g_ref, g_cur = got.categorical[column]
        assert g_categories == categories, column
        assert np.array_equal(g_ref, ref) and np.array_equal(g_cur, cur), column
    _assert_series_close(got.daily, want.daily)
    assert (got.hourly is None) == (want.hourly is None)
    if want.hourly is not None:
        _assert_series_close(got.hourly, want.hourly)
