"""Context statistics from the warehouse: what contextual routing needs, in one pass per column.

:func:`routing_inputs` profiles the context columns (an empty or constant column cannot route and
is listed with the reason), then aggregates, per context value x configuration, the sums the
router needs (:class:`strategies.routing.ContextArmStats`) and the importance-weight sums
off-policy evaluation needs (:class:`strategies.offpolicy.LoggedCell`) on the objective's reward.
Rows never travel into Python. An errored call scores quality 0 (as in
:mod:`tasks.allocation.offpolicy`).

The nightly path reads the daily rollup :data:`tasks.allocation.rollups.ALLOCATION_CELLS` (sums per
day x canonical context columns x configuration x propensity) instead of ``usage_logs`` when it
is current and the columns are canonical (``source="auto"``); why those sums are exact for the
router's statistics and for IPS / SNIPS / DR is in :mod:`tasks.allocation.rollups`. The raw
statements stay as the reference (``source="usage_logs"``) and for ``metadata.<key>`` columns.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from strategies.objective import Objective
from strategies.offpolicy import LoggedCell
from strategies.routing import ContextArmStats, RoutingObjective
from tasks.allocation.rollups import ALLOCATION_CELLS, Source, reward_sums_sql, use_rollups
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL

__all__ = [
    "DEFAULT_CONTEXT_COLUMNS",
    "ColumnData",
    "RoutingBudget",
    "RoutingInputs",
    "context_sql",
    "routing_inputs",
]

DEFAULT_CONTEXT_COLUMNS: tuple[str, ...] = ("task_type", "user_segment", "language", "region")
_METADATA_KEY = re.compile(r"^metadata\.([A-Za-z_][A-Za-z0-9_]{0,63})$")
_QUALITY = "CASE WHEN status = 'error' THEN 0.0 ELSE quality END"
_ERROR = "CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END"


def context_sql(column: str) -> str:
    """The SQL expression of a context column: a canonical one or ``metadata.<key>``.

    Raises:
        ValueError: any other name (names never reach SQL unchecked).
    """
    if column in DEFAULT_CONTEXT_COLUMNS:
        return column
    match = _METADATA_KEY.fullmatch(column)
    if match:
        return f"json_extract_string(metadata, '$.{match.group(1)}')"
    raise ValueError(
        f"unknown context column {column!r}: use one of {list(DEFAULT_CONTEXT_COLUMNS)} "
        "or metadata.<key>"
    )


@dataclass(frozen=True, kw_only=True)
class ColumnData:
    """One usable context column: router statistics and off-policy sums per value x arm."""

    column: str
    stats: tuple[ContextArmStats, ...]
    logged: tuple[LoggedCell, ...]


@dataclass(frozen=True, kw_only=True)
class RoutingBudget:
    """A monthly budget and where the month stands (from :func:`budget_report`)."""

    monthly_budget_usd: float
    month_to_date_usd: float
    remaining_requests: float

    def cost_cap(self) -> float:
        """Mean cost per request the rest of the month can afford (0 when already spent)."""
        left = self.monthly_budget_usd - self.month_to_date_usd
        return max(left, 0.0) / max(self.remaining_requests, 1.0)

    def forecast(self, cost_per_request: float) -> float:
        """Month-end spend if the rest of the month costs ``cost_per_request`` a request."""
        return self.month_to_date_usd + cost_per_request * self.remaining_requests


@dataclass(frozen=True, kw_only=True)
class RoutingInputs:
    """Everything :func:`plan_contextual_routing` needs, aggregated in one place."""

    use_case: str
    start: dt.date
    end: dt.date
    objective: Objective | RoutingObjective
    columns: tuple[ColumnData, ...]
    skipped: dict[str, str]
    rows: int
    missing_propensity: int
    missing_quality: int


def _profile(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any], columns: Sequence[str]
) -> dict[str, str]:
    """Reason per column that cannot route (empty, constant); usable ones are absent."""
    parts = ", ".join(f"count({context_sql(c)}), count(DISTINCT {context_sql(c)})" for c in columns)
    row = con.execute(
        f"SELECT count(*), {parts} FROM usage_logs "
        "WHERE use_case = $use_case AND day BETWEEN $start AND $end",
        params,
    ).fetchone()
    return _skipped(row, columns)


def _skipped(row: Sequence[Any] | None, columns: Sequence[str]) -> dict[str, str]:
    """Reason per column from (rows, filled, distinct, filled, distinct, ...)."""
    assert row is not None  # an aggregate without GROUP BY returns one row
    skipped: dict[str, str] = {}
    for i, column in enumerate(columns):
        filled, distinct = int(row[1 + 2 * i]), int(row[2 + 2 * i])
        if filled == 0:
            skipped[column] = "empty: no logged row carries it"
        elif distinct == 1:
            skipped[column] = "constant: one value in every logged row"
    return skipped


def _reward_sql(objective: Objective | RoutingObjective) -> str:
    wq, wc, wl, we = (float(v) for v in RoutingObjective.coefficients_of(objective))
    return (
        f"({wq!r} * ({_QUALITY}) + {wc!r} * coalesce(cost_usd, 0.0) + {wl!r} * latency_ms "
        f"+ {we!r} * ({_ERROR}))"
    )


def _column_data(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any], column: str, reward: str
) -> ColumnData:
    sql = f"""
        WITH rows AS (
            SELECT coalesce(CAST({context_sql(column)} AS VARCHAR), 'unknown') AS cell,
                   {CONFIG_KEY_SQL} AS arm, {_QUALITY} AS q, coalesce(cost_usd, 0.0) AS c,
                   latency_ms AS l, {_ERROR} AS e, {reward} AS r, propensity AS p
            FROM usage_logs
            WHERE use_case = $use_case AND day BETWEEN $start AND $end
        )
        SELECT cell, arm, count(*), sum(q), sum(q * q), sum(c), sum(c * c), sum(l), sum(l * l),
               sum(e),
               count(*) FILTER (WHERE p > 0 AND p <= 1),
               sum(r) FILTER (WHERE p > 0 AND p <= 1),
               sum(1 / p) FILTER (WHERE p > 0 AND p <= 1),
               sum(r / p) FILTER (WHERE p > 0 AND p <= 1),
               sum(1 / (p * p)) FILTER (WHERE p > 0 AND p <= 1),
               sum(r / (p * p)) FILTER (WHERE p > 0 AND p <= 1),
               sum(r * r / (p * p)) FILTER (WHERE p > 0 AND p <= 1),
               max(1 / p) FILTER (WHERE p > 0 AND p <= 1)
        FROM rows WHERE q IS NOT NULL
        GROUP BY ALL ORDER BY ALL
    """
    return _column_result(column, con.execute(sql, params).fetchall())


def _column_result(column: str, rows: Sequence[Sequence[Any]]) -> ColumnData:
    """Router statistics and off-policy cells from (cell, arm, n, 15 sums) rows."""
    stats, logged = [], []
    for cell, arm, n, *sums in rows:
        q, q2, c, c2, lat, lat2, err = (float(v or 0.0) for v in sums[:7])
        stats.append(
            ContextArmStats(
                context=str(cell),
                arm=str(arm),
                n=float(n),
                quality_sum=q,
                quality_sum_squares=q2,
                cost_sum=c,
                cost_sum_squares=c2,
                latency_sum=lat,
                latency_sum_squares=lat2,
                errors=err,
            )
        )
        if sums[7]:
            logged.append(LoggedCell(str(cell), str(arm), *(float(v) for v in sums[7:])))
    return ColumnData(column=column, stats=tuple(stats), logged=tuple(logged))


_ROLLUP_WINDOW = (
    f"FROM {ALLOCATION_CELLS.name} WHERE use_case = $use_case AND day BETWEEN $start AND $end"
)
_VALID_P = "propensity > 0 AND propensity <= 1"


def _profile_rollup(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any], columns: Sequence[str]
) -> dict[str, str]:
    """:func:`_profile` over the rollup: filled = rows with the value, distinct values."""
    parts = ", ".join(
        f"coalesce(sum(rows) FILTER (WHERE {c} IS NOT NULL), 0), count(DISTINCT {c})"
        for c in columns
    )
    row = con.execute(f"SELECT coalesce(sum(rows), 0), {parts} {_ROLLUP_WINDOW}", params)
    return _skipped(row.fetchall()[0], columns)


def _counts_rollup(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> tuple[int, ...]:
    row = con.execute(
        "SELECT coalesce(sum(rows), 0), coalesce(sum(rows) FILTER (WHERE propensity IS NULL "
        f"OR NOT ({_VALID_P})), 0), coalesce(sum(rows - q_rows), 0) {_ROLLUP_WINDOW}",
        params,
    ).fetchall()[0]  # an aggregate without GROUP BY returns one row
    return tuple(int(v) for v in row)


def _column_data_rollup(
    con: duckdb.DuckDBPyConnection,
    params: dict[str, Any],
    column: str,
    objective: Objective | RoutingObjective,
) -> ColumnData:
    """:func:`_column_data` over the rollup (one propensity per group: see the rollups module)."""
    r, r2 = reward_sums_sql(RoutingObjective.coefficients_of(objective))
    p = "propensity"
    sql = f"""
        SELECT coalesce(CAST({column} AS VARCHAR), 'unknown') AS cell, arm, sum(q_rows),
               fsum(s_q), fsum(s_q_q), fsum(s_c), fsum(s_c_c), fsum(s_l), fsum(s_l_l), fsum(s_e),
               sum(q_rows) FILTER (WHERE {_VALID_P}),
               fsum({r}) FILTER (WHERE {_VALID_P}),
               fsum(q_rows / {p}) FILTER (WHERE {_VALID_P}),
               fsum({r} / {p}) FILTER (WHERE {_VALID_P}),
               fsum(q_rows / ({p} * {p})) FILTER (WHERE {_VALID_P}),
               fsum({r} / ({p} * {p})) FILTER (WHERE {_VALID_P}),
               fsum({r2} / ({p} * {p})) FILTER (WHERE {_VALID_P}),
               max(1 / {p}) FILTER (WHERE {_VALID_P})
        {_ROLLUP_WINDOW} AND q_rows > 0
        GROUP BY ALL ORDER BY ALL
    """
    return _column_result(column, con.execute(sql, params).fetchall())


def routing_inputs(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    start: dt.date,
    end: dt.date,
    objective: Objective | RoutingObjective,
    columns: Sequence[str] = DEFAULT_CONTEXT_COLUMNS,
    source: Source = "auto",
) -> RoutingInputs:
    """Aggregate what contextual routing needs for ``use_case`` over ``[start, end]``.

    Args:
        con: the warehouse.
        use_case: the use case.
        start: first day of the window.
        end: last day of the window.
        objective: sets the per-row reward of the off-policy sums.
        columns: context columns to consider (canonical names or ``metadata.<key>``).
        source: ``"rollups"`` (:data:`~tasks.allocation.rollups.ALLOCATION_CELLS`),
            ``"usage_logs"`` (the full scan) or ``"auto"``: the rollups when they are current and
            every column is canonical.

    Returns:
        :class:`RoutingInputs`; columns that are empty or constant are in ``skipped``.

    Raises:
        ValueError: an unknown column name.
    """
    params = {"use_case": use_case, "start": start, "end": end}
    names = list(dict.fromkeys(columns))
    for name in names:
        context_sql(name)
    if use_rollups(con, source, names):
        skipped = _profile_rollup(con, params, names) if names else {}
        counts = _counts_rollup(con, params)
        data = tuple(
            _column_data_rollup(con, params, c, objective) for c in names if c not in skipped
        )
    else:
        skipped = _profile(con, params, names) if names else {}
        row = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE propensity IS NULL OR propensity <= 0 "
            f"OR propensity > 1), count(*) FILTER (WHERE ({_QUALITY}) IS NULL) FROM usage_logs "
            "WHERE use_case = $use_case AND day BETWEEN $start AND $end",
            params,
        ).fetchone()
        assert row is not None
        counts = tuple(int(v) for v in row)
        reward = _reward_sql(objective)
        data = tuple(_column_data(con, params, c, reward) for c in names if c not in skipped)
    return RoutingInputs(
        use_case=use_case,
        start=start,
        end=end,
        objective=objective,
        columns=data,
        skipped=skipped,
        rows=int(counts[0]),
        missing_propensity=int(counts[1]),
        missing_quality=int(counts[2]),
    )
