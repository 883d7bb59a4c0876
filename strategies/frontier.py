"""Pareto frontier over quality (higher), cost per request and latency p95 (lower), noise-aware.

With a few hundred requests per configuration, point estimates differ by noise alone; a plain
Pareto filter would then call a configuration "dominated" because of luck. Here configuration A
*dominates* B only when A is at least as good on every objective (point estimates) **and**
significantly better on at least one: ``diff > z * sqrt(se_A^2 + se_B^2)`` with the standard
errors from the sufficient statistics (quality and cost: standard error of a mean; latency p95:
the lognormal quantile approximation documented in :class:`strategies.config_stats.ConfigStats`).
With ``z = 0`` this is the textbook Pareto filter. A larger ``z`` keeps more configurations on
the frontier: the frontier is "what we cannot rule out", not "what looked best".

Selection then maximises the weighted reward (:class:`strategies.config_stats.RewardWeights`,
presets or custom) among frontier configurations that meet the hard constraints (quality floor,
latency ceiling, on point estimates).
No feasible configuration is an explicit result, not an exception.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> def cfg(key, q, c, lat):
    ...     return ConfigStats.from_samples(key, quality=rng.normal(q, 0.1, 400),
    ...         cost=np.full(400, c), latency=np.full(400, lat), success=np.ones(400, bool))
    >>> result = analyse_frontier([cfg("cheap", 0.70, 0.001, 900), cfg("best", 0.85, 0.004, 900),
    ...                            cfg("worse", 0.69, 0.004, 900)], weights=PRESETS["balanced"])
    >>> [p.config_key for p in result.frontier], result.selection.config_key
    (['cheap', 'best'], 'best')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from strategies._checks import require_finite_nonnegative
from strategies.config_stats import PRESETS, ConfigStats, RewardWeights

__all__ = [
    "PRESETS",
    "ConfigStats",
    "Excluded",
    "FrontierAnalysis",
    "FrontierPoint",
    "Selection",
    "analyse_frontier",
    "dominance_matrix",
]

OBJECTIVES: tuple[str, ...] = ("quality", "cost_usd", "latency_p95_ms")


@dataclass(frozen=True)
class FrontierPoint:
    """One analysable configuration with its estimates, standard errors and verdicts."""

    config_key: str
    n: int
    quality: float
    quality_se: float
    cost_usd: float
    cost_se: float
    latency_p95_ms: float
    latency_p95_se: float
    error_rate: float
    score: float
    on_frontier: bool
    dominated_by: tuple[str, ...]
    feasible: bool
    constraint_violations: tuple[str, ...]
    params: dict[str, Any] | None = None


@dataclass(frozen=True)
class Excluded:
    """A configuration that cannot be placed, and why (too few requests, no quality scores)."""

    config_key: str
    n: int
    reason: str


@dataclass(frozen=True)
class Selection:
    """The pick: ``selected`` with a config, or ``no_feasible`` / ``no_data`` with the reason."""

    status: Literal["selected", "no_feasible", "no_data"]
    config_key: str | None
    score: float | None
    reason: str


@dataclass(frozen=True)
class FrontierAnalysis:
    points: tuple[FrontierPoint, ...]
    excluded: tuple[Excluded, ...]
    selection: Selection
    weights: RewardWeights
    z: float
    quality_floor: float | None
    latency_ceiling_ms: float | None

    @property
    def frontier(self) -> tuple[FrontierPoint, ...]:
        """Non-dominated points, by cost then quality (the order a plot draws them)."""
        return tuple(
            sorted(
                (p for p in self.points if p.on_frontier), key=lambda p: (p.cost_usd, -p.quality)
            )
        )

    def point(self, config_key: str) -> FrontierPoint | None:
        return next((p for p in self.points if p.config_key == config_key), None)


def dominance_matrix(
    means: np.ndarray, ses: np.ndarray, *, z: float, maximize: Sequence[bool]
) -> np.ndarray:
    """``D[i, j]`` is True when configuration i dominates j (see the module docstring).

    ``means`` and ``ses`` are (k, m) arrays; a NaN standard error never counts as significant
    (unless ``z == 0``, where significance reduces to a strict difference).
    """
    sign = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    oriented = means * sign  # higher is better everywhere
    diff = oriented[:, None, :] - oriented[None, :, :]  # i better than j by diff[i, j]
    se = np.sqrt(ses[:, None, :] ** 2 + ses[None, :, :] ** 2)
    threshold = np.where(np.isnan(se), np.inf, z * se) if z > 0 else np.zeros_like(diff)
    at_least_as_good = np.all(diff >= 0, axis=2)
    significant = np.any(diff > threshold, axis=2)
    dominates = at_least_as_good & significant
    np.fill_diagonal(dominates, False)
    return dominates


def analyse_frontier(
    stats: Sequence[ConfigStats],
    *,
    weights: RewardWeights | None = None,
    z: float = 1.96,
    min_requests: int = 1,
    quality_floor: float | None = None,
    latency_ceiling_ms: float | None = None,
) -> FrontierAnalysis:
    """Frontier, feasibility and weighted selection of the configurations in ``stats``."""
    require_finite_nonnegative("z", z)
    weights = weights or PRESETS["balanced"]
    excluded: list[Excluded] = []
    usable: list[ConfigStats] = []
    for s in stats:
        reason = _exclusion_reason(s, min_requests)
        if reason:
            excluded.append(Excluded(s.config_key, s.n, reason))
        else:
            usable.append(s)
    if not usable:
        selection = Selection("no_data", None, None, "no configuration has enough analysable data")
        return FrontierAnalysis(
            (), tuple(excluded), selection, weights, z, quality_floor, latency_ceiling_ms
        )

    means = np.array([[s.quality_mean, s.cost_mean, s.latency_p95] for s in usable])
    ses = np.array([[s.quality_se, s.cost_se, s.latency_p95_se] for s in usable])
    dom = dominance_matrix(means, ses, z=z, maximize=(True, False, False))
    keys = [s.config_key for s in usable]
    points = []
    for j, s in enumerate(usable):
        violations = _violations(s, quality_floor, latency_ceiling_ms)
        points.append(
            FrontierPoint(
                config_key=s.config_key,
                n=s.n,
                quality=s.quality_mean,
                quality_se=s.quality_se,
                cost_usd=s.cost_mean,
                cost_se=s.cost_se,
                latency_p95_ms=s.latency_p95,
                latency_p95_se=s.latency_p95_se,
                error_rate=s.error_rate,
                score=weights.score_stats(s),
                on_frontier=not dom[:, j].any(),
                dominated_by=tuple(keys[i] for i in np.flatnonzero(dom[:, j])),
                feasible=not violations,
                constraint_violations=violations,
                params=s.params.as_dict() if s.params else None,
            )
        )
    return FrontierAnalysis(
        tuple(points),
        tuple(excluded),
        _select(points),
        weights,
        z,
        quality_floor,
        latency_ceiling_ms,
    )


def _exclusion_reason(s: ConfigStats, min_requests: int) -> str:
    if s.n < max(min_requests, 2):
        return f"{s.n} requests < min_requests {max(min_requests, 2)}"
    if s.quality_n < 2:
        return "fewer than 2 quality scores"
    values = (s.quality_mean, s.cost_mean, s.latency_p95)
    if not all(math.isfinite(v) for v in values):
        return "missing cost or latency"
    return ""


def _violations(
    s: ConfigStats, quality_floor: float | None, latency_ceiling_ms: float | None
) -> tuple[str, ...]:
    out = []
    if quality_floor is not None and s.quality_mean < quality_floor:
        out.append(f"quality {s.quality_mean:.4f} < floor {quality_floor}")
    if latency_ceiling_ms is not None and s.latency_p95 > latency_ceiling_ms:
        out.append(f"latency p95 {s.latency_p95:.0f} ms > ceiling {latency_ceiling_ms} ms")
    return tuple(out)


def _select(points: Sequence[FrontierPoint]) -> Selection:
    frontier = [p for p in points if p.on_frontier]
    feasible = [p for p in frontier if p.feasible and math.isfinite(p.score)]
    if not feasible:
        detail = "; ".join(
            f"{p.config_key}: {', '.join(p.constraint_violations)}" for p in frontier[:5]
        )
        return Selection(
            "no_feasible",
            None,
            None,
            f"no frontier configuration meets the constraints ({detail})",
        )
    best = max(feasible, key=lambda p: (p.score, -p.cost_usd, p.config_key))
    return Selection(
        "selected",
        best.config_key,
        best.score,
        f"highest weighted reward among {len(feasible)} feasible frontier configurations",
    )
