"""Off-policy evaluation over the warehouse: a candidate policy's value before it gets traffic.

Entry point for the nightly flow: :func:`evaluate_policy` -> :class:`OffPolicyEstimate`.

The importance-weight sums the estimators need are aggregated in DuckDB per context cell x
logged configuration (``sum 1/p, sum r/p, sum 1/p^2, sum r/p^2, sum r^2/p^2, max 1/p``); the
estimators themselves are :func:`strategies.offpolicy.estimate_policy_value`. Rows without a
usable propensity or reward are counted, never silently dropped: any makes the estimate refuse.

Rewards: ``quality`` (the quality score, an errored call scores 0, so the value is "expected
quality per request") or ``success`` (1 for a successful call).

With a canonical context (or none) the sums come from the daily rollup
:data:`tasks.allocation.rollups.ALLOCATION_CELLS` when it is current: it is grouped by
propensity, so ``sum(r/p) = (sum r)/p`` and likewise for every weight sum (exact; see
:mod:`tasks.allocation.rollups`). ``input_bucket``, ``hour_bucket`` and ``metadata.<key>``
contexts scan ``usage_logs``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from strategies.offpolicy import (
    ANY_CELL,
    LoggedCell,
    PolicyValueEstimate,
    estimate_policy_value,
    validate_policy,
)
from tasks.allocation.bandits import CONTEXT_FEATURES
from tasks.allocation.context_stats import context_sql
from tasks.allocation.rollups import ALLOCATION_CELLS, Source, use_rollups
from tasks.registry.routing import RoutingTable
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL

__all__ = [
    "REWARD_SQL",
    "OffPolicyEstimate",
    "evaluate_policy",
    "logged_cells",
    "parse_policy",
    "parse_policy_document",
]

REWARD_SQL: dict[str, str] = {
    "quality": "CASE WHEN status = 'error' THEN 0.0 ELSE quality END",
    "success": "CASE WHEN status = 'success' THEN 1.0 ELSE 0.0 END",
}


def _cell_sql(context: str | None) -> str:
    if context is None:
        return f"'{ANY_CELL}'"
    if context in CONTEXT_FEATURES:
        return CONTEXT_FEATURES[context]
    try:  # a routing table may be keyed by metadata.<key>: the same cell text as the router's
        return f"coalesce(CAST({context_sql(context)} AS VARCHAR), 'unknown')"
    except ValueError:
        raise ValueError(
            f"unknown context {context!r}; use one of {sorted(CONTEXT_FEATURES)} or metadata.<key>"
        ) from None


def _rows_sql(context: str | None, reward: str) -> str:
    if reward not in REWARD_SQL:
        raise ValueError(f"unknown reward {reward!r}; use one of {sorted(REWARD_SQL)}")
    cell = _cell_sql(context)
    return f"""
        SELECT {cell} AS cell, {CONFIG_KEY_SQL} AS arm, {REWARD_SQL[reward]} AS r,
               propensity AS p
        FROM usage_logs
        WHERE use_case = $use_case AND day BETWEEN $start AND $end
    """


# per reward: (rows with a reward, sum r, sum r^2, rows without one) of a rollup row
_ROLLUP_REWARD: dict[str, tuple[str, str, str, str]] = {
    "quality": ("q_rows", "s_q", "s_q_q", "rows - q_rows"),
    "success": ("rows", "successes", "successes", "0"),
}


def _rollup_sql(context: str | None, reward: str) -> tuple[str, str]:
    """The sums and counts queries of :func:`logged_cells` on the rollup (one propensity a row)."""
    n, s, s2, missing = _ROLLUP_REWARD[reward]
    cell = f"'{ANY_CELL}'" if context is None else f"coalesce({context}, 'unknown')"
    window = (
        f"FROM {ALLOCATION_CELLS.name} WHERE use_case = $use_case AND day BETWEEN $start AND $end"
    )
    p = "propensity"
    sums = f"""
        SELECT {cell} AS cell, arm, sum({n}), fsum({s}), fsum({n} / {p}), fsum({s} / {p}),
               fsum({n} / ({p} * {p})), fsum({s} / ({p} * {p})), fsum({s2} / ({p} * {p})),
               max(1 / {p})
        {window} AND {p} > 0 AND {p} <= 1 AND {n} > 0
        GROUP BY ALL
        ORDER BY ALL
        """
    counts = f"""
        SELECT coalesce(sum(rows), 0),
               coalesce(sum(rows) FILTER (WHERE {p} IS NULL), 0),
               coalesce(sum(rows) FILTER (WHERE {p} <= 0 OR {p} > 1 OR isnan({p})), 0),
               coalesce(sum({missing}), 0)
        {window}
        """
    return sums, counts


def _raw_sql(context: str | None, reward: str) -> tuple[str, str]:
    """The sums and counts queries of :func:`logged_cells` on the raw logs."""
    rows_sql = _rows_sql(context, reward)
    sums = f"""
        SELECT cell, arm, count(*), sum(r), sum(1 / p), sum(r / p), sum(1 / (p * p)),
               sum(r / (p * p)), sum(r * r / (p * p)), max(1 / p)
        FROM ({rows_sql})
        WHERE p > 0 AND p <= 1 AND r IS NOT NULL
        GROUP BY ALL
        ORDER BY ALL
        """
    counts = f"""
        SELECT count(*),
               count(*) FILTER (WHERE p IS NULL),
               count(*) FILTER (WHERE p <= 0 OR p > 1 OR isnan(p)),
               count(*) FILTER (WHERE r IS NULL)
        FROM ({rows_sql})
        """
    return sums, counts


def logged_cells(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    start: dt.date,
    end: dt.date,
    context: str | None = "task_type",
    reward: str = "quality",
    source: Source = "auto",
) -> tuple[list[LoggedCell], dict[str, int]]:
    """Per cell x arm importance-weight sums, and counts of unusable rows, from DuckDB.

    Args:
        con: the warehouse.
        use_case: the use case.
        start: first day of the window.
        end: last day of the window.
        context: the cell column (``None``: one cell).
        reward: ``quality`` or ``success``.
        source: ``"rollups"``, ``"usage_logs"`` or ``"auto"`` (the rollups when they are
            current and the context is canonical or ``None``).

    Returns:
        ``(cells, counts)``: the logged cells and the counts of rows, missing / invalid
        propensities and missing rewards.
    """
    raw = _raw_sql(context, reward)  # checks the context and the reward
    params = {"use_case": use_case, "start": start, "end": end}
    needs = [] if context is None else [context]
    rollup = use_rollups(con, source, needs)
    sums_sql, counts_sql = _rollup_sql(context, reward) if rollup else raw
    sums = con.execute(sums_sql, params).fetchall()
    # an aggregate without GROUP BY always returns one row
    counts = con.execute(counts_sql, params).fetchall()[0]
    return _cells_and_counts(sums, counts)


def _cells_and_counts(
    sums: list[Any], counts: tuple[Any, ...]
) -> tuple[list[LoggedCell], dict[str, int]]:
    cells = [LoggedCell(str(c), str(a), *(float(v) for v in values)) for c, a, *values in sums]
    return cells, {
        "rows": int(counts[0]),
        "missing_propensity": int(counts[1]),
        "invalid_propensity": int(counts[2]),
        "missing_reward": int(counts[3]),
    }


def parse_policy(value: str | Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A policy from a mapping, a JSON string or a JSON file path.

    Either ``{cell: {config_id: probability}}`` (``"*"`` covers unlisted cells), the flat
    ``{config_id: probability}`` for a policy that ignores the context, a routing table
    (``{"context", "rows", "default", ...}``) or the JSON of ``llmopt bandit --contextual``
    (see :func:`parse_policy_document`, which also returns the table's context column).
    """
    return parse_policy_document(value)[0]


def parse_policy_document(
    value: str | Mapping[str, Any], *, use_case: str | None = None
) -> tuple[dict[str, dict[str, float]], str | None]:
    """``(policy, context column or None)`` from any form :func:`parse_policy` accepts.

    Args:
        value: a mapping, a JSON string or the path of a JSON file.
        use_case: picks the use case's table from ``llmopt bandit --contextual`` output that
            holds several.

    Returns:
        The validated policy and, for a routing table, the column its rows are keyed by.

    Raises:
        ValueError: not JSON, no such file, no routing table for ``use_case``, bad weights.
    """
    loaded = _load_json(value)
    context: str | None = None
    if isinstance(loaded, Mapping) and "contextual" in loaded and "as_of" in loaded:
        loaded = _table_from_bandit_output(loaded, use_case)
    if isinstance(loaded, Mapping) and {"context", "rows", "default"} <= set(loaded):
        table = RoutingTable.from_dict(loaded)
        return validate_policy(table.as_policy()), table.context
    if not isinstance(loaded, Mapping) or not loaded:
        raise ValueError("policy must be a non-empty JSON object")
    if all(isinstance(v, int | float) for v in loaded.values()):
        loaded = {ANY_CELL: loaded}
    if not all(isinstance(v, Mapping) for v in loaded.values()):
        raise ValueError("policy must map cells to {config_id: probability} objects")
    return validate_policy(loaded), context


def _table_from_bandit_output(doc: Mapping[str, Any], use_case: str | None) -> Mapping[str, Any]:
    tables = [
        entry
        for entry in doc.get("contextual") or []
        if isinstance(entry, Mapping) and entry.get("table")
    ]
    if use_case is not None:
        tables = [t for t in tables if t.get("use_case") == use_case]
    if len(tables) != 1:
        which = f" for {use_case!r}" if use_case else ""
        raise ValueError(
            f"the bandit output holds {len(tables)} routing table(s){which}: "
            "pass --use-case or run llmopt bandit --contextual --use-case NAME"
        )
    table: Mapping[str, Any] = tables[0]["table"]
    return table


def _load_json(value: str | Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise ValueError(f"policy is neither JSON nor an existing file: {value!r}")
            text = path.read_text(encoding="utf-8")
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"policy is not valid JSON: {exc}") from exc
        return loaded
    return value


@dataclass(frozen=True)
class OffPolicyEstimate:
    """The estimate of one candidate policy on one use case's logs, with its inputs."""

    use_case: str
    start: dt.date
    end: dt.date
    context: str | None
    reward: str
    policy: dict[str, dict[str, float]]
    status: Literal["ok", "cannot_estimate"]
    reasons: tuple[str, ...]
    rows: int
    estimate: PolicyValueEstimate


def evaluate_policy(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    policy: Mapping[str, Any] | str,
    start: dt.date,
    end: dt.date,
    context: str | None = "task_type",
    reward: str = "quality",
    level: float = 0.95,
    min_ess: float = 200.0,
    max_unsupported_mass: float = 0.01,
) -> OffPolicyEstimate:
    """IPS, SNIPS and DR estimates (with intervals and ESS) of ``policy`` on ``[start, end]``.

    Returns ``status='cannot_estimate'`` with the reasons when propensities or rewards are
    missing, the policy targets a configuration never logged, or support is too thin.
    """
    target = parse_policy(policy)
    cells, counts = logged_cells(
        con, use_case=use_case, start=start, end=end, context=context, reward=reward
    )
    estimate = estimate_policy_value(
        cells,
        target,
        level=level,
        min_ess=min_ess,
        max_unsupported_mass=max_unsupported_mass,
        missing_propensity_rows=counts["missing_propensity"],
        invalid_propensity_rows=counts["invalid_propensity"],
        missing_reward_rows=counts["missing_reward"],
    )
    return OffPolicyEstimate(
        use_case=use_case,
        start=start,
        end=end,
        context=context,
        reward=reward,
        policy=target,
        status=estimate.status,
        reasons=estimate.reasons,
        rows=counts["rows"],
        estimate=estimate,
    )
