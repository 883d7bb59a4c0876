"""Sample-ratio mismatch: is the traffic split what the experiment was configured to do?

Why first: when assignment or logging drops units unevenly (a crash in one arm, a bot filter, a
cache that serves the control), every metric comparison is biased and no amount of statistics
fixes it. So the SRM check runs before any decision, with a strict alpha (default 0.001: a
nightly check over many experiments must not cry wolf), and a mismatch stops the experiment.

Pearson chi-square of the observed unit counts against the configured weights; equals
``scipy.stats.chisquare(counts, expected)``. Vectorized over rows; arms with weight 0 (or NaN
counts) are padding and ignored, so experiments with different numbers of arms share one array.

Nightly looks: re-testing the cumulative counts every night with the chi-square test stops far
more healthy experiments than ``srm_alpha`` over a month (each night is another chance).
:func:`sequential_srm_test` is always valid instead (Lindon & Malek 2022, "Anytime-valid
inference for multinomial count data"): the Bayes factor of a Dirichlet-multinomial mixture
``Dir(concentration * weights)`` against the configured multinomial,

    BF = Gamma(c) / Gamma(c + n) * prod_i Gamma(c w_i + x_i) / Gamma(c w_i) / prod_i w_i^x_i,

is a nonnegative martingale under the null, so by Ville's inequality ``P(ever BF >= 1/alpha)
<= alpha`` whatever the number of looks; the p-value is ``min(1, 1/BF)``. It depends only on the
cumulative counts, so a nightly check that stops for good at the first ``p < alpha`` (sticky
stops) keeps the false-stop rate of the experiment's whole life at most ``srm_alpha``.

Example:
    >>> r = srm_test([[5000, 5200]], [[0.5, 0.5]])
    >>> round(float(r.p_value[0]), 4), bool(r.mismatch[0])
    (0.0477, False)
    >>> s = sequential_srm_test([[5000, 5200], [5000, 5600]], [[0.5, 0.5]])
    >>> [bool(m) for m in s.mismatch], bool(s.p_value[0] > r.p_value[0])
    ([False, True], True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special as spf
from scipy import stats as sps

from strategies.experiments.report import ExperimentSpec, SrmCheck
from strategies.experiments.stats import FloatArray

DEFAULT_SRM_ALPHA = 0.001
DEFAULT_SRM_CONCENTRATION = 100.0


@dataclass(frozen=True)
class SrmResult:
    """Per row: chi-square statistic, degrees of freedom, p-value, verdict, expected counts."""

    statistic: FloatArray
    df: FloatArray
    p_value: FloatArray
    mismatch: np.ndarray
    expected: FloatArray
    ok: np.ndarray
    message: np.ndarray


def _active(
    counts: ArrayLike, weights: ArrayLike
) -> tuple[np.ndarray, FloatArray, FloatArray, FloatArray]:
    """Active cells (weight > 0, finite count), counts and weights there, and row totals."""
    obs = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    w = np.broadcast_to(np.atleast_2d(np.asarray(weights, dtype=np.float64)), obs.shape)
    if np.any(w < 0):
        raise ValueError("SRM weights must be non-negative")
    active = (w > 0) & np.isfinite(obs)
    obs_a = np.where(active, obs, 0.0)
    w_a = np.where(active, w, 0.0)
    return active, obs_a, w_a, obs_a.sum(axis=1, keepdims=True)


def srm_test(
    counts: ArrayLike, weights: ArrayLike, *, alpha: float = DEFAULT_SRM_ALPHA
) -> SrmResult:
    """Chi-square goodness of fit per row of ``counts`` (rows x arms) against ``weights``.

    Args:
        counts: units per arm, one row per experiment (rows x arms).
        weights: configured shares, broadcast against ``counts``; 0 marks padding.
        alpha: the mismatch threshold on the p-value.

    Returns:
        Per row: statistic, df, p-value, mismatch, expected counts, analysable, message.
    """
    active, obs_a, w_a, total = _active(counts, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = total * w_a / w_a.sum(axis=1, keepdims=True)
        terms = np.where(active, (obs_a - expected) ** 2 / expected, 0.0)
    arms = active.sum(axis=1)
    df = (arms - 1).astype(np.float64)
    ok = (arms >= 2) & (total[:, 0] > 0)
    stat = np.where(ok, terms.sum(axis=1), np.nan)
    p = np.where(ok, sps.chi2.sf(np.where(ok, stat, 0.0), np.maximum(df, 1.0)), np.nan)
    message = np.where(
        ok, "", np.where(arms < 2, "cannot analyse: fewer than 2 arms", "cannot analyse: no units")
    ).astype(object)
    return SrmResult(
        statistic=stat,
        df=df,
        p_value=p,
        mismatch=ok & (p < alpha),
        expected=np.where(active, expected, np.nan),
        ok=ok,
        message=message,
    )


def sequential_srm_test(
    counts: ArrayLike,
    weights: ArrayLike,
    *,
    alpha: float = DEFAULT_SRM_ALPHA,
    concentration: float = DEFAULT_SRM_CONCENTRATION,
) -> SrmResult:
    """Always-valid SRM check per row: Dirichlet-multinomial mixture Bayes factor vs weights.

    Args:
        counts: cumulative units per arm since the test started (rows x arms).
        weights: configured shares, broadcast against ``counts``; 0 marks padding.
        alpha: the mismatch threshold on ``p = min(1, 1 / BF)``.
        concentration: total prior weight ``c`` of ``Dir(c * weights)`` (> 0): smaller finds
            gross mismatches sooner, larger finds small ones with less penalty.

    Returns:
        Per row: ``statistic`` is ``log BF``, ``df`` the arms minus one, the p-value, mismatch,
        expected counts, analysable and message (as :func:`srm_test`).
    """
    if not (np.isfinite(concentration) and concentration > 0):
        raise ValueError("concentration must be a finite number > 0")
    active, obs_a, w_a, total = _active(counts, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = w_a / w_a.sum(axis=1, keepdims=True)
        prior = concentration * share
        cells = np.where(
            active,
            spf.gammaln(prior + obs_a) - spf.gammaln(prior) - obs_a * np.log(share),
            0.0,
        )
        log_norm = spf.gammaln(concentration) - spf.gammaln(concentration + total[:, 0])
        log_bf = log_norm + cells.sum(axis=1)
        expected = total * share
    arms = active.sum(axis=1)
    ok = (arms >= 2) & (total[:, 0] > 0)
    p = np.where(ok, np.minimum(1.0, np.exp(-np.where(ok, log_bf, 0.0))), np.nan)
    message = np.where(
        ok, "", np.where(arms < 2, "cannot analyse: fewer than 2 arms", "cannot analyse: no units")
    ).astype(object)
    return SrmResult(
        statistic=np.where(ok, log_bf, np.nan),
        df=(arms - 1).astype(np.float64),
        p_value=p,
        mismatch=ok & (p < alpha),
        expected=np.where(active, expected, np.nan),
        ok=ok,
        message=message,
    )


def _float(x: object) -> float:
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def srm_check(
    spec: ExperimentSpec, arms: list[str], unit_counts: Mapping[str, float], *, sequential: bool
) -> SrmCheck:
    """One experiment's SRM check against its configured weights (equal when none).

    Arms without a configured weight that have units are a mismatch by themselves.

    Args:
        spec: the experiment's configuration (weights, srm_alpha).
        arms: the arms seen.
        unit_counts: units per arm (since the last reset, for nightly looks).
        sequential: the always-valid test (nightly looks) instead of chi-square (one look).
    """
    configured = dict(spec.weights)
    weights = [configured.get(a, 0.0) if configured else 1.0 for a in arms]
    counts = [float(unit_counts.get(a, 0.0)) for a in arms]
    unconfigured = [a for a, w in zip(arms, weights, strict=True) if w <= 0]
    test = sequential_srm_test if sequential else srm_test
    result = test([counts], [weights], alpha=spec.srm_alpha)
    message = str(result.message[0])
    if unconfigured:
        message = (message + "; " if message else "") + f"arms without a weight: {unconfigured}"
    return SrmCheck(
        p_value=_float(result.p_value[0]),
        counts=dict(zip(arms, counts, strict=True)),
        expected={a: _float(e) for a, e in zip(arms, result.expected[0], strict=True)},
        mismatch=bool(result.mismatch[0])
        or bool(unconfigured and any(unit_counts.get(a, 0) > 0 for a in unconfigured)),
        analysable=bool(result.ok[0]),
        message=message,
        method="sequential" if sequential else "chi-square",
    )


__all__ = [
    "DEFAULT_SRM_ALPHA",
    "DEFAULT_SRM_CONCENTRATION",
    "SrmResult",
    "sequential_srm_test",
    "srm_check",
    "srm_test",
]
