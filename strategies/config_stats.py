"""Per-configuration sufficient statistics and the scalar reward (no Optuna, no I/O).

* :class:`ConfigStats` — sufficient statistics of one configuration over a window (from the
  warehouse's ``config_metrics``) with derived means and standard errors (latency p95 by a
  documented lognormal approximation).
* :class:`RewardWeights`, :data:`PRESETS` and :func:`weights_for` — the scalar reward used by
  single-objective studies, the frontier's weighted selection and the objectives of
  :mod:`strategies.objective`.

:mod:`strategies.search` re-exports every public name here, so ``from strategies.search import
ConfigStats`` keeps working; modules that do not search (frontier, objective, promotion) import
from here and do not pull in Optuna.

Example:
    >>> import numpy as np
    >>> s = ConfigStats.from_samples(
    ...     "m|p", quality=np.array([0.5, 0.7]), cost=np.array([0.01, 0.03]),
    ...     latency=np.array([100.0, 300.0]), success=np.array([True, True]))
    >>> round(s.quality_mean, 2), round(s.cost_mean, 3), s.error_rate
    (0.6, 0.02, 0.0)
    >>> round(PRESETS["balanced"].score(0.6, 0.0, 0.0), 2)
    0.36
    >>> weights_for("balanced", {"cost": 0.5}).cost
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from strategies._checks import require_finite_nonnegative
from strategies.search_space import CandidateParams

__all__ = [
    "PRESETS",
    "PRESET_COST_SCALE_USD",
    "PRESET_LATENCY_SCALE_MS",
    "ConfigStats",
    "RewardWeights",
    "weights_for",
]


# --------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class ConfigStats:
    """Sufficient statistics of one configuration over a window (from ``config_metrics``).

    Standard errors come from the sums (no rows needed). Latency p95 has no sum to lean on, so
    :attr:`latency_p95_se` uses the asymptotic variance of a sample quantile,
    ``Var(q_p) ≈ p(1-p) / (n f(q_p)^2)``, with the density ``f`` of a lognormal fitted to the
    observed mean and p95 (``ln p95 = mu + z95 sigma``, ``ln mean = mu + sigma^2 / 2``), which
    gives ``se = q sigma sqrt(p(1-p)/n) / phi(z95)``. LLM latency is right-skewed and close to
    lognormal; when the fit is impossible (p95 below the mean) sigma falls back to a small value.
    """

    config_key: str
    n: int
    successes: int
    quality_n: int
    quality_sum: float
    quality_sum_squares: float
    cost_sum: float
    cost_sum_squares: float
    latency_mean: float
    latency_p95: float
    params: CandidateParams | None = None

    @property
    def error_rate(self) -> float:
        return 1.0 - self.successes / self.n if self.n else math.nan

    @property
    def error_rate_se(self) -> float:
        rate = self.error_rate
        return math.sqrt(rate * (1.0 - rate) / self.n) if self.n else math.nan

    @property
    def quality_mean(self) -> float:
        return self.quality_sum / self.quality_n if self.quality_n else math.nan

    @property
    def quality_se(self) -> float:
        return _mean_se(self.quality_n, self.quality_sum, self.quality_sum_squares)

    @property
    def cost_mean(self) -> float:
        return self.cost_sum / self.n if self.n else math.nan

    @property
    def cost_se(self) -> float:
        return _mean_se(self.n, self.cost_sum, self.cost_sum_squares)

    @property
    def latency_p95_se(self) -> float:
        if self.n < 2 or not self.latency_p95 > 0 or not self.latency_mean > 0:
            return math.nan
        z = float(sps.norm.ppf(0.95))
        log_ratio = math.log(self.latency_p95 / self.latency_mean)
        disc = z * z - 2.0 * log_ratio
        sigma = z - math.sqrt(disc) if disc >= 0 else z  # disc < 0: heavier tail than any fit
        sigma = max(sigma, 0.05)
        return self.latency_p95 * sigma * math.sqrt(0.95 * 0.05 / self.n) / float(sps.norm.pdf(z))

    @property
    def analysable(self) -> bool:
        return self.n > 0 and self.quality_n > 0 and math.isfinite(self.latency_p95)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ConfigStats:
        """Build from one row of ``tasks.warehouse.config_metrics.config_metrics`` (dict / Series).

        Args:
            row: the row, with ``config_key``, ``n``, ``successes``, the quality and cost sums
                and sums of squares, ``latency_mean`` and ``latency_p95``.
        """
        params = None
        try:
            params = CandidateParams.from_mapping(row)
        except (ValueError, TypeError):
            params = None  # logs without full sampling parameters still have statistics
        return cls(
            config_key=str(row["config_key"]),
            n=int(row["n"]),
            successes=int(row["successes"]),
            quality_n=int(row["quality_n"]),
            quality_sum=float(row["quality_sum"]),
            quality_sum_squares=float(row["quality_sum_squares"]),
            cost_sum=_float_or_nan(row["cost_sum"]),
            cost_sum_squares=_float_or_nan(row["cost_sum_squares"]),
            latency_mean=_float_or_nan(row["latency_mean"]),
            latency_p95=_float_or_nan(row["latency_p95"]),
            params=params,
        )

    @classmethod
    def from_samples(
        cls,
        config_key: str,
        *,
        quality: np.ndarray,
        cost: np.ndarray,
        latency: np.ndarray,
        success: np.ndarray,
        params: CandidateParams | None = None,
    ) -> ConfigStats:
        """Sufficient statistics of raw arrays (tests and simulations; NaN quality = missing)."""
        q = quality[~np.isnan(quality)]
        return cls(
            config_key=config_key,
            n=len(success),
            successes=int(np.sum(success)),
            quality_n=len(q),
            quality_sum=float(q.sum()),
            quality_sum_squares=float((q * q).sum()),
            cost_sum=float(cost.sum()),
            cost_sum_squares=float((cost * cost).sum()),
            latency_mean=float(latency.mean()) if len(latency) else math.nan,
            latency_p95=float(np.quantile(latency, 0.95)) if len(latency) else math.nan,
            params=params,
        )


def _float_or_nan(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _mean_se(n: int, total: float, squares: float) -> float:
    if n < 2 or not math.isfinite(total):
        return math.nan
    mean = total / n
    var = max(squares - n * mean * mean, 0.0) / (n - 1)
    return math.sqrt(var / n)


# --------------------------------------------------------------------------- reward
@dataclass(frozen=True)
class RewardWeights:
    """Scalar reward ``quality - cost - latency - errors``, each term weighted and scaled.

    ``reward = w_q * quality - w_c * cost_usd / cost_scale_usd
    - w_l * latency_p95_ms / latency_scale_ms - w_e * error_rate``.

    Scales make the weights readable: with the defaults (1 cent, 1 second) the balanced preset
    says "one cent more per request is worth 0.1 quality points, one more second of p95 latency
    is worth 0.02", so the weights are exchange rates, not magic numbers.
    """

    quality: float = 1.0
    cost: float = 0.1
    latency: float = 0.02
    errors: float = 1.0
    cost_scale_usd: float = 0.01
    latency_scale_ms: float = 1000.0

    def __post_init__(self) -> None:
        for name in ("quality", "cost", "latency", "errors"):
            require_finite_nonnegative(f"weight {name}", getattr(self, name))
        if not (self.cost_scale_usd > 0 and self.latency_scale_ms > 0):
            raise ValueError("cost_scale_usd and latency_scale_ms must be > 0")

    def score(
        self, quality: float, cost_usd: float, latency_p95_ms: float, error_rate: float = 0.0
    ) -> float:
        """The reward; NaN only if an input is NaN (callers decide what 'cannot analyse' means)."""
        return (
            self.quality * quality
            - self.cost * cost_usd / self.cost_scale_usd
            - self.latency * latency_p95_ms / self.latency_scale_ms
            - self.errors * error_rate
        )

    def score_stats(self, stats: ConfigStats) -> float:
        return self.score(stats.quality_mean, stats.cost_mean, stats.latency_p95, stats.error_rate)


# The reward presets of the decision layer (issue 12): weights over quality / cost / latency, with
# explicit scales (one unit of cost = ``PRESET_COST_SCALE_USD`` per request, one unit of latency =
# ``PRESET_LATENCY_SCALE_MS`` of p95) and an error weight equal to the quality weight (a failed
# request is worth no quality). ``strategies.objective`` builds every objective from this one table.
PRESET_COST_SCALE_USD = 0.1
PRESET_LATENCY_SCALE_MS = 5000.0


def _preset(quality: float, cost: float, latency: float) -> RewardWeights:
    return RewardWeights(
        quality=quality,
        cost=cost,
        latency=latency,
        errors=quality,
        cost_scale_usd=PRESET_COST_SCALE_USD,
        latency_scale_ms=PRESET_LATENCY_SCALE_MS,
    )


PRESETS: dict[str, RewardWeights] = {
    "quality-focused": _preset(0.8, 0.15, 0.05),
    "balanced": _preset(0.6, 0.3, 0.1),
    "cost-focused": _preset(0.4, 0.5, 0.1),
    "latency-focused": _preset(0.4, 0.3, 0.3),
}


def weights_for(
    preset: str = "balanced", overrides: Mapping[str, float] | None = None
) -> RewardWeights:
    """A preset, optionally with some weights / scales replaced (custom weights)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    base = PRESETS[preset]
    if not overrides:
        return base
    known = {f for f in RewardWeights.__dataclass_fields__}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown weight keys {unknown}; known: {sorted(known)}")
    return replace(base, **{k: float(v) for k, v in overrides.items()})
