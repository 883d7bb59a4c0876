"""The warehouse's own daily rollups: configuration x day statistics, latency bins, experiment arms.

What the nightly aggregate step and the per-configuration metrics read (tasks/nightly/inputs.py,
tasks/warehouse/config_metrics.py, tasks/nightly/night.py), as additive per-day rows:

- ``rollup_config_day``: per use case x day x configuration key: counts, successes, errors,
  incumbent traffic (outside experiments or in a control arm), quality / cost / latency sums
  and sums of squares, tokens, first/last seen, and one value of each configuration parameter.
- ``rollup_config_latency``: per use case x day x configuration key x log-spaced latency bin:
  the number of calls (quantiles from merged bins, see :data:`LATENCY_RATIO`).
- ``rollup_arm_day``: per use case x day x experiment x variant x configuration key: calls and
  parameters (which configuration each experiment arm served, experiment traffic share).

Night metrics (requests, quality, cost, p95, error rate, spend of one day) and the bootstrap
incumbent are sums over ``rollup_config_day`` / ``rollup_config_latency``: no table of their own.
"""

from __future__ import annotations

import math

from tasks.warehouse.rollups import RollupSpec

CONFIG_KEY_SQL = """
coalesce(config_id,
         model || '|' || coalesce(prompt_id, '-')
         || '|t=' || coalesce(cast(temperature AS VARCHAR), '-')
         || '|p=' || coalesce(cast(top_p AS VARCHAR), '-')
         || '|mt=' || coalesce(cast(max_tokens AS VARCHAR), '-'))
"""
"""A configuration's key: ``config_id`` when logged, else its parameters rendered stably."""

LATENCY_RATIO = 1.02
"""Ratio between consecutive latency bin edges: bin b holds [r**b, r**(b+1)) milliseconds.

A quantile read from merged bins takes each order statistic at its bin's geometric middle
r**(b + 1/2), so it is within a relative sqrt(r) - 1 (< 1 %) of ``quantile_cont`` on the raw rows.
"""
LATENCY_RELATIVE_BOUND = math.sqrt(LATENCY_RATIO) - 1.0
ZERO_BIN = -1_000_000
"""The bin of latencies <= 0 (read back as 0)."""


def latency_bin_sql(column: str, ratio: float = LATENCY_RATIO) -> str:
    """SQL for the log-spaced bin of ``column`` (``ZERO_BIN`` for values <= 0).

    Args:
        column: a positive numeric SQL expression.
        ratio: the ratio between bin edges.

    Returns:
        An INTEGER SQL expression.
    """
    return (
        f"CASE WHEN {column} > 0 THEN CAST(floor(ln({column}) / {math.log(ratio)!r}) AS INTEGER) "
        f"ELSE {ZERO_BIN} END"
    )


def latency_of_bin_sql(column: str, ratio: float = LATENCY_RATIO) -> str:
    """SQL for the value a bin stands for: its geometric middle (0 for ``ZERO_BIN``).

    Args:
        column: the bin column.
        ratio: the ratio between bin edges.

    Returns:
        A DOUBLE SQL expression.
    """
    step = math.log(ratio)
    return f"CASE WHEN {column} = {ZERO_BIN} THEN 0.0 ELSE exp(({column} + 0.5) * {step!r}) END"


def quantile_from_bins_sql(bins: str, group: tuple[str, ...], q: float) -> str:
    """SQL: per ``group``, the ``q`` quantile of values summarised as (bin, n) rows.

    The same interpolation as DuckDB's ``quantile_cont`` (position q * (N - 1) between two
    order statistics), each order statistic read as its bin's geometric middle: within a
    relative :data:`LATENCY_RELATIVE_BOUND` of ``quantile_cont`` on the raw values.

    Args:
        bins: a relation with the group columns, ``bin`` and ``n`` (several rows per bin add).
        group: the group columns.
        q: the quantile, in [0, 1].

    Returns:
        A SELECT of the group columns and ``value``.
    """
    g = ", ".join(group)
    return f"""
        SELECT {g}, x_lo + h * (x_hi - x_lo) AS value
        FROM (
            SELECT {g}, any_value(h) AS h,
                   max(CASE WHEN k >= hi - n AND k < hi THEN x END) AS x_lo,
                   max(CASE WHEN k1 >= hi - n AND k1 < hi THEN x END) AS x_hi
            FROM (
                SELECT *, floor(pos) AS k, least(floor(pos) + 1, total - 1) AS k1,
                       pos - floor(pos) AS h
                FROM (
                    SELECT *, {float(q)!r} * (total - 1) AS pos
                    FROM (
                        SELECT {g}, bin, n, {latency_of_bin_sql("bin")} AS x,
                               sum(n) OVER (PARTITION BY {g} ORDER BY bin
                                            ROWS UNBOUNDED PRECEDING) AS hi,
                               sum(n) OVER (PARTITION BY {g}) AS total
                        FROM (SELECT {g}, bin, sum(n) AS n FROM {bins} GROUP BY ALL)
                    )
                )
            )
            GROUP BY ALL
        )
    """


CONFIG_DAY = RollupSpec(
    name="rollup_config_day",
    columns_sql="""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, config_key VARCHAR NOT NULL,
        model VARCHAR, provider VARCHAR, prompt_id VARCHAR, temperature DOUBLE, top_p DOUBLE,
        max_tokens INTEGER,
        n BIGINT NOT NULL, successes BIGINT NOT NULL, errors BIGINT NOT NULL,
        incumbent_n BIGINT NOT NULL,
        quality_n BIGINT NOT NULL, quality_sum DOUBLE NOT NULL, quality_sum_squares DOUBLE NOT NULL,
        cost_sum DOUBLE NOT NULL, cost_sum_squares DOUBLE NOT NULL,
        latency_sum DOUBLE NOT NULL, latency_sum_squares DOUBLE NOT NULL,
        tokens_sum HUGEINT NOT NULL,
        first_seen TIMESTAMPTZ NOT NULL, last_seen TIMESTAMPTZ NOT NULL
    """,
    key=("use_case", "day", "config_key"),
    select=lambda source: (
        f"""
        SELECT use_case, day, {CONFIG_KEY_SQL} AS config_key,
               any_value(model), any_value(provider), any_value(prompt_id),
               any_value(temperature), any_value(top_p), any_value(max_tokens),
               count(*), count(*) FILTER (WHERE status = 'success'),
               count(*) FILTER (WHERE status = 'error'),
               count(*) FILTER (WHERE experiment_id IS NULL OR variant_id = 'control'),
               count(quality), coalesce(sum(quality), 0), coalesce(sum(quality * quality), 0),
               sum(cost_usd), sum(cost_usd * cost_usd),
               sum(latency_ms), sum(latency_ms * latency_ms),
               sum(input_tokens + output_tokens), min(ts), max(ts)
        FROM {source}
        GROUP BY use_case, day, config_key
    """
    ),
)

CONFIG_LATENCY = RollupSpec(
    name="rollup_config_latency",
    columns_sql="""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, config_key VARCHAR NOT NULL,
        bin INTEGER NOT NULL, n BIGINT NOT NULL
    """,
    key=("use_case", "day", "config_key", "bin"),
    select=lambda source: (
        f"""
        SELECT use_case, day, {CONFIG_KEY_SQL} AS config_key,
               {latency_bin_sql("latency_ms")} AS bin, count(*)
        FROM {source}
        GROUP BY use_case, day, config_key, bin
    """
    ),
)

ARM_DAY = RollupSpec(
    name="rollup_arm_day",
    columns_sql="""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, experiment_id VARCHAR NOT NULL,
        variant_id VARCHAR, config_key VARCHAR NOT NULL, n BIGINT NOT NULL,
        model VARCHAR, provider VARCHAR, prompt_id VARCHAR, temperature DOUBLE, top_p DOUBLE,
        max_tokens INTEGER
    """,
    key=("use_case", "day", "experiment_id", "variant_id", "config_key"),
    select=lambda source: (
        f"""
        SELECT use_case, day, experiment_id, variant_id, {CONFIG_KEY_SQL} AS config_key,
               count(*), any_value(model), any_value(provider), any_value(prompt_id),
               any_value(temperature), any_value(top_p), any_value(max_tokens)
        FROM {source}
        WHERE experiment_id IS NOT NULL
        GROUP BY use_case, day, experiment_id, variant_id, config_key
    """
    ),
)

WAREHOUSE_SPECS: tuple[RollupSpec, ...] = (CONFIG_DAY, CONFIG_LATENCY, ARM_DAY)

__all__ = [
    "ARM_DAY",
    "CONFIG_DAY",
    "CONFIG_KEY_SQL",
    "CONFIG_LATENCY",
    "LATENCY_RATIO",
    "LATENCY_RELATIVE_BOUND",
    "WAREHOUSE_SPECS",
    "ZERO_BIN",
    "latency_bin_sql",
    "latency_of_bin_sql",
    "quantile_from_bins_sql",
]
