"""The warehouse's own daily rollups: configuration x day statistics, latency bins, experiment arms.

What the nightly aggregate step and the per-configuration metrics read (tasks/nightly/inputs.py,
tasks/warehouse/config_metrics.py, tasks/nightly/night.py), as additive per-day rows:

- ``rollup_config_day``: per use case x day x configuration key: counts, successes, errors,
  incumbent traffic (outside experiments or in a control arm), quality / cost / latency sums
  and sums of squares, tokens, first/last seen, and one value of each configuration parameter.
- ``rollup_config_latency``: per use case x day x configuration key x log-spaced latency bin
  (strategies/rollup_quantiles.py): calls, smallest and largest latency (quantiles from merged
  bins within a relative :data:`LATENCY_RELATIVE_BOUND`, see :func:`binned_quantiles`).
- ``rollup_arm_day``: per use case x day x experiment x variant x configuration key: calls and
  parameters (which configuration each experiment arm served, experiment traffic share).

Night metrics (requests, quality, cost, p95, error rate, spend of one day) and the bootstrap
incumbent are sums over ``rollup_config_day`` / ``rollup_config_latency``: no table of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb

from strategies.rollup_quantiles import RATIO, bin_sql, quantile_by_group
from tasks.warehouse.rollups import RollupSpec

CONFIG_KEY_SQL = """
coalesce(config_id,
         model || '|' || coalesce(prompt_id, '-')
         || '|t=' || coalesce(cast(temperature AS VARCHAR), '-')
         || '|p=' || coalesce(cast(top_p AS VARCHAR), '-')
         || '|mt=' || coalesce(cast(max_tokens AS VARCHAR), '-'))
"""
"""A configuration's key: ``config_id`` when logged, else its parameters rendered stably."""

LATENCY_RATIO = RATIO
"""Ratio between consecutive latency bin edges (strategies/rollup_quantiles.py, shared with
monitoring): bin b holds [r**b, r**(b+1)) milliseconds, with the smallest and largest value."""
LATENCY_RELATIVE_BOUND = RATIO - 1.0
"""A quantile read from merged bins is within this relative distance of ``quantile_cont``."""


def binned_quantiles(
    con: duckdb.DuckDBPyConnection,
    bins: str,
    params: Mapping[str, Any],
    group: tuple[str, ...],
    q: float,
) -> dict[tuple[Any, ...], float]:
    """Per ``group``, the ``q`` quantile of values summarised as fixed log-spaced bins.

    The bins of every day are merged in SQL (counts add, ``vmin``/``vmax`` take min/max); the
    quantile is :func:`strategies.rollup_quantiles.quantile_by_group` over the merged bins
    (DuckDB's ``quantile_cont`` within a relative :data:`LATENCY_RELATIVE_BOUND`).

    Args:
        con: the warehouse.
        bins: a relation with the group columns and ``bin``, ``n``, ``vmin``, ``vmax``.
        params: its SQL parameters.
        group: the group columns.
        q: the quantile, in [0, 1].

    Returns:
        The quantile per group key (a tuple of the group columns' values).
    """
    g = ", ".join(group)
    frame = con.execute(
        f"""
        WITH b AS (
            SELECT {g}, bin, sum(n) AS n, min(vmin) AS vmin, max(vmax) AS vmax
            FROM {bins} GROUP BY ALL
        )
        SELECT dense_rank() OVER (ORDER BY {g}) AS gid, {g}, n, vmin, vmax
        FROM b ORDER BY gid, bin
        """,
        dict(params),
    ).df()
    if frame.empty:
        return {}
    _, values = quantile_by_group(
        frame["gid"].to_numpy(), frame["n"], frame["vmin"], frame["vmax"], q
    )
    keys = frame.drop_duplicates("gid")[list(group)].itertuples(index=False, name=None)
    return {tuple(k): float(v) for k, v in zip(keys, values, strict=True)}


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
        bin INTEGER NOT NULL, n BIGINT NOT NULL, vmin DOUBLE NOT NULL, vmax DOUBLE NOT NULL
    """,
    key=("use_case", "day", "config_key", "bin"),
    select=lambda source: (
        f"""
        SELECT use_case, day, {CONFIG_KEY_SQL} AS config_key,
               {bin_sql("latency_ms")} AS bin, count(*), min(latency_ms), max(latency_ms)
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
    "binned_quantiles",
]
