"""Per-context estimates for routing: sufficient statistics, the objective's reward, shrinkage.

Why: a routing table is only as good as its per-context estimates, and contexts are unequal (a
large segment is well measured, a small one is noise). :func:`estimate_contexts` shrinks each
arm's per-context means toward the arm's pooled mean (normal-normal empirical Bayes, the
between-context variance by the method of moments): a thin segment borrows strength from the
others, a well-measured one keeps its own mean. :class:`RoutingObjective` is the use case's
objective (:class:`strategies.objective.Objective`) in the linear, per-request form a traffic
mix can be optimised on. Pure numpy; used by :mod:`strategies.routing`.

Example:
    >>> import numpy as np
    >>> post, _, tau2 = shrink(np.array([0.5, 0.7, 0.9]), np.array([1e-4, 1e-4, 1e-1]))
    >>> [round(float(x), 3) for x in post], tau2 > 0
    ([0.501, 0.699, 0.619], True)
    >>> coef = RoutingObjective.from_objective(Objective.from_preset("balanced")).coefficients()
    >>> [round(c, 6) for c in coef]  # per quality point, per USD, per ms, per error
    [0.6, -3.0, -2e-05, -0.6]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from strategies.objective import Objective

__all__ = [
    "ContextArmStats",
    "ContextEstimate",
    "RoutingObjective",
    "estimate_contexts",
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
