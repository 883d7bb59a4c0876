"""Power, minimum detectable effect and sample size: how much longer must this run?

Normal approximation for a two-sample comparison of means with per-unit variances
``var_control`` and ``var_treatment`` and allocation ``ratio = n_treatment / n_control``.
The two-sided power includes both tails, so :func:`detection_power` equals
``statsmodels.stats.power.NormalIndPower().power`` (with ``effect_size = effect / sd`` when the
variances are equal); :func:`required_n` solves that equation exactly. For the sequential method,
use
``SequentialTest.required_n``.

Example:
    >>> float(np.ceil(required_n(0.04, 0.04, 0.02, alpha=0.05, power=0.8)[0]))
    1570.0
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from strategies.experiments.stats import FloatArray


def _z_alpha(alpha: float, alternative: str) -> float:
    return float(sps.norm.ppf(1 - alpha / 2 if alternative == "two-sided" else 1 - alpha))


def _shift(alpha: float, power: float, alternative: str) -> float:
    """Standardized effect detected with ``power`` (exact two-tail equation by Newton)."""
    z_a = _z_alpha(alpha, alternative)
    shift = z_a + float(sps.norm.ppf(power))
    if alternative == "two-sided":
        for _ in range(8):
            f = sps.norm.sf(z_a - shift) + sps.norm.cdf(-z_a - shift) - power
            shift -= float(f / (sps.norm.pdf(z_a - shift) - sps.norm.pdf(-z_a - shift)))
    return shift


def _standard_error(
    var_control: ArrayLike, var_treatment: ArrayLike, n_control: ArrayLike, ratio: float
) -> FloatArray:
    """Standard error of the difference in means: ``n_control`` and ``ratio`` times as many."""
    n = np.asarray(n_control, dtype=np.float64)
    return np.asarray(
        np.sqrt(
            np.asarray(var_control, dtype=np.float64) / n
            + np.asarray(var_treatment, dtype=np.float64) / (ratio * n)
        ),
        dtype=np.float64,
    )


def detection_power(
    effect: ArrayLike,
    var_control: ArrayLike,
    var_treatment: ArrayLike,
    n_control: ArrayLike,
    *,
    ratio: float = 1.0,
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> FloatArray:
    """Probability of detecting ``effect`` with ``n_control`` control units.

    Args:
        effect: true absolute effect(s).
        var_control: per-unit variance in control.
        var_treatment: per-unit variance in treatment.
        n_control: control-arm units (treatment gets ``ratio`` times as many).
        ratio: treatment-to-control size ratio.
        alpha: significance level.
        alternative: ``two-sided``, ``greater`` or ``less``.
    """
    eff = np.atleast_1d(np.asarray(effect, dtype=np.float64))
    se = _standard_error(var_control, var_treatment, n_control, ratio)
    z = _z_alpha(alpha, alternative)
    shift = eff / se
    if alternative == "two-sided":
        return np.asarray(sps.norm.sf(z - shift) + sps.norm.cdf(-z - shift), dtype=np.float64)
    if alternative == "less":
        shift = -shift
    return np.asarray(sps.norm.sf(z - shift), dtype=np.float64)


def required_n(
    var_control: ArrayLike,
    var_treatment: ArrayLike,
    effect: ArrayLike,
    *,
    ratio: float = 1.0,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
) -> FloatArray:
    """Control-arm units needed (treatment gets ``ratio`` times as many); inf for effect 0.

    Two-sided: Newton steps on the standardized shift solve the exact two-tail power equation
    (as statsmodels' ``solve_power`` does), starting from the one-tail closed form.

    Args:
        var_control: per-unit variance in control.
        var_treatment: per-unit variance in treatment.
        effect: absolute effect to detect.
        ratio: treatment-to-control size ratio.
        alpha: significance level.
        power: wanted probability of detection.
        alternative: ``two-sided``, ``greater`` or ``less``.
    """
    shift = _shift(alpha, power, alternative)
    eff = np.abs(np.atleast_1d(np.asarray(effect, dtype=np.float64)))
    var = (
        np.asarray(var_control, dtype=np.float64)
        + np.asarray(var_treatment, dtype=np.float64) / ratio
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        n = shift * shift * var / (eff * eff)
    return np.where(eff > 0, n, np.inf)


def minimum_detectable_effect(
    var_control: ArrayLike,
    var_treatment: ArrayLike,
    n_control: ArrayLike,
    *,
    ratio: float = 1.0,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
) -> FloatArray:
    """Smallest absolute effect detected with ``power`` at the given sizes.

    Args:
        var_control: per-unit variance in control.
        var_treatment: per-unit variance in treatment.
        n_control: control-arm units.
        ratio: treatment-to-control size ratio.
        alpha: significance level.
        power: wanted probability of detection.
        alternative: ``two-sided``, ``greater`` or ``less``.
    """
    z = _shift(alpha, power, alternative)
    return np.atleast_1d(z * _standard_error(var_control, var_treatment, n_control, ratio))


def days_needed(
    units_needed: ArrayLike, units_now: ArrayLike, units_per_day: ArrayLike
) -> FloatArray:
    """Whole days until ``units_needed`` at the current daily rate (0 if reached, inf if never).

    Args:
        units_needed: units wanted.
        units_now: units so far.
        units_per_day: current daily rate.
    """
    need = np.asarray(units_needed, dtype=np.float64)
    now = np.asarray(units_now, dtype=np.float64)
    rate = np.asarray(units_per_day, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        days = np.ceil(np.maximum(need - now, 0.0) / rate)
    days = np.where(need <= now, 0.0, days)
    return np.atleast_1d(np.where(np.isfinite(days), days, math.inf))


__all__ = ["days_needed", "detection_power", "minimum_detectable_effect", "required_n"]
