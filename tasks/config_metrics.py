"""Per-configuration aggregates: the small table that search, frontier, budget and bandits share.

A *configuration* is what served a call: ``config_id`` when the log carries one, otherwise the
tuple (model, prompt_id, temperature, top_p, max_tokens) rendered as a stable key. One SQL pass
turns the rows of a window into sufficient statistics per use case x configuration; rows never
travel into Python.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

CONFIG_KEY_SQL = """
coalesce(config_id,
         model || '|' || coalesce(prompt_id, '-')
         || '|t=' || coalesce(cast(temperature AS VARCHAR), '-')
         || '|p=' || coalesce(cast(top_p AS VARCHAR), '-')
         || '|mt=' || coalesce(cast(max_tokens AS VARCHAR), '-'))
"""

CONFIG_METRICS_SQL = f"""
SELECT
    use_case,
    {CONFIG_KEY_SQL} AS config_key,
    any_value(model) AS model,
    any_value(prompt_id) AS prompt_id,
    any_value(temperature) AS temperature,
    any_value(top_p) AS top_p,
    any_value(max_tokens) AS max_tokens,
    count(*) AS n,
    count(*) FILTER (WHERE status = 'success') AS successes,
    count(quality) AS quality_n,
    coalesce(sum(quality), 0) AS quality_sum,
    coalesce(sum(quality * quality), 0) AS quality_sum_squares,
    sum(cost_usd) AS cost_sum,
    sum(cost_usd * cost_usd) AS cost_sum_squares,
    avg(latency_ms) AS latency_mean,
    quantile_cont(latency_ms, 0.95) AS latency_p95,
    sum(input_tokens + output_tokens) AS tokens_sum,
    count(DISTINCT day) AS days,
    min(ts) AS first_seen,
    max(ts) AS last_seen
FROM usage_logs
WHERE ($use_case IS NULL OR use_case = $use_case)
  AND ($start IS NULL OR day >= $start)
  AND ($end IS NULL OR day <= $end)
GROUP BY ALL
ORDER BY use_case, config_key
"""


def config_metrics(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pd.DataFrame:
    """Sufficient statistics per use case x configuration over ``[start, end]`` (UTC days).

    Columns: use_case, config_key, model, prompt_id, temperature, top_p, max_tokens, n,
    successes, quality_n, quality_sum, quality_sum_squares, cost_sum, cost_sum_squares,
    latency_mean, latency_p95, tokens_sum, days, first_seen, last_seen; plus derived
    quality_mean, cost_mean, error_rate.
    """
    frame = con.execute(CONFIG_METRICS_SQL, {"use_case": use_case, "start": start, "end": end}).df()
    n = frame["n"].astype(float)
    quality_n = frame["quality_n"].astype(float)
    frame["quality_mean"] = frame["quality_sum"] / quality_n.where(quality_n > 0)
    frame["cost_mean"] = frame["cost_sum"] / n
    frame["error_rate"] = 1.0 - frame["successes"] / n
    return frame


__all__ = ["CONFIG_KEY_SQL", "CONFIG_METRICS_SQL", "config_metrics"]
