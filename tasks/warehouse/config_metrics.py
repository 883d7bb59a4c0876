"""Per-configuration aggregates: the small table that search, frontier, budget and bandits share.

A *configuration* is what served a call: ``config_id`` when the log carries one, otherwise the
tuple (model, prompt_id, temperature, top_p, max_tokens) rendered as a stable key. One SQL pass
turns the rows of a window into sufficient statistics per use case x configuration; rows never
travel into Python.

The nightly flow asks for the same few windows once per use case and strategy (search, frontier,
bandits, budget: about a hundred scans for 20 use cases). :class:`SharedConfigMetrics` computes
each window once for every use case; the strategies slice it instead of scanning again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping

import duckdb
import pandas as pd

from tasks.warehouse.connection import require_connection

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


Window = tuple[dt.date | None, dt.date | None]


@dataclasses.dataclass(frozen=True)
class SharedConfigMetrics:
    """:func:`config_metrics` of every use case over a few windows, each computed in one pass.

    Built once per night (``SharedConfigMetrics.compute``) and sliced per use case; a window that
    was not computed is simply not there (``slice`` returns ``None`` and the caller queries).

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TABLE usage_logs AS SELECT 'a' AS use_case, 'c1' AS config_id, "
    ...     "'m' AS model, NULL AS prompt_id, NULL AS temperature, NULL AS top_p, "
    ...     "NULL AS max_tokens, 'success' AS status, 0.8 AS quality, 0.01 AS cost_usd, "
    ...     "100.0 AS latency_ms, 10 AS input_tokens, 5 AS output_tokens, "
    ...     "DATE '2026-10-01' AS day, TIMESTAMP '2026-10-01 10:00' AS ts")
    >>> shared = SharedConfigMetrics.compute(con, [(None, dt.date(2026, 10, 1))])
    >>> shared.slice("a", None, dt.date(2026, 10, 1))["quality_mean"].tolist()
    [0.8]
    >>> shared.slice("a", dt.date(2026, 9, 1), dt.date(2026, 10, 1)) is None
    True
    """

    frames: Mapping[Window, pd.DataFrame]

    @classmethod
    def compute(
        cls, con: duckdb.DuckDBPyConnection, windows: Iterable[Window]
    ) -> SharedConfigMetrics:
        return cls({w: config_metrics(con, start=w[0], end=w[1]) for w in dict.fromkeys(windows)})

    def slice(
        self, use_case: str, start: dt.date | None, end: dt.date | None
    ) -> pd.DataFrame | None:
        frame = self.frames.get((start, end))
        if frame is None:
            return None
        return frame[frame["use_case"] == use_case].reset_index(drop=True)

    def for_use_case(self, use_case: str) -> SharedConfigMetrics:
        """Only one use case's rows: what a per-use-case task (or a remote worker) needs."""
        return SharedConfigMetrics(
            {w: frame[frame["use_case"] == use_case] for w, frame in self.frames.items()}
        )


def config_metrics(
    con: duckdb.DuckDBPyConnection | None,
    *,
    use_case: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    shared: SharedConfigMetrics | None = None,
) -> pd.DataFrame:
    """Sufficient statistics per use case x configuration over ``[start, end]`` (UTC days).

    Columns: use_case, config_key, model, prompt_id, temperature, top_p, max_tokens, n,
    successes, quality_n, quality_sum, quality_sum_squares, cost_sum, cost_sum_squares,
    latency_mean, latency_p95, tokens_sum, days, first_seen, last_seen; plus derived
    quality_mean, cost_mean, error_rate. With ``shared`` holding the window (and a use case
    given), the rows come from it instead of the warehouse, and ``con`` may be ``None``.
    """
    if shared is not None and use_case is not None:
        cached = shared.slice(use_case, start, end)
        if cached is not None:
            return cached
    con = require_connection(con, f"config metrics of {use_case or 'all'} over {start}..{end}")
    frame = con.execute(CONFIG_METRICS_SQL, {"use_case": use_case, "start": start, "end": end}).df()
    n = frame["n"].astype(float)
    quality_n = frame["quality_n"].astype(float)
    frame["quality_mean"] = frame["quality_sum"] / quality_n.where(quality_n > 0)
    frame["cost_mean"] = frame["cost_sum"] / n
    frame["error_rate"] = 1.0 - frame["successes"] / n
    return frame


__all__ = [
    "CONFIG_KEY_SQL",
    "CONFIG_METRICS_SQL",
    "SharedConfigMetrics",
    "Window",
    "config_metrics",
]
