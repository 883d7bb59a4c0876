"""Monitoring's daily rollups: fixed-bin histograms, category counts, hourly series.

What a monitoring night reads besides the warehouse's own rollups
(:mod:`tasks.warehouse.rollup_specs`: ``rollup_config_day`` for counts and sums per configuration
and day, ``rollup_config_latency`` for a configuration's latency quantiles), as rows that depend
only on the raw rows of their (use case, day), so a window is a sum over its days:

- ``rollup_monitor_bins``: per use case x day x numeric field x fixed log-spaced bin
  (:mod:`strategies.rollup_quantiles`, ratio 1.01): rows, smallest and largest value. Drift bins
  and the use case's latency p95 are read from merged days.
- ``rollup_monitor_categories``: per use case x day x categorical field x category (missing
  values are the category ``(missing)``): rows.
- ``rollup_monitor_hourly``: per use case x day x UTC hour: rows, successes, quality count and
  sum, cost sum (the hourly series).
- ``rollup_monitor_hourly_latency``: per use case x day x UTC hour x bin: latency rows, smallest
  and largest value (the hourly latency p95). About 30,000 rows a day at 1 M calls a day, so it
  is NOT in the nightly set (:data:`MONITORING_SPECS`): only the hourly series reads it
  (``hourly = true`` in ``monitoring.toml``), and :func:`tasks.monitoring.series.metric_series`
  brings it up to date when it does (the first time: rolled up over every pair, i.e. backfilled;
  afterwards the pairs the nightly refreshes left pending for it in ``rollup_stale``), or, on a
  read-only connection, bins the window's raw rows with the same SELECT.

Every numeric and categorical field is rolled up, not only the configured ones, so editing
``monitoring.toml`` never needs a rebuild.
"""

from __future__ import annotations

from strategies.monitor.settings import CATEGORICAL_FIELDS, NUMERIC_FIELDS
from strategies.rollup_quantiles import bin_sql
from tasks.warehouse.rollups import RollupSpec

#: the category of a missing categorical value
MISSING = "(missing)"

_NUMERIC = ", ".join(f"CAST({f} AS DOUBLE) AS {f}" for f in NUMERIC_FIELDS)
_CATEGORIES = ", ".join(
    f"coalesce(CAST({f} AS VARCHAR), '{MISSING}') AS {f}" for f in CATEGORICAL_FIELDS
)
_HOUR = "CAST(hour(timezone('UTC', ts)) AS TINYINT)"


def _bins_select(source: str) -> str:
    return f"""
    SELECT use_case, day, field, {bin_sql("x")} AS bin, count(*) AS n, min(x), max(x)
    FROM (
        UNPIVOT (SELECT use_case, day, {_NUMERIC} FROM {source})
        ON {", ".join(NUMERIC_FIELDS)} INTO NAME field VALUE x
    )
    WHERE isfinite(x)
    GROUP BY use_case, day, field, bin
    """


def _categories_select(source: str) -> str:
    return f"""
    SELECT use_case, day, field, category, count(*) AS n
    FROM (
        UNPIVOT (SELECT use_case, day, {_CATEGORIES} FROM {source})
        ON {", ".join(CATEGORICAL_FIELDS)} INTO NAME field VALUE category
    )
    GROUP BY use_case, day, field, category
    """


def _hourly_select(source: str) -> str:
    return f"""
    SELECT use_case, day, {_HOUR} AS hour, count(*) AS n,
           count(*) FILTER (WHERE status = 'success'), count(quality),
           coalesce(sum(quality), 0), coalesce(sum(cost_usd), 0), count(cost_usd)
    FROM {source}
    GROUP BY use_case, day, hour
    """


def hourly_latency_select(source: str) -> str:
    """Per use case x day x UTC hour x latency bin of ``source``: rows, smallest, largest."""
    return f"""
    SELECT use_case, day, {_HOUR} AS hour, {bin_sql("latency_ms")} AS bin, count(*) AS n,
           min(latency_ms) AS vmin, max(latency_ms) AS vmax
    FROM {source}
    WHERE isfinite(latency_ms)
    GROUP BY use_case, day, hour, bin
    """


MONITOR_BINS = RollupSpec(
    name="rollup_monitor_bins",
    columns_sql="""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, field VARCHAR NOT NULL,
        bin INTEGER NOT NULL, n BIGINT NOT NULL, vmin DOUBLE NOT NULL, vmax DOUBLE NOT NULL
    """,
    key=("use_case", "day", "field", "bin"),
    select=_bins_select,
)

MONITOR_CATEGORIES = RollupSpec(
    name="rollup_monitor_categories",
    columns_sql="""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, field VARCHAR NOT NULL,
        category VARCHAR NOT NULL, n BIGINT NOT NULL
    """,
    key=("use_case", "day", "field", "category"),
    select=_categories_select,
)

MONITOR_HOURLY = RollupSpec(
    name="rollup_monitor_hourly",
    columns_sql="""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, hour TINYINT NOT NULL,
        n BIGINT NOT NULL, successes BIGINT NOT NULL, quality_n BIGINT NOT NULL,
        quality_sum DOUBLE NOT NULL, cost_sum DOUBLE NOT NULL, cost_n BIGINT NOT NULL
    """,
    key=("use_case", "day", "hour"),
    select=_hourly_select,
)

MONITOR_HOURLY_LATENCY = RollupSpec(
    name="rollup_monitor_hourly_latency",
    columns_sql="""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, hour TINYINT NOT NULL,
        bin INTEGER NOT NULL, n BIGINT NOT NULL, vmin DOUBLE NOT NULL, vmax DOUBLE NOT NULL
    """,
    key=("use_case", "day", "hour", "bin"),
    select=hourly_latency_select,
)

# the nightly set (tasks/nightly/rollup_set.py); the hourly latency bins are refreshed on use
MONITORING_SPECS: tuple[RollupSpec, ...] = (MONITOR_BINS, MONITOR_CATEGORIES, MONITOR_HOURLY)

__all__ = [
    "MISSING",
    "MONITORING_SPECS",
    "MONITOR_BINS",
    "MONITOR_CATEGORIES",
    "MONITOR_HOURLY",
    "MONITOR_HOURLY_LATENCY",
    "hourly_latency_select",
]
