"""Experiment rollups: per experiment x variant x unit x day sums, so analysis never scans raw rows.

Why: the nightly analysis (:data:`tasks.experiments.sql.STATS_SQL`) first sums every metric per
randomization unit and day (its ``unit_day`` CTE) and then works only on those sums. A unit-day's
sums depend only on the raw rows of that (use_case, day), so they are a daily rollup
(:data:`EXPERIMENT_UNITS`): each night refreshes only the days that changed (new or late rows,
:func:`tasks.warehouse.rollups.refresh_rollups`) and :data:`STATS_ROLLUP_SQL` runs the same
running sums, daily increments and cumulative looks over the rollup table. The result is the
same: the rollup stores exactly the ``unit_day`` sums (counts are integers; the re-grouping over
use cases adds one value per group when an experiment lives in one use case) and the rest of the
statement is the shared text of :func:`tasks.experiments.sql.stats_sql` (Kahan ``fsum`` included).

The other inputs of a nightly look, from the same or two small rollups:

* units per arm, first day, crossovers (units in several variants), the stop-reset baseline:
  ``count(DISTINCT unit)`` over the cumulative per-unit totals :data:`UNIT_TOTALS` (one row per
  unit, kept by the refresh from the per-unit-day rows: :mod:`tasks.experiments.unit_totals`),
  filtered on ``first_day <= $as_of`` (exact: the unit is in the key, and a unit has a row on or
  before ``as_of`` exactly when its first day is);
* the latency p95 reported beside the mean: :data:`EXPERIMENT_LATENCY` counts calls (with the
  smallest and largest value) in the shared fixed log-spaced bins of
  :mod:`strategies.rollup_quantiles` (ratio 1.01); the p95 of the merged bins
  (:func:`latency_p95`) is within a relative ``r - 1 = 1%`` of ``quantile_cont``
  (:data:`P95_RELATIVE_ERROR`; tested against ``quantile_cont``).

Which configuration each variant served and an experiment's traffic share come from the
warehouse's ``rollup_arm_day`` (:mod:`tasks.warehouse.rollup_specs`).

Size: the unit rollup has one row per unit-day, so it is as large as the distinct unit-days
(the raw row count when logs carry no ``unit_id``, since the unit then falls back to the
request id); the per-unit running sums need it from each experiment's first changed day on.
Whole-window reads use the per-unit totals instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb

from strategies.rollup_quantiles import RATIO, bin_sql, quantile_by_group
from tasks.experiments.sql import UNIT_DAY_SUMS_SQL, stats_sql
from tasks.experiments.unit_totals import UnitTotals
from tasks.warehouse.rollup_specs import ARM_DAY
from tasks.warehouse.rollups import RollupSpec, rollups_current

__all__ = [
    "CROSSOVER_ROLLUP_SQL",
    "EXPERIMENT_LATENCY",
    "EXPERIMENT_READS",
    "EXPERIMENT_SPECS",
    "EXPERIMENT_UNITS",
    "EXTRAS_ROLLUP_SQL",
    "LAST_DAY_ROLLUP_SQL",
    "P95_RELATIVE_ERROR",
    "STATS_ROLLUP_SQL",
    "UNITS_ROLLUP_SQL",
    "UNIT_DAY_ROLLUP_SQL",
    "UNIT_SUMS_ROLLUP_SQL",
    "UNIT_TOTALS",
    "latency_p95",
    "rollups_current",
]

P95_RELATIVE_ERROR = RATIO - 1.0

_EXPERIMENT_ROWS = "experiment_id IS NOT NULL AND variant_id IS NOT NULL"
# the unit_day sums of STATS_SQL, token sum stored as BIGINT (Arrow has no HUGEINT)
_TOKENS = "sum(input_tokens + output_tokens) AS tokens_num"
assert _TOKENS in UNIT_DAY_SUMS_SQL
_UNIT_DAY_SUMS = UNIT_DAY_SUMS_SQL.replace(
    _TOKENS, "CAST(sum(input_tokens + output_tokens) AS BIGINT) AS tokens_num"
)

UNIT_TOTALS = UnitTotals(
    name="rollup_experiment_unit_totals",
    source="rollup_experiment_units",
    sum_types=(
        "DOUBLE",
        "BIGINT",
        "BIGINT",
        "BIGINT",
        "BIGINT",
        "BIGINT",
        "DOUBLE",
        "DOUBLE",
        "BIGINT",
    ),
)

EXPERIMENT_UNITS = RollupSpec(
    name="rollup_experiment_units",
    columns_sql="""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, experiment_id VARCHAR NOT NULL,
        variant_id VARCHAR NOT NULL, unit VARCHAR NOT NULL,
        quality_num DOUBLE NOT NULL, quality_den BIGINT NOT NULL,
        feedback_num BIGINT NOT NULL, feedback_den BIGINT NOT NULL, error_num BIGINT NOT NULL,
        requests BIGINT NOT NULL, cost_num DOUBLE, latency_num DOUBLE, tokens_num BIGINT
    """,
    key=("use_case", "day", "experiment_id", "variant_id", "unit"),
    select=lambda source: (
        f"""
        SELECT use_case, day, experiment_id, variant_id, coalesce(unit_id, request_id) AS unit,
            {_UNIT_DAY_SUMS}
        FROM {source}
        WHERE {_EXPERIMENT_ROWS}
        GROUP BY ALL
    """
    ),
    derived=UNIT_TOTALS,
)

EXPERIMENT_LATENCY = RollupSpec(
    name="rollup_experiment_latency",
    columns_sql="""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, experiment_id VARCHAR NOT NULL,
        variant_id VARCHAR NOT NULL, bin INTEGER NOT NULL, n BIGINT NOT NULL,
        vmin DOUBLE NOT NULL, vmax DOUBLE NOT NULL
    """,
    key=("use_case", "day", "experiment_id", "variant_id", "bin"),
    select=lambda source: (
        f"""
        SELECT use_case, day, experiment_id, variant_id, {bin_sql("latency_ms")} AS bin,
            count(*) AS n, min(latency_ms) AS vmin, max(latency_ms) AS vmax
        FROM {source}
        WHERE {_EXPERIMENT_ROWS} AND latency_ms IS NOT NULL
        GROUP BY ALL
    """
    ),
)

EXPERIMENT_SPECS: tuple[RollupSpec, ...] = (EXPERIMENT_UNITS, EXPERIMENT_LATENCY)
# what the analysis reads: these and the warehouse's experiment arms (for the last day)
EXPERIMENT_READS: tuple[RollupSpec, ...] = (*EXPERIMENT_SPECS, ARM_DAY)

_FILTER = """day <= $as_of
      AND ($experiments IS NULL OR list_contains($experiments, experiment_id))"""

# the unit_day CTE of STATS_SQL, re-read from the rollup: the same columns and types (one use
# case per experiment: each group sums one stored value)
UNIT_SUMS_ROLLUP_SQL = """sum(quality_num) AS quality_num,
        CAST(sum(quality_den) AS BIGINT) AS quality_den,
        CAST(sum(feedback_num) AS BIGINT) AS feedback_num,
        CAST(sum(feedback_den) AS BIGINT) AS feedback_den,
        CAST(sum(error_num) AS BIGINT) AS error_num, CAST(sum(requests) AS BIGINT) AS requests,
        sum(cost_num) AS cost_num, sum(latency_num) AS latency_num,
        sum(tokens_num) AS tokens_num"""
UNIT_DAY_ROLLUP_SQL = f"""    SELECT experiment_id, variant_id, unit, day,
        {UNIT_SUMS_ROLLUP_SQL}
    FROM {EXPERIMENT_UNITS.name}
    WHERE {_FILTER}
    GROUP BY ALL"""

STATS_ROLLUP_SQL = stats_sql(UNIT_DAY_ROLLUP_SQL, source=EXPERIMENT_UNITS.name)

# per arm: first day, units, use case (the p95 comes from latency_p95, NULL here), from the
# per-unit totals: a unit has a row on or before as_of exactly when its first day is
_TOTALS_FILTER = """first_day <= $as_of
      AND ($experiments IS NULL OR list_contains($experiments, experiment_id))"""
EXTRAS_ROLLUP_SQL = f"""
SELECT experiment_id, variant_id, CAST(NULL AS DOUBLE) AS latency_p95,
    min(first_day) AS first_day, count(DISTINCT unit) AS units, any_value(use_case) AS use_case
FROM {UNIT_TOTALS.name}
WHERE {_TOTALS_FILTER}
GROUP BY ALL
"""

_MERGED_BINS_SQL = f"""
SELECT experiment_id, variant_id, bin, sum(n) AS n, min(vmin) AS vmin, max(vmax) AS vmax
FROM {EXPERIMENT_LATENCY.name}
WHERE {_FILTER}
GROUP BY ALL
ORDER BY experiment_id, variant_id, bin
"""


def latency_p95(
    con: duckdb.DuckDBPyConnection, params: Mapping[str, Any]
) -> dict[tuple[str, str], float]:
    """Per (experiment, variant), the latency p95 from the merged daily bins.

    Within a relative :data:`P95_RELATIVE_ERROR` of ``quantile_cont`` on the raw rows
    (:func:`strategies.rollup_quantiles.quantile_by_group`); only the merged bins (a few
    hundred rows per arm) leave DuckDB.

    Args:
        con: the warehouse.
        params: ``as_of`` and ``experiments`` as the statistics use them.

    Returns:
        The p95 per (experiment, variant) with latency rows.
    """
    rows = con.execute(_MERGED_BINS_SQL, dict(params)).fetchall()
    if not rows:
        return {}
    keys = [(str(r[0]), str(r[1])) for r in rows]
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    labels, values = quantile_by_group(
        [ids[k] for k in keys],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
        0.95,
    )
    by_id = {i: k for k, i in ids.items()}
    return {by_id[int(i)]: float(v) for i, v in zip(labels, values, strict=True)}


CROSSOVER_ROLLUP_SQL = f"""
SELECT experiment_id, count(*) AS units
FROM (
    SELECT experiment_id, unit
    FROM {UNIT_TOTALS.name}
    WHERE first_day <= $as_of
    GROUP BY ALL HAVING count(DISTINCT variant_id) > 1
)
GROUP BY ALL
"""

UNITS_ROLLUP_SQL = f"""
SELECT variant_id, count(DISTINCT unit) AS units, max(last_day) AS last_day
FROM {UNIT_TOTALS.name}
WHERE experiment_id = $experiment
GROUP BY ALL
"""

# the last day with experiment traffic (variant or not, as the raw statement counts it)
LAST_DAY_ROLLUP_SQL = f"SELECT max(day) FROM {ARM_DAY.name}"
