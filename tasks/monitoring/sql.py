"""SQL pieces the monitoring aggregates share: metrics, sufficient statistics, the two windows.

The monitoring inputs are read from daily rollups (:mod:`tasks.monitoring.rollups` and the
warehouse's :mod:`tasks.warehouse.rollup_specs`): a window is a sum of its days' rollup rows
(:func:`windowed_rollup`). :data:`SERIES_METRICS` and :data:`STATS_SQL` are the definitions on raw
rows: what the rollup reads equal (tested over a simulated month, tests/monitor_tests) and what
the benchmarks' bare DuckDB baseline computes.

A configuration is identified by the warehouse's one configuration key
(:data:`tasks.warehouse.config_metrics.CONFIG_KEY_SQL`: ``config_id`` when the logs carry it, else
``model|prompt|t=..|p=..|mt=..``), the same text the nightly flow and the registry use, so logs
without ``config_id`` are monitored like logs with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import numpy as np

from strategies.monitor.degradation import WindowStats
from strategies.monitor.settings import SERIES_METRIC_NAMES, Windows
from strategies.rollup_quantiles import quantile_by_group
from tasks.warehouse.rollup_specs import CONFIG_KEY_SQL

#: the configuration key of a row, as everywhere else in the warehouse
KEY_SQL = " ".join(CONFIG_KEY_SQL.split())

SERIES_METRICS = {
    "quality": "avg(quality)",
    "success_rate": "avg(CASE WHEN status = 'success' THEN 1.0 ELSE 0.0 END)",
    "cost_per_request": "avg(cost_usd)",
    "latency_p95": "quantile_cont(latency_ms, 0.95)",
    "requests": "count(*)::DOUBLE",
}
assert tuple(SERIES_METRICS) == SERIES_METRIC_NAMES  # one list of names, here with their SQL

STATS_SQL = """count(*), count(*) FILTER (WHERE status = 'success'), count(quality),
    coalesce(sum(quality), 0), coalesce(sum(quality * quality), 0),
    coalesce(sum(cost_usd), 0), quantile_cont(latency_ms, 0.95)"""

#: what serves outside experiments (or an experiment's control): the nightly flow's incumbent
INCUMBENT_SQL = "count(*) FILTER (WHERE experiment_id IS NULL OR variant_id = 'control')"


def window_params(windows: Windows) -> dict[str, Any]:
    """The four window bounds as statement parameters."""
    return {
        "ref_start": windows.reference_start,
        "ref_end": windows.reference_end,
        "cur_start": windows.current_start,
        "cur_end": windows.current_end,
    }


def windowed_rollup(table: str, where: str = "") -> str:
    """Rollup rows of ``$use_cases`` in either window, with ``w`` = 0 (reference) or 1 (current).

    Args:
        table: a rollup table keyed by (use_case, day, ...).
        where: more conditions, starting with ``AND``.

    Returns:
        A parenthesised subquery.
    """
    return f"""(
    SELECT * FROM (
        SELECT *, CASE WHEN day BETWEEN $ref_start AND $ref_end THEN 0
                       WHEN day BETWEEN $cur_start AND $cur_end THEN 1 END AS w
        FROM {table}
        WHERE list_contains($use_cases, use_case) AND day BETWEEN $ref_start AND $cur_end {where}
    ) WHERE w IS NOT NULL)"""


def _plain(array: Any) -> np.ndarray:
    """A fetched column as a plain array (dates as ``datetime.date`` objects)."""
    values = np.asarray(array)
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[D]").astype(object)
    return values


def quantiles_by_key(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any],
    *,
    keys: int,
    q: float = 0.95,
) -> dict[tuple[Any, ...], float]:
    """``quantile_cont(q)`` per key, read from merged fixed bins.

    Args:
        con: warehouse connection.
        sql: a SELECT of ``keys`` key columns, then ``n``, ``vmin``, ``vmax`` per (key, bin),
            ordered by the keys and the bin.
        params: its parameters.
        keys: how many key columns lead.
        q: the probability.

    Returns:
        key tuple -> the estimate (within ``RATIO - 1`` of ``quantile_cont``; see
        :mod:`strategies.rollup_quantiles`).
    """
    used = {k: v for k, v in params.items() if f"${k}" in sql}  # DuckDB refuses extra names
    data = con.execute(sql, used).fetchnumpy()
    columns = list(data)
    if len(columns) != keys + 3 or len(data[columns[0]]) == 0:
        return {}
    key_arrays = [_plain(data[c]) for c in columns[:keys]]
    size = len(key_arrays[0])
    change = np.zeros(size, dtype=bool)
    change[0] = True
    for array in key_arrays:
        change[1:] |= array[1:] != array[:-1]
    group = np.cumsum(change) - 1
    starts = np.flatnonzero(change)
    labels = list(zip(*(array[starts].tolist() for array in key_arrays), strict=True))
    n, vmin, vmax = (np.asarray(data[c], dtype=float) for c in columns[keys:])
    ids, values = quantile_by_group(group, n, vmin, vmax, q)
    return {labels[int(i)]: float(v) for i, v in zip(ids, values, strict=True)}


def stats_from_row(row: Sequence[Any]) -> WindowStats:
    """A :class:`WindowStats` from the seven columns of :data:`STATS_SQL`."""
    return WindowStats(
        n=int(row[0]),
        successes=int(row[1]),
        quality_n=int(row[2]),
        quality_sum=float(row[3]),
        quality_sum_squares=float(row[4]),
        cost_sum=float(row[5]),
        latency_p95=None if row[6] is None else float(row[6]),
    )


__all__ = [
    "INCUMBENT_SQL",
    "KEY_SQL",
    "SERIES_METRICS",
    "STATS_SQL",
    "quantiles_by_key",
    "stats_from_row",
    "window_params",
    "windowed_rollup",
]
