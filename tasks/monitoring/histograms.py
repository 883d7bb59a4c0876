"""Binned counts of numeric fields and counts per category, reference window vs current window.

Rows stay in DuckDB: each numeric field is binned on fine quantile edges of both windows (no bin
holds more than ``1/quantile_bins`` of either) and counted per window; categorical fields are
counted per category. The per-use-case functions are the reference; the ``*_many`` functions
compute the same for many use cases in one or two grouped statements (tested equal).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np

from strategies.monitor.report import Bins, CategoryCounts
from strategies.monitor.settings import CATEGORICAL_FIELDS, NUMERIC_FIELDS, Windows
from tasks.monitoring.sql import window_params, windowed_rows

#: Bin edges of one numeric field a single bin-count statement may hold, summed over its use
#: cases (about 200 per use case): beyond it the use cases are split over several statements, so
#: the histogram states stay small. 20 000 is about 100 use cases per statement.
HISTOGRAM_MAX_EDGES = 20_000


def _check(columns: Sequence[str], allowed: Sequence[str], kind: str) -> None:
    for column in columns:
        if column not in allowed:
            raise ValueError(f"not a monitored {kind} field: {column}")


def _binned_counts_sql(column: str) -> str:
    _check([column], NUMERIC_FIELDS, "numeric")
    return f"""
WITH ref AS (
    SELECT CAST({column} AS DOUBLE) AS x FROM usage_logs
    WHERE use_case = $use_case AND day BETWEEN $ref_start AND $ref_end AND {column} IS NOT NULL
), cur AS (
    SELECT CAST({column} AS DOUBLE) AS x FROM usage_logs
    WHERE use_case = $use_case AND day BETWEEN $cur_start AND $cur_end AND {column} IS NOT NULL
), both_windows AS (
    SELECT x, 0 AS w FROM ref UNION ALL SELECT x, 1 AS w FROM cur
), edges AS (
    SELECT DISTINCT edge FROM (
        SELECT unnest(quantile_disc(x, $levels)) AS edge FROM ref
        UNION ALL SELECT unnest(quantile_disc(x, $levels)) FROM cur
        UNION ALL SELECT min(x) FROM both_windows
        UNION ALL SELECT max(x) FROM both_windows
    ) WHERE edge IS NOT NULL
), counts AS (
    -- each row lands in the bin whose upper edge is the smallest edge >= x
    SELECT e.edge, count(*) FILTER (WHERE b.w = 0) AS ref_n,
           count(*) FILTER (WHERE b.w = 1) AS cur_n
    FROM both_windows b ASOF JOIN edges e ON b.x <= e.edge
    GROUP BY e.edge
)
SELECT e.edge, coalesce(c.ref_n, 0) AS ref_n, coalesce(c.cur_n, 0) AS cur_n
FROM edges e LEFT JOIN counts c USING (edge)
ORDER BY e.edge
"""


def numeric_bins(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    column: str,
    windows: Windows,
    *,
    quantile_bins: int = 100,
) -> Bins:
    """Upper bin edges and per-window counts of one numeric field (binning done in DuckDB).

    Args:
        con: warehouse connection.
        use_case: the use case.
        column: one of ``NUMERIC_FIELDS``.
        windows: the night's windows.
        quantile_bins: quantile levels per window.

    Returns:
        ``(edges, reference counts, current counts)``; empty arrays without rows.

    Raises:
        ValueError: ``column`` is not a monitored numeric field.
    """
    levels = [i / quantile_bins for i in range(1, quantile_bins)]
    params = {"use_case": use_case, "levels": levels} | window_params(windows)
    rows = con.execute(_binned_counts_sql(column), params).fetchall()
    if not rows:
        empty = np.zeros(0)
        return empty, empty, empty
    array = np.asarray(rows, dtype=float)
    return array[:, 0], array[:, 1], array[:, 2]


def categorical_counts(
    con: duckdb.DuckDBPyConnection, use_case: str, column: str, windows: Windows
) -> CategoryCounts:
    """Counts per category (missing values are the category ``(missing)``) in both windows.

    Args:
        con: warehouse connection.
        use_case: the use case.
        column: one of ``CATEGORICAL_FIELDS``.
        windows: the night's windows.

    Returns:
        ``(categories, reference counts, current counts)``.

    Raises:
        ValueError: ``column`` is not a monitored categorical field.
    """
    _check([column], CATEGORICAL_FIELDS, "categorical")
    rows = con.execute(
        f"""
        SELECT coalesce(CAST({column} AS VARCHAR), '(missing)') AS category,
               count(*) FILTER (WHERE day BETWEEN $ref_start AND $ref_end) AS ref_n,
               count(*) FILTER (WHERE day BETWEEN $cur_start AND $cur_end) AS cur_n
        FROM usage_logs
        WHERE use_case = $use_case AND day BETWEEN $ref_start AND $cur_end
        GROUP BY 1 ORDER BY 1
        """,
        {"use_case": use_case} | window_params(windows),
    ).fetchall()
    return (
        [r[0] for r in rows],
        np.asarray([r[1] for r in rows], dtype=float),
        np.asarray([r[2] for r in rows], dtype=float),
    )


def categorical_counts_many(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    columns: Sequence[str],
    windows: Windows,
) -> dict[str, dict[str, CategoryCounts]]:
    """:func:`categorical_counts` of many use cases and fields in one statement (one pass:
    a grouping set per field).

    Args:
        con: warehouse connection.
        use_cases: the use cases.
        columns: categorical fields.
        windows: the night's windows.

    Returns:
        use case -> field -> counts (empty arrays where a use case has no rows).

    Raises:
        ValueError: a column is not a monitored categorical field.
    """
    names = list(dict.fromkeys(use_cases))
    fields = list(dict.fromkeys(columns))
    _check(fields, CATEGORICAL_FIELDS, "categorical")
    empty = (list[str](), np.zeros(0), np.zeros(0))
    out = {name: dict.fromkeys(fields, empty) for name in names}
    if not names or not fields:
        return out
    aliases = [f"c{i}" for i in range(len(fields))]
    categories = ", ".join(
        f"coalesce(CAST({column} AS VARCHAR), '(missing)') AS {alias}"
        for column, alias in zip(fields, aliases, strict=True)
    )
    # in each grouping set exactly one alias is grouped (never NULL: coalesced above)
    rows = con.execute(
        f"""
        SELECT use_case, GROUPING({", ".join(aliases)}) AS g, coalesce({", ".join(aliases)}),
               count(*) FILTER (WHERE w = 0), count(*) FILTER (WHERE w = 1),
               {", ".join(f"{a} IS NOT NULL" for a in aliases)}
        FROM ({windowed_rows(categories)})
        GROUP BY GROUPING SETS ({", ".join(f"(use_case, {a})" for a in aliases)})
        ORDER BY use_case, g, 3
        """,
        {"use_cases": names} | window_params(windows),
    ).fetchall()
    collected: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for row in rows:
        column = fields[list(row[5:]).index(True)]
        collected.setdefault((str(row[0]), column), []).append((str(row[2]), row[3], row[4]))
    for (name, column), items in collected.items():
        out[name][column] = (
            [c for c, _, _ in items],
            np.asarray([r for _, r, _ in items], dtype=float),
            np.asarray([c for _, _, c in items], dtype=float),
        )
    return out


def _edges_many(
    con: duckdb.DuckDBPyConnection,
    names: list[str],
    fields: list[str],
    value_of: dict[str, str],
    *,
    windows: Windows,
    quantile_bins: int,
) -> dict[tuple[str, str], np.ndarray]:
    """Pass 1: edges per use case and field, the union of both windows' quantiles.

    Levels 0 and 1 are each window's minimum and maximum (``quantile_disc``'s index is exactly 0
    and n - 1 there, cheaper than min() and max() beside it): only the smaller minimum and the
    larger maximum are edges. ``list_distinct`` drops the NULLs of windows without values.
    """
    aliases = list(value_of)
    per_window = ", ".join(f"quantile_disc({a}, $levels) AS q_{a}" for a in aliases)
    edge_lists = ", ".join(
        f"list_sort(list_distinct(flatten(list(q_{a}[2:-2])) || [min(q_{a}[1]), max(q_{a}[-1])]))"
        for a in aliases
    )
    levels = [0.0] + [i / quantile_bins for i in range(1, quantile_bins)] + [1.0]
    rows = con.execute(
        f"""
        WITH q AS (
            SELECT use_case, w, {per_window}
            FROM ({windowed_rows(", ".join(value_of.values()))})
            GROUP BY use_case, w
        )
        SELECT use_case, {edge_lists} FROM q GROUP BY use_case
        """,
        {"use_cases": names, "levels": levels} | window_params(windows),
    ).fetchall()
    return {
        (str(row[0]), column): np.asarray(row[1 + i] or [], dtype=float)
        for row in rows
        for i, column in enumerate(fields)
    }


def _chunks(edges: dict[tuple[str, str], np.ndarray], fields: list[str]) -> list[list[str]]:
    """Use cases in statements of at most HISTOGRAM_MAX_EDGES edges per field."""
    chunks: list[list[str]] = [[]]
    sizes = dict.fromkeys(fields, 0)
    for name in sorted({u for u, _ in edges}):
        add = {c: edges[(name, c)].size for c in fields}
        if chunks[-1] and any(sizes[c] + add[c] > HISTOGRAM_MAX_EDGES for c in fields):
            chunks.append([])
            sizes = dict.fromkeys(fields, 0)
        chunks[-1].append(name)
        sizes = {c: sizes[c] + add[c] for c in fields}
    return [c for c in chunks if c]


def _histograms(
    con: duckdb.DuckDBPyConnection,
    chunk: list[str],
    fields: list[str],
    value_of: dict[str, str],
    *,
    edges: dict[tuple[str, str], np.ndarray],
    windows: Windows,
) -> dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]]:
    """Pass 2: one ``histogram`` per field and (use case, window) over the chunk's edge union."""
    aliases = list(value_of)
    bounds = {
        a: sorted({float(e) for name in chunk for e in edges[(name, c)]})
        for c, a in zip(fields, aliases, strict=True)
    }
    used = [a for a in aliases if bounds[a]]
    if not used:
        return {}
    histograms = ", ".join(f"histogram({a}, $b_{a}) AS h_{a}" for a in used)
    nonempty = ", ".join(
        f"[e.key FOR e IN map_entries(h_{a}) IF e.value > 0],"
        f" [e.value FOR e IN map_entries(h_{a}) IF e.value > 0]"
        for a in used
    )
    rows = con.execute(
        f"""
        WITH h AS (
            SELECT use_case, w, {histograms}
            FROM ({windowed_rows(", ".join(value_of[a] for a in used))})
            GROUP BY use_case, w
        )
        SELECT use_case, w, {nonempty} FROM h
        """,
        {"use_cases": chunk} | {f"b_{a}": bounds[a] for a in used} | window_params(windows),
    ).fetchall()
    counts: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
    for row in rows:
        for i, a in enumerate(used):
            keys, n = row[2 + 2 * i], row[3 + 2 * i]
            counts[(str(row[0]), fields[aliases.index(a)], int(row[1]))] = (
                np.asarray(keys or [], dtype=float),
                np.asarray(n or [], dtype=np.int64),
            )
    return counts


def numeric_bins_many(
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    columns: Sequence[str],
    windows: Windows,
    *,
    quantile_bins: int = 100,
) -> dict[str, dict[str, Bins]]:
    """:func:`numeric_bins` of many use cases and fields, in two passes over the windows.

    1. Edges per use case and field: the reference and current quantiles (``quantile_disc``
       grouped by use case and window) plus the minimum and maximum, distinct and sorted.
    2. Counts: one ``histogram`` per field and (use case, window) over the union of all the use
       cases' edges of the field (a constant list, so DuckDB bins each row by binary search).
       Every use case's own edges are among them and none of its rows lies below its first edge
       or above its last, so summing the union's bins between two consecutive edges of the use
       case gives exactly its bin count (each row in the bin of the smallest edge >= it, as the
       ``ASOF`` join does). Only non-empty bins come back.

    Args:
        con: warehouse connection.
        use_cases: the use cases.
        columns: numeric fields.
        windows: the night's windows.
        quantile_bins: quantile levels per window.

    Returns:
        use case -> field -> ``(edges, reference counts, current counts)``.

    Raises:
        ValueError: a column is not a monitored numeric field.
    """
    names = list(dict.fromkeys(use_cases))
    fields = list(dict.fromkeys(columns))
    _check(fields, NUMERIC_FIELDS, "numeric")
    empty = (np.zeros(0), np.zeros(0), np.zeros(0))
    out = {name: dict.fromkeys(fields, empty) for name in names}
    if not names or not fields:
        return out
    value_of = {f"x{i}": f"CAST({column} AS DOUBLE) AS x{i}" for i, column in enumerate(fields)}
    edges = _edges_many(con, names, fields, value_of, windows=windows, quantile_bins=quantile_bins)
    counts: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
    for chunk in _chunks(edges, fields):
        counts |= _histograms(con, chunk, fields, value_of, edges=edges, windows=windows)
    for (name, column), e in edges.items():
        if e.size == 0:
            continue
        binned = []
        for w in (0, 1):
            keys, n = counts.get((name, column, w), (np.zeros(0), np.zeros(0, dtype=np.int64)))
            # rows <= each edge, then per bin (previous edge, edge]
            cumulative = np.concatenate(([0], np.cumsum(n)))
            at_edges = cumulative[np.searchsorted(keys, e, side="right")]
            binned.append(np.diff(at_edges, prepend=0).astype(float))
        out[name][column] = (e, binned[0], binned[1])
    return out


__all__ = [
    "HISTOGRAM_MAX_EDGES",
    "categorical_counts",
    "categorical_counts_many",
    "numeric_bins",
    "numeric_bins_many",
]
