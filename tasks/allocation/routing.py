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

from strategies.objective import Objective, monthly_from_daily
from strategies.offpolicy import ANY_CELL, Estimate, dr_difference, estimate_policy_value
from strategies.routing import (
    CannotRoute,
    ContextArmStats,
    RoutingObjective,
    RoutingPolicy,
    learn_routing,
)
from tasks.allocation.context_stats import (
    DEFAULT_CONTEXT_COLUMNS,
    ColumnData,
    RoutingInputs,
    context_sql,
    routing_inputs,
)
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


def _pooled(stats: Sequence[ContextArmStats], objective: RoutingObjective) -> dict[str, Any]:
    """Per arm over every context: mean reward, its standard error and mean cost."""
    coef = objective.coefficients()
    metrics = ("quality", "cost", "latency", "error")
    out: dict[str, Any] = {}
    for arm in sorted({s.arm for s in stats}):
        mine = [s for s in stats if s.arm == arm]
        n = math.fsum(s.n for s in mine)
        merged = ContextArmStats(
            context=ANY_CELL,
            arm=arm,
            n=n,
            **{
                f"{m}_{part}": math.fsum(getattr(s, f"{m}_{part}") for s in mine)
                for m in ("quality", "cost", "latency")
                for part in ("sum", "sum_squares")
            },
            errors=math.fsum(s.errors for s in mine),
        )
        pairs = [merged.mean_var(m) for m in metrics]
        reward = math.fsum(w * m for w, (m, _) in zip(coef, pairs, strict=True))
        se = math.sqrt(math.fsum(w * w * v for w, (_, v) in zip(coef, pairs, strict=True)))
        out[arm] = {"reward": reward, "se": se, "cost": pairs[1][0], "n": n}
    return out


def _bootstrap_production(
    stats: Sequence[ContextArmStats], objective: RoutingObjective, z: float
) -> tuple[str, str]:
    """The single configuration with the best lower bound (within the cost cap when one fits)."""
    pooled = _pooled(stats, objective)
    cap = objective.max_cost_per_request
    fits = [a for a, p in pooled.items() if cap is None or p["cost"] <= cap] or [
        min(pooled, key=lambda a: pooled[a]["cost"])
    ]
    best = max(fits, key=lambda a: (pooled[a]["reward"] - z * pooled[a]["se"], -pooled[a]["cost"]))
    return best, f"no production given: compared with {best}, the best single configuration"


def _evidence(
    col: ColumnData,
    candidate: Mapping[str, Mapping[str, float]],
    production: Mapping[str, Mapping[str, float]],
    *,
    level: float,
    min_ess: float,
    missing_propensity: int,
) -> tuple[list[str], Estimate | None, Estimate | None, Estimate | None]:
    """Reasons the evidence is unusable (empty when usable) and the three DR estimates."""
    cand = estimate_policy_value(
        col.logged,
        candidate,
        level=level,
        min_ess=min_ess,
        missing_propensity_rows=missing_propensity,
    )
    prod = estimate_policy_value(
        col.logged,
        production,
        level=level,
        min_ess=min_ess,
        missing_propensity_rows=missing_propensity,
    )
    if cand.status != "ok":
        return [f"off-policy check impossible: {r}" for r in cand.reasons], None, None, None
    gain = dr_difference(col.logged, candidate, production, level=level)
    return [], cand.dr, prod.dr if prod.status == "ok" else None, gain


def _production_policy(
    production: str | Mapping[str, float] | None,
    inputs: RoutingInputs,
    objective: RoutingObjective,
    z: float,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    if production is None:
        best, why = _bootstrap_production(inputs.columns[0].stats, objective, z)
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
        production: production's config id (or its arm weights); ``None`` compares with the
            best single configuration by lower confidence bound.
        budget: a monthly budget: the rest of the month's mean cost per request is capped at
            what it can still afford, and the mix is one linear programme across contexts.
        floor: minimum weight of every arm in every row (exploration that keeps estimates fresh).
        confidence: posterior probability of being best above which a context's leader takes
            everything but the floors.
        level: two-sided level of the doubly-robust intervals (default: the objective's).
        min_ess: effective sample size below which the off-policy check refuses.
        seed: posterior-draw seed.
        salt: hashing salt of the table (default: the use case).

    Returns:
        :class:`RoutingProposal` (``proposed`` only when the table beats production with
        confidence, or production would overrun the budget and the table does not), or
        :class:`CannotRoute` when no column can route.
    """
    objective = _routing_objective(inputs, budget)
    if level is None:
        level = inputs.objective.level if isinstance(inputs.objective, Objective) else 0.95
    skipped = dict(inputs.skipped)
    if not inputs.columns:
        reasons = [f"{c}: {why}" for c, why in sorted(skipped.items())]
        return CannotRoute(reasons=("no usable context column", *reasons))
    z = _z(level)
    production_policy, notes = _production_policy(production, inputs, objective, z)
    learned: dict[str, tuple[ColumnData, RoutingPolicy, Estimate | None]] = {}
    for col in inputs.columns:
        policy = learn_routing(
            col.stats, objective=objective, floor=floor, confidence=confidence, seed=seed
        )
        if isinstance(policy, CannotRoute):
            skipped[col.column] = "; ".join(policy.reasons)
            continue
        gain = dr_difference(col.logged, policy.as_policy(), production_policy, level=level)
        learned[col.column] = (col, policy, gain)
    if not learned:
        return CannotRoute(reasons=tuple(f"{c}: {why}" for c, why in sorted(skipped.items())))
    gains = {c: (g.value if g else policy.expected_reward) for c, (_, policy, g) in learned.items()}
    column = max(gains, key=lambda c: gains[c])
    col, policy, _ = learned[column]
    candidate = policy.as_policy()
    problems, dr_cand, dr_prod, gain = _evidence(
        col,
        candidate,
        production_policy,
        level=level,
        min_ess=min_ess,
        missing_propensity=inputs.missing_propensity,
    )
    reasons = [*notes, f"routing on {column}: {policy.method}", *problems]
    if inputs.missing_quality:
        reasons.append(f"{inputs.missing_quality} row(s) without a quality score left out")
    reasons += [f"{c} skipped: {why}" for c, why in sorted(skipped.items())]
    status = _decide(
        policy,
        gain=gain,
        production=production_policy,
        col=col,
        objective=objective,
        budget=budget,
        reasons=reasons,
    )
    if problems:
        status = "not_proposed"
    table = RoutingTable(
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


def _decide(
    policy: RoutingPolicy,
    *,
    gain: Estimate | None,
    production: Mapping[str, Mapping[str, float]],
    col: ColumnData,
    objective: RoutingObjective,
    budget: RoutingBudget | None,
    reasons: list[str],
) -> Literal["proposed", "not_proposed"]:
    """Proposed when the gain's lower bound is above 0, or production breaks the cost cap.

    A table whose every row (and default) leads with the same arm is not a routing: it is one
    configuration for everyone, which promotion handles (with its rollout), so it is not proposed.
    """
    leaders = {max(row, key=row.__getitem__) for row in (*policy.rows.values(), policy.default)}
    if len(leaders) == 1 and len(policy.rows) > 0:
        (only,) = leaders
        reasons.append(
            f"{only} leads in every context: one configuration for all is a promotion, "
            "not a routing table"
        )
        return "not_proposed"
    cap = objective.max_cost_per_request
    if cap is not None and not policy.feasible:
        reasons.append("no routing meets the cost cap: not proposed")
        return "not_proposed"
    if gain is not None and gain.lower > 0:
        reasons.append(
            f"beats production by {gain.value:+.4f} [{gain.lower:+.4f}, {gain.upper:+.4f}] "
            "(doubly robust, paired)"
        )
        return "proposed"
    if cap is not None:
        pooled = _pooled(col.stats, objective)
        prod_cost = math.fsum(
            w * pooled[a]["cost"] for a, w in production[ANY_CELL].items() if a in pooled
        )
        if prod_cost > cap:
            spend = "" if budget is None else f" (forecast {budget.forecast(prod_cost):,.2f} USD)"
            reasons.append(
                f"production costs {prod_cost:.5f} USD a request, above the {cap:.5f} the "
                f"budget affords{spend}; the table keeps within it"
            )
            return "proposed"
    if gain is not None:
        reasons.append(
            f"not better than production with confidence: {gain.value:+.4f} "
            f"[{gain.lower:+.4f}, {gain.upper:+.4f}]"
        )
    return "not_proposed"
