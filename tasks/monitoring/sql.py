"""SQL pieces the monitoring aggregates share: metrics, sufficient statistics, the two windows.

A configuration is identified by the warehouse's one configuration key
(:data:`tasks.warehouse.config_metrics.CONFIG_KEY_SQL`: ``config_id`` when the logs carry it, else
``model|prompt|t=..|p=..|mt=..``), the same text the nightly flow and the registry use, so logs
without ``config_id`` are monitored like logs with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strategies.monitor.degradation import WindowStats
from strategies.monitor.settings import SERIES_METRIC_NAMES, Windows
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL

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


def windowed_rows(columns: str) -> str:
    """Rows of ``$use_cases`` in either window, with ``w`` = 0 (reference) or 1 (current)."""
    return f"""
    SELECT use_case, w, {columns} FROM (
        SELECT *, CASE WHEN day BETWEEN $ref_start AND $ref_end THEN 0
                       WHEN day BETWEEN $cur_start AND $cur_end THEN 1 END AS w
        FROM usage_logs
        WHERE list_contains($use_cases, use_case) AND day BETWEEN $ref_start AND $cur_end
    ) WHERE w IS NOT NULL
    """


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
    "stats_from_row",
    "window_params",
    "windowed_rows",
]
