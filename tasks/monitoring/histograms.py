"""Binned counts of numeric fields and counts per category, reference window vs current window.

Read from daily rollups (:mod:`tasks.monitoring.rollups`), never from raw rows: each numeric
field is counted per day on fixed log-spaced bins (:mod:`strategies.rollup_quantiles`, each bin
with its smallest and largest value), so a window's histogram is the sum of its days' bins. The
two windows' fine bins are then merged into drift bins, cutting wherever a ``1/quantile_bins``
quantile level of either window falls (at most about ``2 * quantile_bins`` bins, none holding
more than ``1/quantile_bins`` of either window unless a single fine bin does): the same shape as
the quantile edges of both windows the drift tests read before, so PSI, KS and Wasserstein stay
comparable. Categorical fields are summed per category. One statement per kind, whatever the
number of use cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np

from strategies.monitor.report import Bins, CategoryCounts
from strategies.monitor.settings import CATEGORICAL_FIELDS, NUMERIC_FIELDS, Windows
from strategies.rollup_quantiles import LogHistogram, drift_bins, merge_histograms
from tasks.monitoring.rollups import MONITOR_BINS, MONITOR_CATEGORIES
from tasks.monitoring.sql import window_params, windowed_rollup


def _check(columns: Sequence[str], allowed: Sequence[str], kind: str) -> None:
    for column in columns:
        if column not in allowed:
            raise ValueError(f"not a monitored {kind} field: {column}")


def _runs(*keys: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal keys in rows sorted by them."""
    size = len(keys[0]) if keys else 0
    if size == 0:
        return []
    change = np.zeros(size, dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(change)
    return list(zip(starts.tolist(), [*starts[1:].tolist(), size], strict=True))


def window_histograms(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    columns: Sequence[str],
    windows: Windows,
) -> dict[tuple[str, str, int], LogHistogram]:
    """Each window's fixed-bin histogram per use case and numeric field, in one statement.

    Args:
        con: warehouse connection (rollups refreshed).
        use_cases: the use cases.
        columns: numeric fields.
        windows: the night's windows.

    Returns:
        ``(use_case, field, w)`` -> histogram, ``w`` = 0 (reference) or 1 (current); absent
        when the window has no value.

    Raises:
        ValueError: a column is not a monitored numeric field.
    """
    names, fields = list(dict.fromkeys(use_cases)), list(dict.fromkeys(columns))
    _check(fields, NUMERIC_FIELDS, "numeric")
    if not names or not fields:
        return {}
    data: dict[str, Any] = con.execute(
        f"""
        SELECT use_case, field, w, bin, sum(n)::BIGINT AS n, min(vmin) AS vmin, max(vmax) AS vmax
        FROM {windowed_rollup(MONITOR_BINS.name, "AND list_contains($fields, field)")}
        GROUP BY use_case, field, w, bin
        ORDER BY use_case, field, w, bin
        """,
        {"use_cases": names, "fields": fields} | window_params(windows),
    ).fetchnumpy()
    out: dict[tuple[str, str, int], LogHistogram] = {}
    use_case, field, w = (np.asarray(data[c]) for c in ("use_case", "field", "w"))
    for start, stop in _runs(use_case, field, w):
        part = slice(start, stop)
        key = (str(use_case[start]), str(field[start]), int(w[start]))
        out[key] = LogHistogram(
            np.asarray(data["bin"][part]),
            np.asarray(data["n"][part]),
            np.asarray(data["vmin"][part]),
            np.asarray(data["vmax"][part]),
        )
    return out


def numeric_bins_many(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    columns: Sequence[str],
    windows: Windows,
    *,
    quantile_bins: int = 100,
) -> dict[str, dict[str, Bins]]:
    """Drift bins (upper edges, reference counts, current counts) of many use cases and fields.

    Args:
        con: warehouse connection (rollups refreshed).
        use_cases: the use cases.
        columns: numeric fields.
        windows: the night's windows.
        quantile_bins: quantile levels per window (see the module docstring).

    Returns:
        use case -> field -> ``(edges, reference counts, current counts)``; empty arrays
        without values in either window.

    Raises:
        ValueError: a column is not a monitored numeric field.
    """
    names, fields = list(dict.fromkeys(use_cases)), list(dict.fromkeys(columns))
    empty = (np.zeros(0), np.zeros(0), np.zeros(0))
    out = {name: dict.fromkeys(fields, empty) for name in names}
    histograms = window_histograms(con, names, fields, windows)
    none = merge_histograms([])
    for name, column in {(u, c) for u, c, _ in histograms}:
        reference = histograms.get((name, column, 0), none)
        current = histograms.get((name, column, 1), none)
        out[name][column] = drift_bins(reference, current, levels=quantile_bins)
    return out


def numeric_bins(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    column: str,
    windows: Windows,
    *,
    quantile_bins: int = 100,
) -> Bins:
    """:func:`numeric_bins_many` of one use case and field.

    Args:
        con: warehouse connection (rollups refreshed).
        use_case: the use case.
        column: one of ``NUMERIC_FIELDS``.
        windows: the night's windows.
        quantile_bins: quantile levels per window.

    Returns:
        ``(edges, reference counts, current counts)``; empty arrays without rows.

    Raises:
        ValueError: ``column`` is not a monitored numeric field.
    """
    bins = numeric_bins_many(con, [use_case], [column], windows, quantile_bins=quantile_bins)
    return bins[use_case][column]


def categorical_counts_many(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    columns: Sequence[str],
    windows: Windows,
) -> dict[str, dict[str, CategoryCounts]]:
    """Counts per category (missing values are ``(missing)``) of many use cases and fields.

    Args:
        con: warehouse connection (rollups refreshed).
        use_cases: the use cases.
        columns: categorical fields.
        windows: the night's windows.

    Returns:
        use case -> field -> ``(categories, reference counts, current counts)``, categories
        sorted; empty where a use case has no rows.

    Raises:
        ValueError: a column is not a monitored categorical field.
    """
    names, fields = list(dict.fromkeys(use_cases)), list(dict.fromkeys(columns))
    _check(fields, CATEGORICAL_FIELDS, "categorical")
    empty = (list[str](), np.zeros(0), np.zeros(0))
    out = {name: dict.fromkeys(fields, empty) for name in names}
    if not names or not fields:
        return out
    rows = con.execute(
        f"""
        SELECT use_case, field, category,
               coalesce(sum(n) FILTER (WHERE w = 0), 0), coalesce(sum(n) FILTER (WHERE w = 1), 0)
        FROM {windowed_rollup(MONITOR_CATEGORIES.name, "AND list_contains($fields, field)")}
        GROUP BY use_case, field, category
        ORDER BY use_case, field, category
        """,
        {"use_cases": names, "fields": fields} | window_params(windows),
    ).fetchall()
    collected: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for name, column, category, ref, cur in rows:
        collected.setdefault((str(name), str(column)), []).append((str(category), ref, cur))
    for (name, column), items in collected.items():
        out[name][column] = (
            [c for c, _, _ in items],
            np.asarray([r for _, r, _ in items], dtype=float),
            np.asarray([c for _, _, c in items], dtype=float),
        )
    return out


def categorical_counts(
    con: duckdb.DuckDBPyConnection, use_case: str, column: str, windows: Windows
) -> CategoryCounts:
    """:func:`categorical_counts_many` of one use case and field.

    Args:
        con: warehouse connection (rollups refreshed).
        use_case: the use case.
        column: one of ``CATEGORICAL_FIELDS``.
        windows: the night's windows.

    Returns:
        ``(categories, reference counts, current counts)``.

    Raises:
        ValueError: ``column`` is not a monitored categorical field.
    """
    return categorical_counts_many(con, [use_case], [column], windows)[use_case][column]


__all__ = [
    "categorical_counts",
    "categorical_counts_many",
    "numeric_bins",
    "numeric_bins_many",
    "window_histograms",
]
