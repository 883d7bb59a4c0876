"""Contextual routing: one traffic mix per context value, learned from logs, on the objective.

Why: a use case served by a strong, expensive model and a weak, cheap one rarely needs the strong
model everywhere. Where the logs carry a context (task type, user segment, language, ...), the
cheap model is often as good in some segments; routing per segment buys the strong model's
quality where it matters and saves money elsewhere. Everything here is pure (numpy / scipy):

* :class:`ContextArmStats` are the sufficient statistics of one (context value, arm) group
  (count, sums and sums of squares of quality, cost and latency), aggregated in SQL by the caller.
* :func:`estimate_contexts` turns them into per-context estimates *shrunk toward the pooled
  estimate of the arm* (normal-normal empirical Bayes: a thin segment borrows strength from the
  others, a well-measured one keeps its own mean).
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
from typing import Literal

import numpy as np
from scipy import optimize

from strategies.objective import Objective
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

ObjectiveKind = Literal["reward", "max_quality", "min_cost"]


@dataclass(frozen=True, kw_only=True)
class RoutingObjective:
    """What routing maximises, per request.

    ``reward``: ``quality_weight*quality - cost_weight*cost_usd - latency_weight*latency_ms
    - error_weight*error`` (a preset's weights divided by its scales; mean latency stands in for
    the p95, which is not linear in the shares). ``max_quality``: mean quality subject to
    ``max_cost_per_request``. ``min_cost``: mean cost subject to mean quality >=
    ``quality_floor``. A ``reward`` may carry a ``max_cost_per_request`` too (a monthly budget
    divided by the month's requests). :meth:`from_objective` builds one from the use case's
    :class:`strategies.objective.Objective`.
    """

    kind: ObjectiveKind = "reward"
    quality_weight: float = 1.0
    cost_weight: float = 0.0
    latency_weight: float = 0.0
    error_weight: float = 0.0
    max_cost_per_request: float | None = None
    quality_floor: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("reward", "max_quality", "min_cost"):
            raise ValueError(f"kind must be reward, max_quality or min_cost, not {self.kind!r}")
        weights = (self.quality_weight, self.cost_weight, self.latency_weight, self.error_weight)
        for value in weights:
            if not math.isfinite(value) or value < 0:
                raise ValueError("objective weights must be finite and >= 0")
        if self.max_cost_per_request is not None and not self.max_cost_per_request >= 0:
            raise ValueError("max_cost_per_request must be >= 0")
        if self.kind == "min_cost" and self.quality_floor is None:
            raise ValueError("min_cost needs a quality_floor")
        if self.kind == "max_quality" and self.max_cost_per_request is None:
            raise ValueError("max_quality needs max_cost_per_request")

    def coefficients(self) -> tuple[float, float, float, float]:
        """Per-request reward as ``(quality, cost, latency, error)`` coefficients."""
        if self.kind == "max_quality":
            return (1.0, 0.0, 0.0, 0.0)
        if self.kind == "min_cost":
            return (0.0, -1.0, 0.0, 0.0)
        return (self.quality_weight, -self.cost_weight, -self.latency_weight, -self.error_weight)

    @staticmethod
    def coefficients_of(objective: Objective | RoutingObjective) -> tuple[float, ...]:
        """The per-request reward coefficients of either objective form (no cap needed)."""
        if isinstance(objective, RoutingObjective):
            return objective.coefficients()
        if objective.kind == "max_quality":
            return (1.0, 0.0, 0.0, 0.0)
        if objective.kind == "min_cost":
            return (0.0, -1.0, 0.0, 0.0)
        w = objective.weights
        return (w.quality, -w.cost / w.cost_scale_usd, -w.latency / w.latency_scale_ms, -w.errors)

    @classmethod
    def from_objective(
        cls, objective: Objective, *, max_cost_per_request: float | None = None
    ) -> RoutingObjective:
        """The routing form of a use case's objective.

        Args:
            objective: the use case's objective (preset weights and scales, or a constraint).
            max_cost_per_request: the cost cap when the objective has a monthly budget (the
                caller knows the month's volume and spend); also caps a reward objective.

        Returns:
            The objective with per-USD and per-ms weights, named as the objective is.

        Raises:
            ValueError: a monthly budget without ``max_cost_per_request``.
        """
        cap = objective.max_cost_per_request
        if max_cost_per_request is not None:
            cap = max_cost_per_request if cap is None else min(cap, max_cost_per_request)
        if objective.kind == "max_quality" and cap is None:
            raise ValueError("a monthly budget needs the cost cap per request it affords")
        w = objective.weights
        return cls(
            kind=objective.kind,
            quality_weight=w.quality,
            cost_weight=w.cost / w.cost_scale_usd,
            latency_weight=w.latency / w.latency_scale_ms,
            error_weight=w.errors,
            max_cost_per_request=cap,
            quality_floor=objective.quality_floor,
            name=objective.name,
        )


@dataclass(frozen=True, kw_only=True)
class ContextArmStats:
    """Sums over the logged rows of one context value served by one arm."""

    context: str
    arm: str
    n: float
    quality_sum: float
    quality_sum_squares: float
    cost_sum: float = 0.0
    cost_sum_squares: float = 0.0
    latency_sum: float = 0.0
    latency_sum_squares: float = 0.0
    errors: float = 0.0

    def __post_init__(self) -> None:
        if not self.n >= 0:
            raise ValueError(f"n must be >= 0 for {self.context}/{self.arm}")

    def mean_var(self, metric: str) -> tuple[float, float]:
        """Mean of ``metric`` and its sampling variance (sample variance / n)."""
        if metric == "error":
            rate = self.errors / self.n
            return rate, rate * (1.0 - rate) / max(self.n - 1.0, 1.0)
        total = float(getattr(self, f"{metric}_sum"))
        squares = float(getattr(self, f"{metric}_sum_squares"))
        mean = total / self.n
        var = max(squares - total * total / self.n, 0.0) / max(self.n - 1.0, 1.0)
        return mean, var / self.n


@dataclass(frozen=True, kw_only=True)
class ContextEstimate:
    """Shrunk per-request estimates of one arm in one context (``n=0``: borrowed entirely)."""

    context: str
    arm: str
    n: float
    quality: float
    cost: float
    latency: float
    error: float
    reward: float
    reward_se: float
    cost_se: float = 0.0


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


def shrink(means: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Empirical-Bayes shrinkage of group means toward their precision-weighted pooled mean.

    Args:
        means: per-group means.
        variances: sampling variance of each mean (``s^2 / n``).

    Returns:
        ``(shrunk means, posterior variances, tau^2)`` where ``tau^2`` (between-group variance,
        method of moments, floored at 0) sets how far each group is pulled.
    """
    v = np.maximum(np.asarray(variances, dtype=float), 1e-12)
    m = np.asarray(means, dtype=float)
    weights = 1.0 / v
    pooled = float(np.sum(weights * m) / np.sum(weights))
    tau2 = max(float(np.var(m, ddof=1)) - float(np.mean(v)), 0.0) if m.size > 1 else 0.0
    factor = tau2 / (tau2 + v)
    return pooled + factor * (m - pooled), factor * v + (1 - factor) ** 2 / np.sum(weights), tau2


def estimate_contexts(
    data: Sequence[ContextArmStats], *, objective: RoutingObjective
) -> tuple[ContextEstimate, ...]:
    """Per (context, arm) estimates of quality, cost, latency and reward, shrunk per arm.

    Args:
        data: the logged groups; contexts or arms absent from a pair get the arm's pooled mean.
        objective: gives the reward coefficients.

    Returns:
        One estimate per context x arm, sorted by context then arm.
    """
    contexts = sorted({d.context for d in data if d.n > 0})
    arms = sorted({d.arm for d in data if d.n > 0})
    coef = np.array(objective.coefficients())
    metrics = ("quality", "cost", "latency", "error")
    out: list[ContextEstimate] = []
    for arm in arms:
        groups = {d.context: d for d in data if d.arm == arm and d.n > 0}
        shrunk: dict[str, dict[str, tuple[float, float]]] = {}
        for metric in metrics:
            pairs = [groups[c].mean_var(metric) for c in sorted(groups)]
            means, var = np.array(pairs).T
            post, post_var, tau2 = shrink(means, var)
            pooled_var = float(1.0 / np.sum(1.0 / np.maximum(var, 1e-12)))
            fallback = float(np.sum(means / np.maximum(var, 1e-12)) * pooled_var)
            by_ctx = dict(zip(sorted(groups), zip(post, post_var, strict=True), strict=True))
            for c in contexts:
                value = by_ctx.get(c, (fallback, tau2 + pooled_var))
                shrunk.setdefault(c, {})[metric] = (float(value[0]), float(value[1]))
        for c in contexts:
            means_c, vars_c = np.array([shrunk[c][m] for m in metrics]).T
            q, k, lat, err = (float(v) for v in means_c)
            out.append(
                ContextEstimate(
                    context=c,
                    arm=arm,
                    n=float(groups[c].n) if c in groups else 0.0,
                    quality=q,
                    cost=k,
                    latency=lat,
                    error=err,
                    reward=float(coef @ means_c),
                    reward_se=math.sqrt(float(coef**2 @ vars_c)),
                    cost_se=math.sqrt(float(vars_c[1])),
                )
            )
    return tuple(sorted(out, key=lambda e: (e.context, e.arm)))


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
    counts = {c: math.fsum(d.n for d in data if d.context == c) for c in contexts}
    given_shares = shares is not None
    if shares is None:
        total = math.fsum(counts.values())
        shares = {c: counts[c] / total for c in contexts}
    else:
        shares = {c: float(shares.get(c, 0.0)) for c in contexts}
        norm = math.fsum(shares.values())
        if norm <= 0:
            return CannotRoute(reasons=("context shares sum to 0",))
        shares = {c: v / norm for c, v in shares.items()}
    estimates = estimate_contexts(data, objective=objective)
    grid: dict[str, list[ContextEstimate]] = {c: [] for c in contexts}
    for e in estimates:
        grid[e.context].append(e)
    constrained = objective.max_cost_per_request is not None or objective.quality_floor is not None
    if constrained:
        rows, feasible = _lp_rows(grid, shares, objective, floor, cost_z)
        cap = objective.max_cost_per_request
        if cap is not None and feasible:
            # The plan's cost is estimated (context shares and costs): keep its upper bound,
            # not its point estimate, under the cap.
            n_rows = None if given_shares else math.fsum(counts.values())
            se = _plan_cost_se(grid, shares, rows, n_rows)
            if cost_z * se > 0:
                tighter = dataclasses.replace(
                    objective, max_cost_per_request=max(cap - cost_z * se, 0.0)
                )
                rows, feasible = _lp_rows(grid, shares, tighter, floor, cost_z)
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
