"""Contextual routing from the warehouse: learn a per-context mix, check it off-policy, propose it.

Two steps, so the nightly flow can aggregate once and decide without a connection:

* :func:`routing_inputs` (DuckDB, :mod:`tasks.allocation.context_stats`) profiles the context
  columns (skipping empty and constant ones, with the reason) and aggregates per context value x
  configuration the router's sums and the off-policy importance-weight sums.
* :func:`plan_contextual_routing` (no I/O) learns one policy per usable column
  (:func:`strategies.routing.learn_routing`: shrunk per-context estimates, a linear programme
  across contexts under a budget), keeps the column whose policy gains most, estimates it
  doubly-robustly against production (paired, with its interval) and returns a
  :class:`RoutingProposal` carrying the routing table (:class:`tasks.registry.routing.RoutingTable`)
  only when the evidence supports it, or :class:`CannotRoute` with the reasons.

Rewards: an errored call scores quality 0 (as in :mod:`tasks.allocation.offpolicy`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from scipy import stats

from strategies.objective import monthly_from_daily
from strategies.offpolicy import ANY_CELL, Estimate, dr_difference
from strategies.routing import (
    CannotRoute,
    RoutingObjective,
    RoutingPolicy,
    learn_routing,
)
from tasks.allocation.context_stats import (
    DEFAULT_CONTEXT_COLUMNS,
    ColumnData,
    RoutingBudget,
    RoutingInputs,
    context_sql,
    routing_inputs,
)
from tasks.allocation.routing_evidence import bootstrap_production, judge
from tasks.registry.routing import RoutingTable

__all__ = [
    "DEFAULT_CONTEXT_COLUMNS",
    "CannotRoute",
    "ColumnData",
    "RoutingBudget",
    "RoutingInputs",
    "RoutingProposal",
    "context_sql",
    "plan_contextual_routing",
    "routing_inputs",
]


@dataclass(frozen=True, kw_only=True)
class RoutingProposal:
    """A learned routing table, its off-policy evidence and whether it is proposed."""

    use_case: str
    status: Literal["proposed", "not_proposed"]
    reasons: tuple[str, ...]
    objective: str
    context: str
    table: dict[str, Any]
    production: dict[str, dict[str, float]]
    policy: RoutingPolicy
    dr_candidate: Estimate | None
    dr_production: Estimate | None
    dr_gain: Estimate | None
    rows: int
    skipped_columns: dict[str, str] = field(default_factory=dict)
    column_gains: dict[str, float] = field(default_factory=dict)
    forecast_spend_usd: float | None = None
    budget_usd: float | None = None


def _clean_row(row: Mapping[str, float]) -> dict[str, float]:
    kept = {a: w for a, w in row.items() if w > 1e-9}
    total = math.fsum(kept.values())
    return {a: w / total for a, w in sorted(kept.items())}


def _production_policy(
    production: str | Mapping[str, float] | None,
    inputs: RoutingInputs,
    objective: RoutingObjective,
    z: float,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    if production is None:
        best, why = bootstrap_production(inputs.columns[0].stats, objective, z)
        return {ANY_CELL: {best: 1.0}}, [why]
    if isinstance(production, str):
        return {ANY_CELL: {production: 1.0}}, []
    return {ANY_CELL: _clean_row(production)}, []


def plan_contextual_routing(
    inputs: RoutingInputs,
    *,
    production: str | Mapping[str, float] | None = None,
    budget: RoutingBudget | None = None,
    floor: float = 0.0,
    confidence: float = 0.95,
    level: float | None = None,
    min_ess: float = 200.0,
    seed: int = 0,
    salt: str | None = None,
) -> RoutingProposal | CannotRoute:
    """Learn a per-context routing table and decide whether the evidence supports it.

    Args:
        inputs: from :func:`routing_inputs`.
        production: production's config id or arm weights (``None``: the best single
            configuration by lower confidence bound).
        budget: caps the mean cost per request at what the month can still afford.
        floor: minimum weight of every arm in every row.
        confidence: P(best) above which a context's leader takes all but the floors.
        level: level of the doubly-robust intervals (default: the objective's).
        min_ess: effective sample size below which the off-policy check refuses.
        seed: posterior-draw seed.
        salt: hashing salt of the table (default: the use case).

    Returns:
        :class:`RoutingProposal` (see :func:`routing_evidence.decide` for ``proposed``), or
        :class:`CannotRoute` when no column can route.
    """
    objective = _routing_objective(inputs, budget)
    level = level or float(getattr(inputs.objective, "level", 0.95))
    skipped = dict(inputs.skipped)
    if not inputs.columns:
        why = [f"{c}: {reason}" for c, reason in sorted(skipped.items())]
        return CannotRoute(reasons=("no usable context column", *why))
    production_policy, notes = _production_policy(production, inputs, objective, _z(level))
    learned = _learn_columns(
        inputs.columns,
        objective=objective,
        production=production_policy,
        skipped=skipped,
        options={"floor": floor, "confidence": confidence, "seed": seed},
        level=level,
    )
    if not learned:
        return CannotRoute(reasons=tuple(f"{c}: {why}" for c, why in sorted(skipped.items())))
    gains = {c: (g.value if g else p.expected_reward) for c, (_, p, g) in learned.items()}
    col, policy, _ = learned[column := max(gains, key=lambda c: gains[c])]
    reasons = [*notes, f"routing on {column}: {policy.method}"]
    status, dr_cand, dr_prod, gain = judge(
        col,
        policy,
        production_policy,
        inputs=inputs,
        objective=objective,
        budget=budget,
        checks={"level": level, "min_ess": min_ess},
        reasons=reasons,
    )
    reasons += [f"{c} skipped: {why}" for c, why in sorted(skipped.items())]
    table = _table(policy, column=column, inputs=inputs, objective=objective, gain=gain, salt=salt)
    return RoutingProposal(
        use_case=inputs.use_case,
        status=status,
        reasons=tuple(reasons),
        objective=objective.name or objective.kind,
        context=column,
        table=table.to_dict(),
        production=production_policy,
        policy=policy,
        dr_candidate=dr_cand,
        dr_production=dr_prod,
        dr_gain=gain,
        rows=inputs.rows,
        skipped_columns=skipped,
        column_gains=gains,
        forecast_spend_usd=None if budget is None else budget.forecast(policy.expected_cost),
        budget_usd=None if budget is None else budget.monthly_budget_usd,
    )


def _learn_columns(
    columns: Sequence[ColumnData],
    *,
    objective: RoutingObjective,
    production: Mapping[str, Mapping[str, float]],
    skipped: dict[str, str],
    options: Mapping[str, Any],
    level: float,
) -> dict[str, tuple[ColumnData, RoutingPolicy, Estimate | None]]:
    """One policy per column with its paired DR gain over production (``skipped`` gets the rest)."""
    learned: dict[str, tuple[ColumnData, RoutingPolicy, Estimate | None]] = {}
    for col in columns:
        policy = learn_routing(col.stats, objective=objective, **options)
        if isinstance(policy, CannotRoute):
            skipped[col.column] = "; ".join(policy.reasons)
            continue
        gain = dr_difference(col.logged, policy.as_policy(), production, level=level)
        learned[col.column] = (col, policy, gain)
    return learned


def _table(
    policy: RoutingPolicy,
    *,
    column: str,
    inputs: RoutingInputs,
    objective: RoutingObjective,
    gain: Estimate | None,
    salt: str | None,
) -> RoutingTable:
    return RoutingTable(
        context=column,
        rows={k: _clean_row(v) for k, v in policy.rows.items()},
        default=_clean_row(policy.default),
        salt=salt or inputs.use_case,
        metadata={
            "objective": objective.name or objective.kind,
            "window": f"{inputs.start}..{inputs.end}",
            "expected_quality": policy.expected_quality,
            "expected_cost_usd": policy.expected_cost,
            "expected_reward": policy.expected_reward,
            "dr_gain": None if gain is None else [gain.value, gain.lower, gain.upper],
        },
    )


def _routing_objective(inputs: RoutingInputs, budget: RoutingBudget | None) -> RoutingObjective:
    """The LP form of the use case's objective, capped by what the budget still affords."""
    objective = inputs.objective
    cap = None if budget is None else budget.cost_cap()
    if isinstance(objective, RoutingObjective):
        if cap is None:
            return objective
        if objective.max_cost_per_request is not None:
            cap = min(cap, objective.max_cost_per_request)
        return dataclasses.replace(objective, max_cost_per_request=cap)
    if cap is None and objective.monthly_budget_usd is not None:
        days = (inputs.end - inputs.start).days + 1
        cap = objective.cost_cap(monthly_from_daily(inputs.rows / days))
    return RoutingObjective.from_objective(objective, max_cost_per_request=cap)


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2.0))
