"""The evidence behind a routing table: pooled arms, the paired DR check, and the verdict.

Used by :func:`tasks.allocation.routing.plan_contextual_routing` (no I/O): production's
bootstrap when none is given (the single configuration with the best lower bound, within the cost
cap when one fits), the off-policy estimates of the table and of production with the paired
doubly-robust gain, and the decision to propose (a confident gain, or production overrunning
the budget while the table does not; never a table that leads with one arm everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from strategies.offpolicy import ANY_CELL, Estimate, dr_difference, estimate_policy_value
from strategies.routing import ContextArmStats, RoutingObjective, RoutingPolicy
from tasks.allocation.context_stats import ColumnData, RoutingBudget, RoutingInputs

__all__ = ["bootstrap_production", "decide", "dr_evidence", "judge", "pooled_arms"]


def pooled_arms(stats: Sequence[ContextArmStats], objective: RoutingObjective) -> dict[str, Any]:
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


def bootstrap_production(
    stats: Sequence[ContextArmStats], objective: RoutingObjective, z: float
) -> tuple[str, str]:
    """The single configuration with the best lower bound (within the cost cap when one fits)."""
    pooled = pooled_arms(stats, objective)
    cap = objective.max_cost_per_request
    fits = [a for a, p in pooled.items() if cap is None or p["cost"] <= cap] or [
        min(pooled, key=lambda a: pooled[a]["cost"])
    ]
    best = max(fits, key=lambda a: (pooled[a]["reward"] - z * pooled[a]["se"], -pooled[a]["cost"]))
    return best, f"no production given: compared with {best}, the best single configuration"


def dr_evidence(
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


def judge(
    col: ColumnData,
    policy: RoutingPolicy,
    production: Mapping[str, Mapping[str, float]],
    *,
    inputs: RoutingInputs,
    objective: RoutingObjective,
    budget: RoutingBudget | None,
    checks: Mapping[str, float],
    reasons: list[str],
) -> tuple[Literal["proposed", "not_proposed"], Estimate | None, Estimate | None, Estimate | None]:
    """The off-policy evidence and the verdict (reasons are appended to ``reasons``)."""
    problems, dr_cand, dr_prod, gain = dr_evidence(
        col,
        policy.as_policy(),
        production,
        level=checks["level"],
        min_ess=checks["min_ess"],
        missing_propensity=inputs.missing_propensity,
    )
    reasons.extend(problems)
    if inputs.missing_quality:
        reasons.append(f"{inputs.missing_quality} row(s) without a quality score left out")
    if problems:
        return "not_proposed", dr_cand, dr_prod, gain
    status = decide(
        policy,
        gain=gain,
        production=production,
        col=col,
        objective=objective,
        budget=budget,
        reasons=reasons,
    )
    return status, dr_cand, dr_prod, gain


def decide(
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
        pooled = pooled_arms(col.stats, objective)
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
