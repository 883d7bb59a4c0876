"""The experiment SQL: per-unit sufficient statistics per look, per-arm extras, crossovers.

Why per unit: experiments randomize by ``unit_id`` (a user), and a heavy user's calls are
correlated (same user, same difficulty), so treating calls as independent understates the
variance and produces false winners. One DuckDB statement (:data:`STATS_SQL`) therefore sums
every metric per randomization unit (``unit_id``, else ``request_id``) and day, turns those into
*daily increments* of the per-unit sufficient statistics (``n``, sums, squares and
cross-products of each unit's running totals: ``(N + dn)^2 - N^2 = 2 N dn + dn^2``), and
cumulates the days up to each look with a window sum. The result, per experiment x variant x
metric x look day, is exactly the statistics of each unit's totals as of that day (a test checks
it against pandas on raw rows). Rows never leave DuckDB.
"""

from __future__ import annotations

import duckdb

from tasks.core.settings import REPO_ROOT

__all__ = [
    "CROSSOVER_SQL",
    "EXTRAS_SQL",
    "LOOKS_SELECT_TEMPLATE",
    "METRICS",
    "METRIC_COLUMNS",
    "SCHEMA_FILE",
    "STATS_SQL",
    "UNIT_DAY_RAW_SQL",
    "UNIT_DAY_SUMS_SQL",
    "apply_experiments_schema",
    "stats_sql",
]

SCHEMA_FILE = REPO_ROOT / "data" / "experiments_schema.sql"

# metric -> (native kind, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "quality": ("mean", True),
    "positive_feedback": ("proportion", True),
    "error_rate": ("proportion", False),
    "cost_usd": ("mean", False),
    "latency_ms": ("mean", False),
    "tokens_per_request": ("ratio", False),
}

STATS_SQL_TEMPLATE = """
WITH unit_day AS (          -- per unit and day, every metric: {unit_day_source}
{unit_day}
),
running AS (                -- each unit's totals before today (one sort, all metrics)
    SELECT unit_day.*, {prev_columns}
    FROM unit_day{prefix_join}
    WINDOW before_today AS (
        PARTITION BY experiment_id, variant_id, unit ORDER BY day)
),
daily_wide AS MATERIALIZED (  -- daily increments of the per-unit sufficient statistics:
    -- (N + dn)^2 - N^2 = 2 N dn + dn^2, likewise for den^2 and num * den; a unit counts in n
    -- from the first day its denominator is positive. Kahan sums (fsum) keep the digits.
    -- Every metric in one GROUP BY over the unit-days (wide), unpivoted once it is small.
    SELECT experiment_id, variant_id, day,
{daily_columns}
    FROM running
    GROUP BY ALL
),
daily AS (                  -- one row per experiment x variant x metric x day
{metric_selects}
)
{final_select}
"""

# the looks: cumulate the daily increments of `daily` (a CTE or a stored table) up to each look
LOOKS_SELECT_TEMPLATE = """SELECT experiment_id, variant_id, metric, day AS look_day,
    sum(n_new) OVER upto AS n,
    sum(num_sum) OVER upto AS num_sum, sum(num_sum_squares) OVER upto AS num_sum_squares,
    sum(den_sum) OVER upto AS den_sum, sum(den_sum_squares) OVER upto AS den_sum_squares,
    sum(sum_products) OVER upto AS sum_products, max(max_den) OVER upto AS max_den
FROM {daily}
WINDOW upto AS (PARTITION BY experiment_id, variant_id, metric ORDER BY day
                ROWS UNBOUNDED PRECEDING)
ORDER BY experiment_id, variant_id, metric, look_day"""

# The one pass over the raw rows: per unit and day, every metric. The daily rollup
# (tasks/experiments/rollups.py) stores exactly these sums per use case x day, and
# STATS_ROLLUP_SQL re-reads them from there (UNIT_DAY_ROLLUP_SQL).
UNIT_DAY_SUMS_SQL = """coalesce(sum(quality), 0) AS quality_num, count(quality) AS quality_den,
        count(*) FILTER (WHERE feedback = 1) AS feedback_num, count(feedback) AS feedback_den,
        count(*) FILTER (WHERE status <> 'success') AS error_num,
        count(*) AS requests,
        sum(cost_usd) AS cost_num, sum(latency_ms) AS latency_num,
        sum(input_tokens + output_tokens) AS tokens_num"""

UNIT_DAY_RAW_SQL = f"""
    SELECT experiment_id, variant_id, coalesce(unit_id, request_id) AS unit, day,
        {UNIT_DAY_SUMS_SQL}
    FROM usage_logs
    WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
      AND ($experiments IS NULL OR list_contains($experiments, experiment_id))
    GROUP BY ALL"""

# metric -> (per-unit numerator column, per-unit denominator column) in unit_day
METRIC_COLUMNS: dict[str, tuple[str, str]] = {
    "quality": ("quality_num", "quality_den"),
    "positive_feedback": ("feedback_num", "feedback_den"),
    "error_rate": ("error_num", "requests"),
    "cost_usd": ("cost_num", "requests"),
    "latency_ms": ("latency_num", "requests"),
    "tokens_per_request": ("tokens_num", "requests"),
}
_DAILY_STATS: tuple[str, ...] = (
    "n_new",
    "num_sum",
    "num_sum_squares",
    "den_sum",
    "den_sum_squares",
    "sum_products",
    "max_den",
)


def _daily_columns(metric: str, num: str, den: str) -> str:
    """One metric's daily increments, from today's (dn, dd) and the totals before (n, d)."""
    dn, dd = f"CAST({num} AS DOUBLE)", f"CAST({den} AS DOUBLE)"
    n, d = f"CAST(prev_{num} AS DOUBLE)", f"CAST(prev_{den} AS DOUBLE)"
    exprs = (
        f"count(*) FILTER (WHERE {d} = 0 AND {dd} > 0)",
        f"fsum({dn})",
        f"fsum(2 * {n} * {dn} + {dn} * {dn})",
        f"fsum({dd})",
        f"fsum(2 * {d} * {dd} + {dd} * {dd})",
        f"fsum({n} * {dd} + {d} * {dn} + {dn} * {dd})",
        f"max({d} + {dd})",
    )
    return ",\n".join(
        f"        {e} AS {metric}__{stat}" for e, stat in zip(exprs, _DAILY_STATS, strict=True)
    )


_NUMS_DENS = sorted({c for pair in METRIC_COLUMNS.values() for c in pair})


def stats_sql(
    unit_day: str,
    *,
    source: str = "usage_logs",
    prefix: str | None = None,
    increments_only: bool = False,
) -> str:
    """The statistics statement over a given ``unit_day`` CTE body.

    Args:
        unit_day: a SELECT with the columns ``experiment_id, variant_id, unit, day`` and the
            per-unit-day sums of :data:`UNIT_DAY_SUMS_SQL`, filtered on ``$as_of`` and
            ``$experiments``.
        source: where those rows come from (a comment in the statement).
        prefix: a SELECT of each unit's totals before ``unit_day``'s first day (columns
            ``experiment_id, variant_id, unit`` and the sums), added to the running totals:
            ``unit_day`` may then start at any day (:mod:`tasks.experiments.increments`).
        increments_only: return the daily increments (``experiment_id, variant_id, metric,
            day`` and the seven statistics) instead of the cumulated looks.

    Returns:
        The statement; parameters as ``unit_day`` and ``prefix`` use them.
    """
    if prefix is None:
        prev = ", ".join(f"sum({c}) OVER before_today - {c} AS prev_{c}" for c in _NUMS_DENS)
        join = ""
    else:
        prev = ", ".join(
            f"coalesce(prefix.{c}, 0) + sum(unit_day.{c}) OVER before_today - unit_day.{c} "
            f"AS prev_{c}"
            for c in _NUMS_DENS
        )
        join = f"\n    LEFT JOIN ({prefix}) AS prefix USING (experiment_id, variant_id, unit)"
    final = (
        "SELECT experiment_id, variant_id, metric, day, " + ", ".join(_DAILY_STATS) + " FROM daily"
        if increments_only
        else LOOKS_SELECT_TEMPLATE.replace("{daily}", "daily")
    )
    return (
        STATS_SQL_TEMPLATE.replace("{unit_day_source}", source)
        .replace("{unit_day}", unit_day)
        .replace("{final_select}", final)
        .replace(
            "{daily_columns}",
            ",\n".join(_daily_columns(m, num, den) for m, (num, den) in METRIC_COLUMNS.items()),
        )
        .replace(
            "{metric_selects}",
            "\n    UNION ALL\n".join(
                f"    SELECT experiment_id, variant_id, '{m}' AS metric, day, "
                + ", ".join(f"{m}__{stat} AS {stat}" for stat in _DAILY_STATS)
                + " FROM daily_wide"
                for m in METRIC_COLUMNS
            ),
        )
        .replace("{prev_columns}", prev)
        .replace("{prefix_join}", join)
    )


# The full-scan statement (the reference the rollup path is tested against).
STATS_SQL = stats_sql(UNIT_DAY_RAW_SQL)

EXTRAS_SQL = """
SELECT experiment_id, variant_id,
    quantile_cont(latency_ms, 0.95) AS latency_p95,
    min(day) AS first_day,
    count(DISTINCT coalesce(unit_id, request_id)) AS units,
    any_value(use_case) AS use_case
FROM usage_logs
WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
  AND ($experiments IS NULL OR list_contains($experiments, experiment_id))
GROUP BY ALL
"""

CROSSOVER_SQL = """
SELECT experiment_id, count(*) AS units
FROM (
    SELECT experiment_id, coalesce(unit_id, request_id) AS unit
    FROM usage_logs
    WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
    GROUP BY ALL HAVING count(DISTINCT variant_id) > 1
)
GROUP BY ALL
"""


def apply_experiments_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the experiment tables if they are missing (idempotent).

    Args:
        con: an open warehouse connection.
    """
    con.execute(SCHEMA_FILE.read_text(encoding="utf-8"))
