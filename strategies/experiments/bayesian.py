"""Bayesian alternative: chance to beat control and expected loss (risk), normal approximation.

Why: product owners ask "how likely is the new prompt better, and what do we lose if we are
wrong?". With the effect estimate ``d ~ N(delta, V)`` and a normal prior
``delta ~ N(prior_mean, prior_sd^2)`` (flat by default), the posterior is normal in closed form:

    post_var = 1 / (1 / V + 1 / prior_sd^2),  post_mean = post_var (d / V + prior_mean / prior_sd^2)

``chance_to_win = Phi(post_mean / post_sd)``; ``expected_loss`` (risk of shipping treatment) is
``E[max(0, -delta)] = post_sd phi(z) - post_mean Phi(-z)``. With ``scale="relative"`` the prior
and the posterior are on the relative effect (as GrowthBook does), so one prior suits metrics of
any unit. The optional Monte Carlo (``draws > 0``) samples each arm's mean independently and
reports the chance that the treatment-to-control ratio exceeds 1 without the delta-method
approximation; the generator is seeded by the instance (``seed``), so results are reproducible.

Example:
    >>> from strategies.experiments.stats import ProportionStats
    >>> c = ProportionStats(n=[1000], successes=[100]).moments()
    >>> t = ProportionStats(n=[1000], successes=[130]).moments()
    >>> r = BayesianTest().compute(c, t)
    >>> round(float(r.chance_to_win[0]), 3)
    0.982
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from strategies.experiments.effects import (
    EffectResult,
    EffectTest,
    RelativeBase,
    check_alpha,
    normal_win_and_loss,
    prepare,
)
from strategies.experiments.stats import FloatArray, Moments


class BayesianTest(EffectTest):
    """Normal-normal posterior on the effect; credible intervals; chance to win and risk."""

    name = "bayesian"

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        prior_mean: float = 0.0,
        prior_sd: float = float("inf"),
        scale: str = "absolute",
        draws: int = 0,
        seed: int | None = 0,
    ) -> None:
        """Args:
        alpha: one minus the credible level of the intervals, in (0, 1).
        prior_mean: prior mean of the effect (finite), on ``scale``.
        prior_sd: prior standard deviation (> 0; ``inf`` for a flat prior), on ``scale``.
        scale: ``absolute`` (metric units) or ``relative`` (share of control, like GrowthBook).
        draws: Monte Carlo draws for the ratio chance to win (0: closed form only).
        seed: seed of the instance's generator (reproducible draws).
        """
        self.alpha = check_alpha(alpha)
        self.alternative = "two-sided"
        if not (prior_sd > 0 and not np.isnan(prior_sd)):
            raise ValueError("prior_sd must be positive (inf for a flat prior)")
        if not np.isfinite(prior_mean):
            raise ValueError("prior_mean must be a finite number")
        if scale not in ("absolute", "relative"):
            raise ValueError("scale must be 'absolute' or 'relative'")
        self.prior_mean = float(prior_mean)
        self.prior_sd = float(prior_sd)
        self.scale = scale
        self.draws = int(draws)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _posterior(self, estimate: FloatArray, var: FloatArray) -> tuple[FloatArray, FloatArray]:
        if np.isinf(self.prior_sd):
            return estimate, var
        prior_prec = 1.0 / self.prior_sd**2
        with np.errstate(divide="ignore", invalid="ignore"):
            post_var = 1.0 / (1.0 / var + prior_prec)
            post_mean = post_var * (estimate / var + self.prior_mean * prior_prec)
        return post_mean, post_var

    def compute(
        self, control: Moments, treatment: Moments, *, reference: RelativeBase | None = None
    ) -> EffectResult:
        prep = prepare(control, treatment, reference=reference)
        q = float(sps.norm.ppf(1.0 - self.alpha / 2.0))
        if self.scale == "absolute":
            post_mean, post_var = self._posterior(prep.effect, prep.var)
            post_sd = np.sqrt(post_var)
            shrink = np.where(prep.ok, post_sd / np.sqrt(prep.var), np.nan)
            result = self._result(
                prep,
                ci_low=post_mean - q * post_sd,
                ci_high=post_mean + q * post_sd,
                multiplier=q * shrink,
                statistic=post_mean / post_sd,
                p_value=np.full(prep.effect.shape, np.nan),
                win_mean=post_mean,
                win_sd=post_sd,
            )
        else:
            rel_mean, rel_var = self._posterior(prep.relative, prep.relative_var)
            rel_sd = np.sqrt(rel_var)
            mc = prep.relative_base
            # Absolute interval follows the relative posterior scaled by the control mean.
            lo, hi = (rel_mean - q * rel_sd) * mc, (rel_mean + q * rel_sd) * mc
            result = self._result(
                prep,
                ci_low=np.minimum(lo, hi),
                ci_high=np.maximum(lo, hi),
                multiplier=np.full(prep.effect.shape, q),
                statistic=rel_mean / rel_sd,
                p_value=np.full(prep.effect.shape, np.nan),
                win_mean=rel_mean * np.sign(mc),
                win_sd=rel_sd,
            )
            win, loss = normal_win_and_loss(rel_mean * np.sign(mc), rel_sd)
            _, loss_lower = normal_win_and_loss(-rel_mean * np.sign(mc), rel_sd)
            result = _with(
                result,
                chance_to_win=win,
                expected_loss=loss * np.abs(mc),
                expected_loss_lower=loss_lower * np.abs(mc),
            )
        if self.draws > 0:
            result = _with(result, chance_to_win=self._mc_chance(prep.control, prep.treatment))
        keep = prep.ok if self.scale == "absolute" else prep.relative_ok
        return _with(
            result,
            chance_to_win=np.where(keep, result.chance_to_win, np.nan),
            expected_loss=np.where(keep, result.expected_loss, np.nan),
            expected_loss_lower=np.where(keep, result.expected_loss_lower, np.nan),
        )

    def _mc_chance(self, control: Moments, treatment: Moments) -> FloatArray:
        """P(mean_t / mean_c > 1) by sampling both arm means (vectorized, seeded)."""
        shape = control.mean.shape
        z = self._rng.standard_normal((2, self.draws, *shape))
        with np.errstate(invalid="ignore"):
            mc = control.mean + np.sqrt(control.se2) * z[0]
            mt = treatment.mean + np.sqrt(treatment.se2) * z[1]
            wins = np.where(control.mean >= 0, mt > mc, mt < mc)
        return np.asarray(wins.mean(axis=0), dtype=np.float64)


def _with(result: EffectResult, **changes: Any) -> EffectResult:
    from dataclasses import replace

    return replace(result, **changes)


__all__ = ["BayesianTest"]
