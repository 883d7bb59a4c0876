"""Context statistics from the warehouse: what contextual routing needs, in one pass per column.

:func:`routing_inputs` profiles the context columns (an empty or constant column cannot route and
is listed with the reason), then aggregates, per context value x configuration, the sums the
router needs (:class:`strategies.routing.ContextArmStats`) and the importance-weight sums
off-policy evaluation needs (:class:`strategies.offpolicy.LoggedCell`) on the objective's reward.
Rows never travel into Python. An errored call scores quality 0 (as in
:mod:`tasks.allocation.offpolicy`).
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
    stats, logged = [], []
    for cell, arm, n, *sums in con.execute(sql, params).fetchall():
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


def routing_inputs(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    start: dt.date,
    end: dt.date,
    objective: Objective | RoutingObjective,
    columns: Sequence[str] = DEFAULT_CONTEXT_COLUMNS,
) -> RoutingInputs:
    """Aggregate what contextual routing needs for ``use_case`` over ``[start, end]``.

    Args:
        con: the warehouse.
        use_case: the use case.
        start: first day of the window.
        end: last day of the window.
        objective: sets the per-row reward of the off-policy sums.
        columns: context columns to consider (canonical names or ``metadata.<key>``).

    Returns:
        :class:`RoutingInputs`; columns that are empty or constant are in ``skipped``.

    Raises:
        ValueError: an unknown column name.
    """
    params = {"use_case": use_case, "start": start, "end": end}
    names = list(dict.fromkeys(columns))
    for name in names:
        context_sql(name)
    skipped = _profile(con, params, names) if names else {}
    counts = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE propensity IS NULL OR propensity <= 0 "
        f"OR propensity > 1), count(*) FILTER (WHERE ({_QUALITY}) IS NULL) FROM usage_logs "
        "WHERE use_case = $use_case AND day BETWEEN $start AND $end",
        params,
    ).fetchone()
    assert counts is not None
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
