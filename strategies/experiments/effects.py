"""The common shape of every effect test: control and treatment moments in, one result out.

Optuna-style: a small abstract base (:class:`EffectTest`) with keyword-only constructors in the
subclasses (Welch fixed-horizon, sequential mixture-SPRT, Bayesian). gbstats-style: one
``compute`` entry point that never raises in the middle of a batch; degenerate comparisons
(an arm with n <= 1, zero variance in both arms, non-finite inputs) come back with
``ok == False`` and a ``message`` saying why, and their numbers are NaN, never a decision.
A zero control mean leaves the absolute effect valid but marks the relative effect unavailable
(``relative_ok == False``).

All arrays broadcast: one entry per comparison (and, for the sequential cumulation, per look).

Relative effects divide by the observed control mean. For CUPED the effect is the adjusted
difference while the denominator stays the observed (unadjusted) control mean (the usual
convention, e.g. Deng et al. 2013; Eppo, Statsig): pass it as a :class:`RelativeBase`, whose
covariance with the adjusted control mean enters the delta-method variance.
Every test also gives a p-value on the relative scale (``relative_p_value``), from the same
reference distribution as its relative interval, so a relative p below alpha is exactly a
relative interval that excludes 0.

Example:
    >>> from strategies.experiments.stats import MeanStats
    >>> c = MeanStats(n=[100], sum=[50.0], sum_squares=[30.0]).moments()
    >>> t = MeanStats(n=[100], sum=[60.0], sum_squares=[40.0]).moments()
    >>> p = prepare(c, t)
    >>> round(float(p.effect[0]), 3), round(float(p.relative[0]), 3)
    (0.1, 0.2)
    >>> base = RelativeBase(mean=[0.4], se2=[0.0004], cov=[0.0004])
    >>> round(float(prepare(c, t, reference=base).relative[0]), 3)
    0.25
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from strategies._checks import require_open_interval
from strategies.experiments.stats import FloatArray, Moments

Alternative = Literal["two-sided", "greater", "less"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")

MSG_SMALL = "cannot analyse: an arm has fewer than 2 units"
MSG_ZERO_VAR = "cannot analyse: zero variance in both arms"
MSG_NONFINITE = "cannot analyse: non-finite statistics"
MSG_ZERO_CONTROL = "relative effect undefined: control mean is zero"


@dataclass(frozen=True)
class EffectResult:
    """Vectorized comparison results; entry i compares treatment i with control i.

    ``effect`` is treatment minus control; ``relative`` is ``effect / control mean`` with its
    delta-method standard error. ``ci_*`` are (1 - alpha) intervals of the method (confidence,
    always-valid confidence sequence, or credible). ``chance_to_win`` is P(treatment > control)
    and ``expected_loss`` E[max(0, control - treatment)] (the risk of shipping when higher is
    better); ``expected_loss_lower`` is E[max(0, treatment - control)] (when lower is better).
    Both use the normal approximation (posterior for the Bayesian method).
    """

    method: str
    alpha: float
    alternative: str
    n_control: FloatArray
    n_treatment: FloatArray
    mean_control: FloatArray
    mean_treatment: FloatArray
    effect: FloatArray
    se: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    relative: FloatArray
    relative_se: FloatArray
    relative_ci_low: FloatArray
    relative_ci_high: FloatArray
    statistic: FloatArray
    df: FloatArray
    p_value: FloatArray
    relative_p_value: FloatArray
    chance_to_win: FloatArray
    expected_loss: FloatArray
    expected_loss_lower: FloatArray
    ok: np.ndarray
    relative_ok: np.ndarray
    message: np.ndarray

    def __len__(self) -> int:
        return int(self.effect.size)

    def record(self, i: int) -> dict[str, Any]:
        """Entry ``i`` as plain Python values (NaN where not analysable).

        Args:
            i: the comparison's index (flat).
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                item = value.ravel()[i]
                out[f.name] = item.item() if hasattr(item, "item") else item
            else:
                out[f.name] = value
        return out

    def records(self) -> list[dict[str, Any]]:
        return [self.record(i) for i in range(len(self))]


@dataclass(frozen=True, kw_only=True)
class RelativeBase:
    """The denominator of a relative effect when it is not the control moments' own mean.

    Args:
        mean: the observed control mean (the denominator).
        se2: its squared standard error.
        cov: covariance of the control arm's (adjusted) mean with ``mean``; the treatment arm
            is independent of it.
    """

    mean: FloatArray
    se2: FloatArray
    cov: FloatArray

    def __init__(self, *, mean: ArrayLike, se2: ArrayLike, cov: ArrayLike) -> None:
        for name, value in (("mean", mean), ("se2", se2), ("cov", cov)):
            object.__setattr__(self, name, np.asarray(value, dtype=np.float64))


@dataclass(frozen=True)
class Prepared:
    """Quantities every method shares, computed once."""

    control: Moments
    treatment: Moments
    effect: FloatArray
    var: FloatArray  # variance of the effect estimate
    df: FloatArray
    relative: FloatArray
    relative_var: FloatArray
    relative_base: FloatArray  # the denominator of ``relative``
    ok: np.ndarray
    relative_ok: np.ndarray
    message: np.ndarray


def prepare(
    control: Moments, treatment: Moments, *, reference: RelativeBase | None = None
) -> Prepared:
    """Effect, its variance, Welch-Satterthwaite df and the delta-method relative effect.

    Args:
        control: control-arm moments.
        treatment: treatment-arm moments (broadcast against control).
        reference: the relative effect's denominator when it is not ``control.mean`` (CUPED:
            the observed control mean); None divides by ``control.mean``.

    Returns:
        The shared quantities; not-analysable entries are NaN with a message.
    """
    shape = np.broadcast_shapes(control.n.shape, treatment.n.shape)
    nc, mc, vc = (np.broadcast_to(a, shape) for a in (control.n, control.mean, control.variance))
    nt, mt, vt = (
        np.broadcast_to(a, shape) for a in (treatment.n, treatment.mean, treatment.variance)
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        se2_c, se2_t = vc / nc, vt / nt
        var = se2_c + se2_t
        effect = mt - mc
        if control.normal and treatment.normal:
            df = np.full(shape, np.inf)
        else:
            df = var**2 / (se2_c**2 / (nc - 1.0) + se2_t**2 / (nt - 1.0))
        if reference is None:
            base = mc
            relative = effect / mc
            relative_var = se2_t / mc**2 + mt**2 * se2_c / mc**4
        else:  # D / Y with Cov(D, Y) = -Cov(adjusted control mean, Y)
            base = np.broadcast_to(reference.mean, shape)
            ref_se2 = np.broadcast_to(reference.se2, shape)
            ref_cov = np.broadcast_to(reference.cov, shape)
            relative = effect / base
            relative_var = (
                var / base**2 + effect**2 * ref_se2 / base**4 + 2.0 * effect * ref_cov / base**3
            )
    finite = np.isfinite(nc) & np.isfinite(nt) & np.isfinite(mc) & np.isfinite(mt)
    finite &= np.isfinite(vc) & np.isfinite(vt)
    small = (nc < 2) | (nt < 2)
    zero_var = ~small & finite & (var <= 0)
    ok = ~small & finite & ~zero_var
    message = np.full(shape, "", dtype=object)
    message[~finite] = MSG_NONFINITE
    message[small] = MSG_SMALL
    message[zero_var] = MSG_ZERO_VAR
    # A zero-width delta-method interval (e.g. no errors at all in one arm) is degenerate: it
    # would freeze a sequential intersection at that single point for the rest of the test.
    relative_ok = ok & (base != 0) & (relative_var > 0)
    message[ok & (base == 0)] = MSG_ZERO_CONTROL
    nan = np.nan
    return Prepared(
        control=Moments(n=nc, mean=mc, variance=vc, normal=control.normal),
        treatment=Moments(n=nt, mean=mt, variance=vt, normal=treatment.normal),
        effect=np.where(ok, effect, nan),
        var=np.where(ok, var, nan),
        df=np.where(ok, df, nan),
        relative=np.where(relative_ok, relative, nan),
        relative_var=np.where(relative_ok, relative_var, nan),
        relative_base=np.asarray(base, dtype=np.float64),
        ok=ok,
        relative_ok=relative_ok,
        message=message,
    )


def normal_win_and_loss(mean: FloatArray, sd: FloatArray) -> tuple[FloatArray, FloatArray]:
    """P(delta > 0) and E[max(0, -delta)] for delta ~ N(mean, sd^2) (closed form).

    Args:
        mean: mean of the normal effect distribution.
        sd: its standard deviation.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean / sd
        win = sps.norm.cdf(z)
        loss = sd * sps.norm.pdf(z) - mean * sps.norm.cdf(-z)
    return win, loss


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float in (0, 1), else ValueError.

    Args:
        alpha: the level to check.
    """
    return require_open_interval("alpha", float(alpha), 0.0, 1.0)


def check_alternative(alternative: str) -> str:
    """``alternative`` when it is one of :data:`ALTERNATIVES`, else ValueError.

    Args:
        alternative: the alternative to check.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    return alternative


class EffectTest(abc.ABC):
    """Base of every comparison method; subclasses own their parameters (keyword-only)."""

    name: str = "abstract"
    alpha: float
    alternative: str

    @abc.abstractmethod
    def compute(
        self, control: Moments, treatment: Moments, *, reference: RelativeBase | None = None
    ) -> EffectResult:
        """Compare treatment with control, entry by entry; never raises on degenerate data.

        Args:
            control: control-arm moments.
            treatment: treatment-arm moments.
            reference: the relative effect's denominator when it is not the control mean
                (see :class:`RelativeBase`).
        """

    def _result(
        self,
        prep: Prepared,
        *,
        ci_low: FloatArray,
        ci_high: FloatArray,
        multiplier: FloatArray,
        statistic: FloatArray,
        p_value: FloatArray,
        relative_p_value: FloatArray | None = None,
        win_mean: FloatArray | None = None,
        win_sd: FloatArray | None = None,
    ) -> EffectResult:
        se = np.sqrt(prep.var)
        rel_se = np.sqrt(prep.relative_var)
        center = prep.effect if win_mean is None else win_mean
        spread = se if win_sd is None else win_sd
        win, loss = normal_win_and_loss(center, spread)
        _, loss_lower = normal_win_and_loss(-center, spread)
        nan = np.nan
        rel_low = prep.relative - multiplier * rel_se
        rel_high = prep.relative + multiplier * rel_se
        if self.alternative == "greater":
            ci_high = np.where(prep.ok, np.inf, nan)
            rel_high = np.where(prep.relative_ok, np.inf, nan)
        elif self.alternative == "less":
            ci_low = np.where(prep.ok, -np.inf, nan)
            rel_low = np.where(prep.relative_ok, -np.inf, nan)
        return EffectResult(
            method=self.name,
            alpha=self.alpha,
            alternative=self.alternative,
            n_control=prep.control.n,
            n_treatment=prep.treatment.n,
            mean_control=prep.control.mean,
            mean_treatment=prep.treatment.mean,
            effect=prep.effect,
            se=se,
            ci_low=np.where(prep.ok, ci_low, nan),
            ci_high=np.where(prep.ok, ci_high, nan),
            relative=prep.relative,
            relative_se=rel_se,
            relative_ci_low=rel_low,
            relative_ci_high=rel_high,
            statistic=np.where(prep.ok, statistic, nan),
            df=prep.df,
            p_value=np.where(prep.ok, p_value, nan),
            relative_p_value=(
                np.full(prep.effect.shape, nan)
                if relative_p_value is None
                else np.where(prep.relative_ok, np.minimum(relative_p_value, 1.0), nan)
            ),
            chance_to_win=np.where(prep.ok, win, nan),
            expected_loss=np.where(prep.ok, loss, nan),
            expected_loss_lower=np.where(prep.ok, loss_lower, nan),
            ok=prep.ok,
            relative_ok=prep.relative_ok,
            message=prep.message,
        )


__all__ = [
    "ALTERNATIVES",
    "MSG_NONFINITE",
    "MSG_SMALL",
    "MSG_ZERO_CONTROL",
    "MSG_ZERO_VAR",
    "Alternative",
    "EffectResult",
    "EffectTest",
    "Prepared",
    "RelativeBase",
    "check_alpha",
    "check_alternative",
    "normal_win_and_loss",
    "prepare",
]
