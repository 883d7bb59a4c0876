"""Always-valid inference for nightly looks: the normal-mixture SPRT / confidence sequence.

Why: a fixed-horizon p-value is valid at one planned look. Looking every night and stopping at
the first p < alpha makes false winners far more common than alpha (about 4x over four weeks;
the A/A test suite measures it). The mixture sequential probability ratio test (Robbins 1970;
Johari et al. 2017, "Peeking at A/B tests"; Howard et al. 2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences") gives p-values and intervals that stay valid at every look,
so the nightly flow may stop as soon as they say so.

For the difference of means ``delta`` with estimate ``d`` and plug-in variance ``V`` (Welch's
``s_c^2/n_c + s_t^2/n_t``), mixing ``theta ~ N(theta_0, tau^2)`` gives the likelihood ratio

    Lambda(theta_0) = sqrt(V / (V + tau^2)) * exp(tau^2 (d - theta_0)^2 / (2 V (V + tau^2)))

The always-valid p-value is ``min(1, 1 / Lambda(0))`` (take the running minimum across looks,
:func:`cumulate`), and the (1 - alpha) confidence sequence is

    d +/- sqrt(V (V + tau^2) / tau^2 * (log((V + tau^2) / V) + 2 log(1 / alpha)))

One tuning parameter: ``n_star``, the per-arm sample size at which the sequence is tightest
relative to the fixed-horizon interval. It sets ``tau^2 = r*(alpha) (s_c^2 + s_t^2) / n_star``,
where ``r*`` solves ``r = log(1 + r) + 2 log(1 / alpha)`` (the minimiser of the width ratio).
Default 10,000 units per arm (about a month of a mid-traffic feature at 50/50). Too small a
``n_star`` wastes power late, too large wastes it early; validity holds for any value.
One-sided alternatives use the two-sided sequence at level 2 alpha and report its one side.

Example:
    >>> from strategies.experiments.stats import MeanStats
    >>> c = MeanStats(n=[5000], sum=[2500.0], sum_squares=[1500.0]).moments()
    >>> t = MeanStats(n=[5000], sum=[2600.0], sum_squares=[1580.0]).moments()
    >>> r = SequentialTest(alpha=0.05).compute(c, t)
    >>> bool(r.ci_low[0] > 0), bool(r.p_value[0] < 0.05)
    (True, True)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import ArrayLike

from strategies.experiments.effects import (
    EffectResult,
    EffectTest,
    RelativeBase,
    check_alpha,
    check_alternative,
    prepare,
)
from strategies.experiments.stats import FloatArray, Moments

DEFAULT_N_STAR = 10_000


def optimal_mixing_ratio(alpha: float) -> float:
    """``r*`` solving ``r = log(1 + r) + 2 log(1 / alpha)`` (fixed point, contraction).

    Args:
        alpha: level of the two-sided sequence.
    """
    target = 2.0 * np.log(1.0 / alpha)
    r = target + 1.0
    for _ in range(200):
        r_next = float(np.log1p(r) + target)
        if abs(r_next - r) < 1e-13:
            break
        r = r_next
    return r


def cs_radius(var: FloatArray, tau2: FloatArray, alpha: float) -> FloatArray:
    """Half-width of the (1 - alpha) normal-mixture confidence sequence.

    Args:
        var: variance of the effect estimate.
        tau2: mixing variance.
        alpha: level of the sequence.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(var * (var + tau2) / tau2 * (np.log1p(tau2 / var) + 2.0 * np.log(1 / alpha)))


def log_mixture_lr(effect: FloatArray, var: FloatArray, tau2: FloatArray) -> FloatArray:
    """log Lambda(0) of the normal-mixture SPRT.

    Args:
        effect: the effect estimate minus the null value.
        var: its variance.
        tau2: mixing variance.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * np.log(var / (var + tau2)) + tau2 * effect**2 / (2.0 * var * (var + tau2))


def mixture_p_value(z: FloatArray, var: FloatArray, tau2: FloatArray) -> FloatArray:
    """``min(1, 1 / Lambda)`` for a standardized estimate ``z`` (two-sided).

    With ``z = d / sqrt(V)`` this is the always-valid p-value of the effect; with the relative
    effect's ``z`` it is the level at which the relative sequence (``relative +/- radius / sqrt(V)
    * relative se``) just touches 0, so both scales agree with their own intervals.

    Args:
        z: standardized estimate.
        var: variance of the absolute effect estimate.
        tau2: mixing variance.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lr = 0.5 * np.log(var / (var + tau2)) + tau2 * z**2 / (2.0 * (var + tau2))
        return np.asarray(np.minimum(1.0, np.exp(-log_lr)))


class SequentialTest(EffectTest):
    """Mixture-SPRT p-values and confidence sequences, valid under continuous monitoring."""

    name = "sequential"

    def __init__(
        self, *, alpha: float = 0.05, n_star: float = DEFAULT_N_STAR, alternative: str = "two-sided"
    ) -> None:
        """Args:
        alpha: level of the confidence sequence, in (0, 1).
        n_star: units per arm where the sequence is tightest (finite, > 0).
        alternative: ``two-sided``, ``greater`` or ``less``.
        """
        self.alpha = check_alpha(alpha)
        self.alternative = check_alternative(alternative)
        if not (np.isfinite(n_star) and n_star > 0):
            raise ValueError(f"n_star must be a finite positive number, got {n_star}")
        self.n_star = float(n_star)

    @property
    def level_alpha(self) -> float:
        """Alpha of the two-sided sequence used (2 alpha for one-sided alternatives)."""
        return self.alpha if self.alternative == "two-sided" else min(2.0 * self.alpha, 0.999)

    def tau2(self, control: Moments, treatment: Moments) -> FloatArray:
        """Mixing variance from the plug-in per-unit variances and ``n_star``.

        Args:
            control: control-arm moments.
            treatment: treatment-arm moments.
        """
        r_star = optimal_mixing_ratio(self.level_alpha)
        with np.errstate(invalid="ignore"):
            return r_star * (control.variance + treatment.variance) / self.n_star

    def _sided(self, p_two: FloatArray, estimate: FloatArray) -> FloatArray:
        if self.alternative == "two-sided":
            return p_two
        if self.alternative == "greater":
            return np.where(estimate > 0, p_two / 2.0, 1.0)
        return np.where(estimate < 0, p_two / 2.0, 1.0)

    def compute(
        self, control: Moments, treatment: Moments, *, reference: RelativeBase | None = None
    ) -> EffectResult:
        prep = prepare(control, treatment, reference=reference)
        a = self.level_alpha
        tau2 = self.tau2(prep.control, prep.treatment)
        radius = cs_radius(prep.var, tau2, a)
        with np.errstate(divide="ignore", invalid="ignore"):
            multiplier = radius / np.sqrt(prep.var)
            stat = prep.effect / np.sqrt(prep.var)
            rel_stat = prep.relative / np.sqrt(prep.relative_var)
        p_two = mixture_p_value(stat, prep.var, tau2)
        rel_two = mixture_p_value(rel_stat, prep.var, tau2)
        return self._result(
            prep,
            ci_low=prep.effect - radius,
            ci_high=prep.effect + radius,
            multiplier=multiplier,
            statistic=stat,
            p_value=self._sided(p_two, prep.effect),
            relative_p_value=self._sided(rel_two, prep.relative),
        )

    def required_n(
        self,
        var_control: ArrayLike,
        var_treatment: ArrayLike,
        effect: ArrayLike,
        *,
        power: float = 0.8,
        ratio: float = 1.0,
    ) -> FloatArray:
        """Control-arm units at which the sequence excludes 0 for ``effect`` with ``power``.

        Solved by vectorized bisection on ``|effect| >= radius(n) + z_power * se(n)``
        (treatment arm gets ``ratio * n``). Infinite where ``effect`` is 0 or not finite.

        Args:
            var_control: per-unit variance in control.
            var_treatment: per-unit variance in treatment.
            effect: absolute effect to detect.
            power: wanted probability of detection.
            ratio: treatment-to-control size ratio.
        """
        from scipy import stats as sps

        vc, vt, eff = np.broadcast_arrays(
            np.atleast_1d(np.asarray(var_control, float)),
            np.atleast_1d(np.asarray(var_treatment, float)),
            np.atleast_1d(np.abs(np.asarray(effect, float))),
        )
        z_pow = float(sps.norm.ppf(power))
        tau2 = optimal_mixing_ratio(self.level_alpha) * (vc + vt) / self.n_star

        def gap(n: FloatArray) -> FloatArray:
            var = vc / n + vt / (ratio * n)
            return eff - cs_radius(var, tau2, self.level_alpha) - z_pow * np.sqrt(var)

        lo = np.full(eff.shape, 2.0)
        hi = np.full(eff.shape, 1e12)
        valid = (eff > 0) & np.isfinite(eff) & (vc + vt > 0) & (gap(hi) > 0)
        for _ in range(80):
            mid = np.sqrt(lo * hi)
            good = gap(mid) >= 0
            hi = np.where(good, mid, hi)
            lo = np.where(good, lo, mid)
        return np.where(valid, np.ceil(hi), np.inf)


def cumulate(result: EffectResult, axis: int = -1) -> EffectResult:
    """Make a look history always-valid: running-min p-value and intersected intervals.

    ``result`` holds one entry per look along ``axis`` (cumulative data up to each look, in
    time order). Looks that were not analysable are skipped. Point estimates stay those of each
    look; the last entry along ``axis`` is what the nightly flow reports.

    Args:
        result: per-look results of :class:`SequentialTest`.
        axis: the looks axis.
    """

    def run(values: FloatArray, fn: np.ufunc, fill: float) -> FloatArray:
        filled = np.where(np.isnan(values), fill, values)
        out = fn.accumulate(filled, axis=axis)
        return np.where(result.ok, out, np.nan)

    lo = run(result.ci_low, np.maximum, -np.inf)
    hi = run(result.ci_high, np.minimum, np.inf)
    empty = lo > hi  # possible with probability <= alpha; fall back to the current look
    rlo = run(result.relative_ci_low, np.maximum, -np.inf)
    rhi = run(result.relative_ci_high, np.minimum, np.inf)
    rempty = rlo > rhi
    return replace(
        result,
        p_value=run(result.p_value, np.minimum, 1.0),
        relative_p_value=np.where(
            result.relative_ok, run(result.relative_p_value, np.minimum, 1.0), np.nan
        ),
        ci_low=np.where(empty, result.ci_low, lo),
        ci_high=np.where(empty, result.ci_high, hi),
        relative_ci_low=np.where(rempty | ~result.relative_ok, result.relative_ci_low, rlo),
        relative_ci_high=np.where(rempty | ~result.relative_ok, result.relative_ci_high, rhi),
    )


__all__ = [
    "DEFAULT_N_STAR",
    "SequentialTest",
    "cs_radius",
    "cumulate",
    "log_mixture_lr",
    "mixture_p_value",
    "optimal_mixing_ratio",
]
