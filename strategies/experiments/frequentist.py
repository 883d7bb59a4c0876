"""Fixed-horizon Welch test: the right answer when you look exactly once, at a planned size.

Unequal variances are the norm between LLM configurations (a cheaper model is often noisier), so
the pooled-variance t-test is never used. For means the statistic and p-value equal
``scipy.stats.ttest_ind_from_stats(..., equal_var=False)``; proportions and delta-method ratios
use the normal reference (``df = inf``). Looking every night with this test inflates false
positives (the A/A test suite shows it); nightly looks use :mod:`.sequential`.

Example:
    >>> from strategies.experiments.stats import MeanStats
    >>> c = MeanStats(n=[100], sum=[50.0], sum_squares=[30.0]).moments()
    >>> t = MeanStats(n=[100], sum=[55.0], sum_squares=[34.0]).moments()
    >>> r = WelchTest(alpha=0.05).compute(c, t)
    >>> round(float(r.effect[0]), 3), bool(r.p_value[0] < 0.05)
    (0.05, False)
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from strategies.experiments.effects import (
    EffectResult,
    EffectTest,
    RelativeBase,
    check_alpha,
    check_alternative,
    prepare,
)
from strategies.experiments.stats import FloatArray, Moments


class WelchTest(EffectTest):
    """Welch t (normal for proportion / ratio moments), two- or one-sided, with CIs."""

    name = "fixed"

    def __init__(self, *, alpha: float = 0.05, alternative: str = "two-sided") -> None:
        """Args:
        alpha: significance level of the intervals, in (0, 1).
        alternative: ``two-sided``, ``greater`` (treatment above control) or ``less``.
        """
        self.alpha = check_alpha(alpha)
        self.alternative = check_alternative(alternative)

    def _p(self, stat: FloatArray, df: FloatArray) -> FloatArray:
        if self.alternative == "two-sided":
            return np.asarray(2.0 * sps.t.sf(np.abs(stat), df))
        if self.alternative == "greater":
            return np.asarray(sps.t.sf(stat, df))
        return np.asarray(sps.t.cdf(stat, df))

    def compute(
        self, control: Moments, treatment: Moments, *, reference: RelativeBase | None = None
    ) -> EffectResult:
        prep = prepare(control, treatment, reference=reference)
        se = np.sqrt(prep.var)
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = prep.effect / se
            rel_stat = prep.relative / np.sqrt(prep.relative_var)
        df = np.where(prep.ok, prep.df, 1.0)  # placeholder df where not analysable
        two_sided = self.alternative == "two-sided"
        q = sps.t.ppf(1.0 - (self.alpha / 2.0 if two_sided else self.alpha), df)
        return self._result(
            prep,
            ci_low=prep.effect - q * se,
            ci_high=prep.effect + q * se,
            multiplier=q,
            statistic=stat,
            p_value=np.minimum(self._p(stat, df), 1.0),
            relative_p_value=self._p(np.nan_to_num(rel_stat), df),
        )


__all__ = ["WelchTest"]
