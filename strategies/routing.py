"""Contextual routing: one traffic mix per context value, learned from logs, on the objective.

Why: a use case served by a strong, expensive model and a weak, cheap one rarely needs the strong
model everywhere. Where the logs carry a context (task type, user segment, language, ...), the
cheap model is often as good in some segments; routing per segment buys the strong model's
quality where it matters and saves money elsewhere. Everything here is pure (numpy / scipy):

* :class:`ContextArmStats` (sufficient statistics of one context value x arm, aggregated in SQL
  by the caller) become per-context estimates *shrunk toward the arm's pooled estimate*
  (:mod:`strategies.context_estimates`, re-exported here).
* :func:`learn_routing` chooses the mix per context on the :class:`RoutingObjective`: without a
  constraint, the posterior probability that each arm is best in the context (Thompson), so a
  clearly worse arm loses its share and a proven better arm keeps it; with a cost ceiling (a
  monthly budget divided by the requests) or a quality floor, one linear programme over all
  contexts (``scipy.optimize.linprog``), which spends the money where it buys the most quality
  per dollar instead of one mix for every context.
* The learned policy is checked against production with the paired doubly-robust
  :func:`strategies.offpolicy.dr_difference` before anyone proposes it.

Example:
    >>> stats = [
    ...     ContextArmStats(context=c, arm=a, n=400, quality_sum=400 * q,
    ...                     quality_sum_squares=400 * (q * q + 0.01), cost_sum=400 * k)
    ...     for c, a, q, k in [("easy", "big", 0.80, 0.010), ("easy", "small", 0.82, 0.001),
    ...                        ("hard", "big", 0.85, 0.010), ("hard", "small", 0.50, 0.001)]]
    >>> objective = RoutingObjective(kind="max_quality", max_cost_per_request=0.006)
    >>> policy = learn_routing(stats, objective=objective, floor=0.0)
    >>> {c: {a: round(w, 2) for a, w in row.items()} for c, row in policy.rows.items()}
    {'easy': {'big': 0.0, 'small': 1.0}, 'hard': {'big': 1.0, 'small': 0.0}}
    >>> round(policy.expected_cost, 4), round(policy.expected_quality, 2)
    (0.0055, 0.83)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from strategies.context_estimates import (
    ContextArmStats,
    ContextEstimate,
    RoutingObjective,
    estimate_contexts,
    shrink,
)
from strategies.offpolicy import ANY_CELL

__all__ = [
    "CannotRoute",
    "ContextArmStats",
    "ContextEstimate",
    "RoutingObjective",
    "RoutingPolicy",
    "estimate_contexts",
    "learn_routing",
    "shrink",
]


@dataclass(frozen=True, kw_only=True)
class RoutingPolicy:
    """Context value -> arm weights (each row sums to 1), a default row, and its estimates."""

    rows: dict[str, dict[str, float]]
    default: dict[str, float]
    shares: dict[str, float]
    expected_reward: float
    expected_quality: float
    expected_cost: float
    feasible: bool
    method: str
    reasons: tuple[str, ...]
    estimates: tuple[ContextEstimate, ...] = ()

    def as_policy(self) -> dict[str, dict[str, float]]:
        """The policy :func:`strategies.offpolicy.estimate_policy_value` takes (``*``: default)."""
        return {**self.rows, ANY_CELL: dict(self.default)}


@dataclass(frozen=True, kw_only=True)
class CannotRoute:
    """Why no routing policy was learned."""

    reasons: tuple[str, ...]
    details: dict[str, float] = field(default_factory=dict)


def _probability_best(means: np.ndarray, ses: np.ndarray, draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = rng.normal(means, np.maximum(ses, 1e-12), size=(draws, means.size))
    best = samples == samples.max(axis=1, keepdims=True)
    result: np.ndarray = (best / best.sum(axis=1, keepdims=True)).mean(axis=0)
    return result


def _thompson_rows(
    grid: dict[str, list[ContextEstimate]], *, floor: float, confidence: float, seed: int
) -> dict[str, np.ndarray]:
    rows: dict[str, np.ndarray] = {}
    for i, (ctx, ests) in enumerate(sorted(grid.items())):
        means = np.array([e.reward for e in ests])
        ses = np.array([e.reward_se for e in ests])
        p = _probability_best(means, ses, 20_000, seed + i)
        lead = int(p.argmax())
        if p[lead] >= confidence:  # proven better: exploration takes nothing beyond the floor
            p = np.zeros_like(p)
            p[lead] = 1.0
        rows[ctx] = floor + (1.0 - floor * p.size) * p
    return rows


def _lp_rows(
    grid: dict[str, list[ContextEstimate]],
    shares: Mapping[str, float],
    objective: RoutingObjective,
    floor: float,
    cost_z: float,
) -> tuple[dict[str, np.ndarray], bool]:
    """One LP over every context's shares; infeasible -> the cheapest mix (``False``).

    The cost constraint uses each cost's upper bound ``cost + cost_z * se`` so that sampling
    noise in the cost estimates does not push the forecast over the cap.
    """
    ctxs = sorted(grid)
    k = len(grid[ctxs[0]])
    s = np.repeat([shares[c] for c in ctxs], k)
    reward = np.concatenate([[e.reward for e in grid[c]] for c in ctxs])
    cost = np.concatenate([[e.cost + cost_z * e.cost_se for e in grid[c]] for c in ctxs])
    quality = np.concatenate([[e.quality for e in grid[c]] for c in ctxs])
    a_ub, b_ub = [], []
    if objective.max_cost_per_request is not None:
        a_ub.append(s * cost)
        b_ub.append(objective.max_cost_per_request)
    if objective.quality_floor is not None:
        a_ub.append(-s * quality)
        b_ub.append(-objective.quality_floor)
    a_eq = np.kron(np.eye(len(ctxs)), np.ones((1, k)))
    bounds = [(floor, 1.0)] * (len(ctxs) * k)

    def solve(c: np.ndarray, ub: bool) -> np.ndarray | None:
        res = optimize.linprog(
            c=c,
            A_ub=np.array(a_ub) if ub and a_ub else None,
            b_ub=np.array(b_ub) if ub and b_ub else None,
            A_eq=a_eq,
            b_eq=np.ones(len(ctxs)),
            bounds=bounds,
            method="highs",
        )
        if res.status != 0:
            return None
        # Second stage: among the optimal mixes, the cheapest (ties go to the cheaper arm).
        best = float(c @ res.x)
        tie = optimize.linprog(
            c=s * cost,
            A_ub=np.vstack([*(a_ub if ub else []), c]),
            b_ub=np.array([*(b_ub if ub else []), best + 1e-9 * max(1.0, abs(best))]),
            A_eq=a_eq,
            b_eq=np.ones(len(ctxs)),
            bounds=bounds,
            method="highs",
        )
        return np.clip(np.asarray((tie if tie.status == 0 else res).x, dtype=float), 0.0, 1.0) + 0.0

    x = solve(-s * reward, True)
    feasible = x is not None
    if x is None:
        fallback = s * cost if objective.max_cost_per_request is not None else -s * quality
        x = solve(fallback, False)
    assert x is not None  # the equality-only LP always has a solution
    return {c: x[i * k : (i + 1) * k] for i, c in enumerate(ctxs)}, feasible


def _plan_cost_se(
    grid: Mapping[str, Sequence[ContextEstimate]],
    shares: Mapping[str, float],
    rows: Mapping[str, np.ndarray],
    n_rows: float | None,
) -> float:
    """Standard error of a plan's cost per request: cost estimates plus (estimated) shares."""
    per_ctx = {c: float(rows[c] @ np.array([e.cost for e in grid[c]])) for c in grid}
    var = math.fsum(
        shares[c] ** 2 * float(rows[c] ** 2 @ np.array([e.cost_se**2 for e in grid[c]]))
        for c in grid
    )
    if n_rows:
        mean = math.fsum(shares[c] * per_ctx[c] for c in grid)
        var += math.fsum(shares[c] * (per_ctx[c] - mean) ** 2 for c in grid) / n_rows
    return math.sqrt(var)


def _context_shares(
    data: Sequence[ContextArmStats], contexts: Sequence[str], shares: Mapping[str, float] | None
) -> tuple[dict[str, float], float | None] | CannotRoute:
    """Normalised context shares and, when they are estimated from the logs, the row count."""
    counts = {c: math.fsum(d.n for d in data if d.context == c) for c in contexts}
    if shares is None:
        total = math.fsum(counts.values())
        return {c: counts[c] / total for c in contexts}, total
    given = {c: float(shares.get(c, 0.0)) for c in contexts}
    norm = math.fsum(given.values())
    if norm <= 0:
        return CannotRoute(reasons=("context shares sum to 0",))
    return {c: v / norm for c, v in given.items()}, None


def _constrained_rows(
    grid: dict[str, list[ContextEstimate]],
    shares: Mapping[str, float],
    *,
    objective: RoutingObjective,
    floor: float,
    cost_z: float,
    n_rows: float | None,
) -> tuple[dict[str, np.ndarray], bool]:
    """The LP mix; re-solved once so the plan's cost *upper bound* (not its estimate) fits."""
    rows, feasible = _lp_rows(grid, shares, objective, floor, cost_z)
    cap = objective.max_cost_per_request
    if cap is None or not feasible:
        return rows, feasible
    se = _plan_cost_se(grid, shares, rows, n_rows)
    if cost_z * se <= 0:
        return rows, feasible
    tighter = dataclasses.replace(objective, max_cost_per_request=max(cap - cost_z * se, 0.0))
    return _lp_rows(grid, shares, tighter, floor, cost_z)


def learn_routing(
    data: Sequence[ContextArmStats],
    *,
    objective: RoutingObjective,
    shares: Mapping[str, float] | None = None,
    floor: float = 0.0,
    confidence: float = 0.95,
    cost_z: float = 1.645,
    seed: int = 0,
) -> RoutingPolicy | CannotRoute:
    """Per-context arm weights on ``objective``.

    Args:
        data: per (context, arm) sums from the logs.
        objective: reward, or a constrained form (LP across contexts).
        shares: traffic share of each context (default: its share of the logged rows).
        floor: minimum weight of every arm in every context (keeps estimates fresh).
        confidence: a context's leader with this posterior probability of being best gets
            everything but the floors (unconstrained objectives).
        cost_z: the cost cap binds on ``cost + cost_z * se`` (1.645: one-sided 95%).
        seed: posterior-draw seed (same data and seed, same table).

    Returns:
        :class:`RoutingPolicy`, or :class:`CannotRoute` with the reason.
    """
    contexts = sorted({d.context for d in data if d.n > 0})
    arms = sorted({d.arm for d in data if d.n > 0})
    if len(arms) < 2:
        return CannotRoute(reasons=(f"{len(arms)} arm(s) with logged rewards: nothing to route",))
    if not 0.0 <= floor * len(arms) <= 1.0:
        return CannotRoute(reasons=(f"floor {floor} x {len(arms)} arms exceeds 100%",))
    found = _context_shares(data, contexts, shares)
    if isinstance(found, CannotRoute):
        return found
    shares, n_rows = found
    estimates = estimate_contexts(data, objective=objective)
    grid: dict[str, list[ContextEstimate]] = {c: [] for c in contexts}
    for e in estimates:
        grid[e.context].append(e)
    if objective.max_cost_per_request is not None or objective.quality_floor is not None:
        rows, feasible = _constrained_rows(
            grid, shares, objective=objective, floor=floor, cost_z=cost_z, n_rows=n_rows
        )
        method = "linear programme across contexts (scipy.optimize.linprog, highs)"
    else:
        rows = _thompson_rows(grid, floor=floor, confidence=confidence, seed=seed)
        feasible, method = True, "per-context posterior probability best (shrunk estimates)"
    default = sum((shares[c] * rows[c] for c in contexts), np.zeros(len(arms)))
    default = default / default.sum()

    def expect(attr: str) -> float:
        return math.fsum(
            shares[c] * float(rows[c] @ np.array([getattr(e, attr) for e in grid[c]]))
            for c in contexts
        )

    reasons = [f"{len(contexts)} context value(s), {len(arms)} arms, {method}"]
    if not feasible:
        reasons.append("no mix meets the constraint: the cheapest mix per context instead")
    return RoutingPolicy(
        rows={c: dict(zip(arms, rows[c].tolist(), strict=True)) for c in contexts},
        default=dict(zip(arms, default.tolist(), strict=True)),
        shares=dict(shares),
        expected_reward=expect("reward"),
        expected_quality=expect("quality"),
        expected_cost=expect("cost"),
        feasible=feasible,
        method=method,
        reasons=tuple(reasons),
        estimates=estimates,
    )
