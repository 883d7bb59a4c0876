"""Per-configuration aggregates: the small table that search, frontier, budget and bandits share.

A *configuration* is what served a call: ``config_id`` when the log carries one, otherwise the
tuple (model, prompt_id, temperature, top_p, max_tokens) rendered as a stable key. One SQL pass
turns the rows of a window into sufficient statistics per use case x configuration; rows never
travel into Python.

The nightly flow asks for the same few windows once per use case and strategy (search, frontier,
bandits, budget: about a hundred scans for 20 use cases). :class:`SharedConfigMetrics` computes
each window once for every use case; the strategies slice it instead of scanning again.

Two paths give the same frame: the daily rollups (``rollup_config_day`` and
``rollup_config_latency``, tasks/warehouse/rollup_specs.py: cost grows with the changed days,
not the window) and the full scan of the raw rows (:func:`config_metrics_scan`, the reference the
tests compare against; what a read-only connection, e.g. an ad hoc CLI window, uses). Counts and
sums agree exactly (up to float summation order); ``latency_p95`` from merged log-spaced bins is
within a relative ``LATENCY_RELATIVE_BOUND`` (< 1 %) of the raw ``quantile_cont``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Literal

import duckdb
import pandas as pd

from tasks.warehouse.connection import require_connection
from tasks.warehouse.dask_rollups import refresh_night_rollups
from tasks.warehouse.rollup_specs import (
    CONFIG_DAY,
    CONFIG_KEY_SQL,
    CONFIG_LATENCY,
    WAREHOUSE_SPECS,
    binned_quantiles,
)
from tasks.warehouse.rollups import read_only

Source = Literal["auto", "rollups", "raw"]

# the optional use case and day window, on the raw rows and on the rollups alike
_WINDOW_FILTER = """
WHERE ($use_case IS NULL OR use_case = $use_case)
  AND ($start IS NULL OR day >= $start)
  AND ($end IS NULL OR day <= $end)
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
{_WINDOW_FILTER}
GROUP BY ALL
ORDER BY use_case, config_key
"""

ROLLUP_CONFIG_METRICS_SQL = f"""
WITH m AS (
    SELECT
        use_case, config_key,
        any_value(model) AS model,
        any_value(prompt_id) AS prompt_id,
        any_value(temperature) AS temperature,
        any_value(top_p) AS top_p,
        any_value(max_tokens) AS max_tokens,
        CAST(sum(n) AS BIGINT) AS n,
        CAST(sum(successes) AS BIGINT) AS successes,
        CAST(sum(quality_n) AS BIGINT) AS quality_n,
        sum(quality_sum) AS quality_sum,
        sum(quality_sum_squares) AS quality_sum_squares,
        sum(cost_sum) AS cost_sum,
        sum(cost_sum_squares) AS cost_sum_squares,
        sum(latency_sum) / sum(n) AS latency_mean,
        sum(tokens_sum) AS tokens_sum,
        count(DISTINCT day) AS days,
        min(first_seen) AS first_seen,
        max(last_seen) AS last_seen
    FROM {CONFIG_DAY.name}
    {_WINDOW_FILTER}
    GROUP BY use_case, config_key
)
SELECT use_case, config_key, model, prompt_id, temperature, top_p, max_tokens, n,
       successes, quality_n, quality_sum, quality_sum_squares, cost_sum, cost_sum_squares,
       latency_mean, CAST(NULL AS DOUBLE) AS latency_p95, tokens_sum, days, first_seen, last_seen
FROM m
ORDER BY use_case, config_key
"""
ROLLUP_LATENCY_BINS_SQL = f"(SELECT * FROM {CONFIG_LATENCY.name} {_WINDOW_FILTER})"

Window = tuple[dt.date | None, dt.date | None]


@dataclasses.dataclass(frozen=True)
class SharedConfigMetrics:
    """:func:`config_metrics` of every use case over a few windows, each computed in one pass.

    Built once per night (``SharedConfigMetrics.compute``) and sliced per use case; a window that
    was not computed is simply not there (``slice`` returns ``None`` and the caller queries).

    >>> from tasks.warehouse.connection import connect
    >>> con = connect(path=":memory:")
    >>> _ = con.execute("INSERT INTO usage_logs BY NAME SELECT 'r1' AS request_id, "
    ...     "'a' AS use_case, 'c1' AS config_id, 'm' AS model, 'success' AS status, "
    ...     "0.8 AS quality, "
    ...     "0.01 AS cost_usd, 'log' AS cost_source, 100.0 AS latency_ms, 10 AS input_tokens, "
    ...     "5 AS output_tokens, DATE '2026-10-01' AS day, TIMESTAMP '2026-10-01 10:00' AS ts, "
    ...     "'f' AS source_file, 1 AS source_line, 'i1' AS ingest_id")
    >>> shared = SharedConfigMetrics.compute(con, [(None, dt.date(2026, 10, 1))])
    >>> shared.slice("a", None, dt.date(2026, 10, 1))["quality_mean"].tolist()
    [0.8]
    >>> shared.slice("a", dt.date(2026, 9, 1), dt.date(2026, 10, 1)) is None
    True
    """

    frames: Mapping[Window, pd.DataFrame]

    @classmethod
    def compute(
        cls, con: duckdb.DuckDBPyConnection, windows: Iterable[Window], *, source: Source = "auto"
    ) -> SharedConfigMetrics:
        """Every window's :func:`config_metrics` for all use cases (one refresh, one read each).

        Args:
            con: the warehouse.
            windows: (start, end) windows; duplicates computed once.
            source: as in :func:`config_metrics` (the rollups are refreshed once, first).

        Returns:
            The shared frames.
        """
        chosen = resolve_source(con, source)
        return cls(
            {
                w: config_metrics(con, start=w[0], end=w[1], source=chosen)
                for w in dict.fromkeys(windows)
            }
        )

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


def resolve_source(con: duckdb.DuckDBPyConnection, source: Source) -> Literal["rollups", "raw"]:
    """Which path ``source`` means on ``con``; ``auto`` refreshes the rollups when it can.

    ``auto``: on a writable connection, :func:`~tasks.warehouse.rollups.refresh_rollups` of the
    warehouse's specs (a no-op when nothing changed; the nightly flow has refreshed them all
    already) and ``rollups``; on a read-only connection (ad hoc CLI windows) ``raw``.
    ``rollups`` reads them as they are (the caller refreshed them).

    Args:
        con: the warehouse.
        source: ``auto``, ``rollups`` or ``raw``.

    Returns:
        ``rollups`` or ``raw``.
    """
    if source != "auto":
        return source
    if read_only(con):
        return "raw"
    refresh_night_rollups(con, WAREHOUSE_SPECS)  # lake mode: the check reads lake_parts
    return "rollups"


def config_metrics_scan(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pd.DataFrame:
    """The reference: :func:`config_metrics` by a full scan of the raw rows of the window.

    Args:
        con: the warehouse.
        use_case: one use case, or all.
        start: first day (inclusive), or from the first.
        end: last day (inclusive), or to the last.

    Returns:
        The frame of :func:`config_metrics`.
    """
    return config_metrics(con, use_case=use_case, start=start, end=end, source="raw")


def config_metrics(
    con: duckdb.DuckDBPyConnection | None,
    *,
    use_case: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    shared: SharedConfigMetrics | None = None,
    source: Source = "auto",
) -> pd.DataFrame:
    """Sufficient statistics per use case x configuration over ``[start, end]`` (UTC days).

    Columns: use_case, config_key, model, prompt_id, temperature, top_p, max_tokens, n,
    successes, quality_n, quality_sum, quality_sum_squares, cost_sum, cost_sum_squares,
    latency_mean, latency_p95, tokens_sum, days, first_seen, last_seen; plus derived
    quality_mean, cost_mean, error_rate. With ``shared`` holding the window (and a use case
    given), the rows come from it instead of the warehouse, and ``con`` may be ``None``.
    ``source`` picks the daily rollups or the raw scan (see :func:`resolve_source`).
    """
    if shared is not None and use_case is not None:
        cached = shared.slice(use_case, start, end)
        if cached is not None:
            return cached
    con = require_connection(con, f"config metrics of {use_case or 'all'} over {start}..{end}")
    params = {"use_case": use_case, "start": start, "end": end}
    if resolve_source(con, source) == "rollups":
        frame = con.execute(ROLLUP_CONFIG_METRICS_SQL, params).df()
        group = ("use_case", "config_key")
        p95 = binned_quantiles(con, ROLLUP_LATENCY_BINS_SQL, params, group, 0.95)
        keys = zip(frame["use_case"], frame["config_key"], strict=True)
        frame["latency_p95"] = [p95.get(key, float("nan")) for key in keys]
    else:
        frame = con.execute(CONFIG_METRICS_SQL, params).df()
    n = frame["n"].astype(float)
    quality_n = frame["quality_n"].astype(float)
    frame["quality_mean"] = frame["quality_sum"] / quality_n.where(quality_n > 0)
    frame["cost_mean"] = frame["cost_sum"] / n
    frame["error_rate"] = 1.0 - frame["successes"] / n
    return frame


__all__ = [
    "CONFIG_KEY_SQL",
    "CONFIG_METRICS_SQL",
    "ROLLUP_CONFIG_METRICS_SQL",
    "SharedConfigMetrics",
    "Source",
    "Window",
    "config_metrics",
    "config_metrics_scan",
    "resolve_source",
]
