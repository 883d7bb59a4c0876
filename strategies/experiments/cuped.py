"""CUPED: remove the part of a metric that a pre-period covariate already explains.

Why: a unit's quality (or spend) before the experiment predicts it during the experiment; the
residual ``y - theta (x - mean x)`` has the same expected difference between arms but a smaller
variance, so the same traffic reaches a decision sooner (Deng et al. 2013).

``theta`` is the pooled within-arm slope of ``y`` on ``x`` over the two arms being compared,
which makes the adjusted difference identical to the treatment coefficient of the OLS fit
``y ~ 1 + treatment + x`` (the test suite checks this against numpy least squares).

Example:
    >>> from strategies.experiments.stats import CupedStats
    >>> c = CupedStats(n=[3], sum=[6.0], sum_squares=[14.0], pre_sum=[3.0], pre_sum_squares=[5.0],
    ...                sum_products=[8.0])
    >>> t = CupedStats(n=[3], sum=[9.0], sum_squares=[29.0], pre_sum=[3.0], pre_sum_squares=[5.0],
    ...                sum_products=[11.0])
    >>> mc, mt, theta = cuped_adjust(c, t)
    >>> float(theta[0]), float(mt.mean[0] - mc.mean[0])
    (1.0, 1.0)
    >>> float(observed_control_base(c, t).mean[0])  # relative lifts divide by this
    2.0

The relative lift is the adjusted difference divided by the **observed** control mean (the
usual convention), not by the adjusted control mean; :func:`observed_control_base` gives that
denominator with the covariance the delta method needs.
"""

from __future__ import annotations

import numpy as np

from strategies.experiments.effects import RelativeBase
from strategies.experiments.stats import CupedStats, FloatArray, Moments


def _centered(stats: CupedStats) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Within-arm centered sums: Sxx, Sxy, Syy."""
    n = stats.n
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx = stats.pre_sum_squares - stats.pre_sum**2 / n
        sxy = stats.sum_products - stats.pre_sum * stats.sum / n
        syy = stats.sum_squares - stats.sum**2 / n
    return sxx, sxy, syy


def _theta(control: CupedStats, treatment: CupedStats) -> FloatArray:
    sxx_c, sxy_c, _ = _centered(control)
    sxx_t, sxy_t, _ = _centered(treatment)
    sxx = sxx_c + sxx_t
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(sxx > 0, (sxy_c + sxy_t) / sxx, 0.0)
    return np.asarray(np.nan_to_num(theta, nan=0.0))


def cuped_adjust(control: CupedStats, treatment: CupedStats) -> tuple[Moments, Moments, FloatArray]:
    """Adjusted moments of both arms and the pooled ``theta`` used (0 where x has no spread).

    Args:
        control: control-arm statistics with the pre-period covariate.
        treatment: treatment-arm statistics (broadcast against control).
    """
    sxx_c, sxy_c, syy_c = _centered(control)
    sxx_t, sxy_t, syy_t = _centered(treatment)
    theta = _theta(control, treatment)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_bar = (control.pre_sum + treatment.pre_sum) / (control.n + treatment.n)

    def adjusted(
        stats: CupedStats, sxx_k: FloatArray, sxy_k: FloatArray, syy_k: FloatArray
    ) -> Moments:
        n = stats.n
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = stats.sum / n - theta * (stats.pre_sum / n - x_bar)
            resid_ss = syy_k - 2.0 * theta * sxy_k + theta * theta * sxx_k
            var = np.where(n > 1, np.maximum(resid_ss, 0.0) / (n - 1.0), np.nan)
        return Moments(n=n, mean=mean, variance=var, normal=False)

    return (
        adjusted(control, sxx_c, sxy_c, syy_c),
        adjusted(treatment, sxx_t, sxy_t, syy_t),
        theta,
    )


def observed_control_base(control: CupedStats, treatment: CupedStats) -> RelativeBase:
    """The observed control mean as the denominator of a CUPED relative lift.

    Its covariance with the adjusted control mean ``A = y_c - theta (x_c - x_pooled)`` is
    ``(s_yy - theta s_xy (1 - n_c / N)) / n_c`` (control-arm sample (co)variances, ``N`` both
    arms' units), treating ``theta`` as fixed, as the adjusted variance does.

    Args:
        control: control-arm statistics with the pre-period covariate.
        treatment: treatment-arm statistics (for ``theta`` and the pooled mean).
    """
    _, sxy_c, syy_c = _centered(control)
    theta = _theta(control, treatment)
    n = control.n
    with np.errstate(divide="ignore", invalid="ignore"):
        s_yy, s_xy = syy_c / (n - 1.0), sxy_c / (n - 1.0)
        share = n / (n + treatment.n)
        cov = (s_yy - theta * s_xy * (1.0 - share)) / n
        return RelativeBase(mean=control.sum / n, se2=s_yy / n, cov=cov)


def variance_reduction(control: CupedStats, treatment: CupedStats) -> FloatArray:
    """Share of the difference's variance that CUPED removes (0 = none, 0.3 = 30% less).

    Args:
        control: control-arm statistics with the pre-period covariate.
        treatment: treatment-arm statistics.
    """
    raw_c, raw_t = control.moments(), treatment.moments()
    adj_c, adj_t, _ = cuped_adjust(control, treatment)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (adj_c.se2 + adj_t.se2) / (raw_c.se2 + raw_t.se2)


__all__ = ["cuped_adjust", "observed_control_base", "variance_reduction"]
