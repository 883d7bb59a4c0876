"""Per-arm sufficient statistics, vectorized: every field is an array, one entry per comparison.

Why sufficient statistics: the warehouse aggregates rows in SQL and only these sums travel into
Python, so the statistics engine is the same whether an arm saw a hundred calls or a billion.
Each kind reduces to :class:`Moments` (units, mean, per-unit variance of the linearized metric),
the one shape every test in this package consumes (GrowthBook gbstats style: frozen dataclasses
with derived properties).

Variance choices (documented because they change answers):

* ``MeanStats``: unbiased sample variance ``(ss - s^2/n) / (n - 1)``; Welch t reference.
* ``ProportionStats``: the unpooled Wald variance ``p (1 - p)`` per unit with a normal reference,
  the same as ``statsmodels.stats.proportion.test_proportions_2indep(method="wald")``. Pooled
  variance is only right under the null and gives no confidence interval, so it is not used.
* ``RatioStats``: delta method on the ratio of means (Deng et al. 2018), for metrics whose
  numerator and denominator are both summed per randomization unit (tokens per request when a
  unit makes several requests); normal reference.
* ``CupedStats``: see :mod:`strategies.experiments.cuped`.

Example:
    >>> m = MeanStats(n=[4], sum=[10.0], sum_squares=[30.0]).moments()
    >>> float(m.mean[0]), round(float(m.variance[0]), 6)
    (2.5, 1.666667)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def as_float_array(value: ArrayLike) -> FloatArray:
    """A float64 array of at least one dimension (scalars become shape ``(1,)``).

    Args:
        value: a scalar or array-like.
    """
    return np.atleast_1d(np.asarray(value, dtype=np.float64))


def _freeze_arrays(obj: Any) -> None:
    arrays = [as_float_array(getattr(obj, f.name)) for f in fields(obj)]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    for f, arr in zip(fields(obj), arrays, strict=True):
        object.__setattr__(obj, f.name, np.broadcast_to(arr, shape))


def _sample_var(n: FloatArray, total: FloatArray, squares: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (squares - total * total / n) / (n - 1.0)
    return np.where(n > 1, np.maximum(var, 0.0), np.nan)


def _sample_cov(n: FloatArray, sx: FloatArray, sy: FloatArray, sxy: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = (sxy - sx * sy / n) / (n - 1.0)
    return np.where(n > 1, cov, np.nan)


@dataclass(frozen=True)  # positional construction is used outside this package
class Moments:
    """What every test needs per arm: units ``n``, ``mean`` and per-unit ``variance``.

    ``normal`` selects the reference distribution: False -> Welch t with Satterthwaite degrees
    of freedom, True -> standard normal (proportions, delta-method ratios).
    """

    n: FloatArray
    mean: FloatArray
    variance: FloatArray
    normal: bool = False

    def __post_init__(self) -> None:
        for name in ("n", "mean", "variance"):
            object.__setattr__(self, name, as_float_array(getattr(self, name)))

    @property
    def se2(self) -> FloatArray:
        """Variance of the arm's mean estimate, ``variance / n``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.n > 0, self.variance / self.n, np.nan)


@dataclass(frozen=True)
class MeanStats:
    """Count, sum and sum of squares of a per-unit metric (quality, cost per request)."""

    n: FloatArray
    sum: FloatArray
    sum_squares: FloatArray

    def __post_init__(self) -> None:
        _freeze_arrays(self)

    @property
    def mean(self) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.n > 0, self.sum / self.n, np.nan)

    @property
    def variance(self) -> FloatArray:
        return _sample_var(self.n, self.sum, self.sum_squares)

    def moments(self) -> Moments:
        return Moments(n=self.n, mean=self.mean, variance=self.variance, normal=False)


@dataclass(frozen=True)
class ProportionStats:
    """Units and successes of a binary metric (success rate, positive feedback)."""

    n: FloatArray
    successes: FloatArray

    def __post_init__(self) -> None:
        _freeze_arrays(self)
        bad = (self.successes < 0) | (self.successes > self.n)
        if np.any(bad):
            idx = int(np.flatnonzero(bad.ravel())[0])
            raise ValueError(f"successes must lie in [0, n] (entry {idx})")

    @property
    def mean(self) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.n > 0, self.successes / self.n, np.nan)

    @property
    def variance(self) -> FloatArray:
        p = self.mean
        return p * (1.0 - p)

    def moments(self) -> Moments:
        return Moments(n=self.n, mean=self.mean, variance=self.variance, normal=True)


@dataclass(frozen=True)
class RatioStats:
    """Numerator / denominator sums per unit: ``sum(num) / sum(den)`` with delta-method variance."""

    n: FloatArray
    num_sum: FloatArray
    num_sum_squares: FloatArray
    den_sum: FloatArray
    den_sum_squares: FloatArray
    sum_products: FloatArray

    def __post_init__(self) -> None:
        _freeze_arrays(self)

    @property
    def mean(self) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.den_sum != 0, self.num_sum / self.den_sum, np.nan)

    @property
    def variance(self) -> FloatArray:
        """Per-unit variance of the linearization ``(num - R den) / mean(den)``."""
        n = self.n
        var_num = _sample_var(n, self.num_sum, self.num_sum_squares)
        var_den = _sample_var(n, self.den_sum, self.den_sum_squares)
        cov = _sample_cov(n, self.num_sum, self.den_sum, self.sum_products)
        ratio = self.mean
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_den = self.den_sum / n
            var = (var_num - 2.0 * ratio * cov + ratio * ratio * var_den) / (mean_den * mean_den)
        return np.maximum(var, 0.0)

    def moments(self) -> Moments:
        return Moments(n=self.n, mean=self.mean, variance=self.variance, normal=True)


@dataclass(frozen=True)
class CupedStats:
    """A mean metric plus its pre-period covariate: sums, squares and cross-products."""

    n: FloatArray
    sum: FloatArray
    sum_squares: FloatArray
    pre_sum: FloatArray
    pre_sum_squares: FloatArray
    sum_products: FloatArray

    def __post_init__(self) -> None:
        _freeze_arrays(self)

    @property
    def mean(self) -> FloatArray:
        return MeanStats(self.n, self.sum, self.sum_squares).mean

    @property
    def pre_mean(self) -> FloatArray:
        return MeanStats(self.n, self.pre_sum, self.pre_sum_squares).mean

    def moments(self) -> Moments:
        """Unadjusted moments (what a test would use without CUPED)."""
        return MeanStats(self.n, self.sum, self.sum_squares).moments()


ArmStats = MeanStats | ProportionStats | RatioStats | CupedStats

__all__ = [
    "ArmStats",
    "CupedStats",
    "FloatArray",
    "MeanStats",
    "Moments",
    "ProportionStats",
    "RatioStats",
    "as_float_array",
]
