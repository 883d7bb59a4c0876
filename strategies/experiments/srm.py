"""Sample-ratio mismatch: is the traffic split what the experiment was configured to do?

Why first: when assignment or logging drops units unevenly (a crash in one arm, a bot filter, a
cache that serves the control), every metric comparison is biased and no amount of statistics
fixes it. So the SRM check runs before any decision, with a strict alpha (default 0.001: a
nightly check over many experiments must not cry wolf), and a mismatch stops the experiment.

Pearson chi-square of the observed unit counts against the configured weights; equals
``scipy.stats.chisquare(counts, expected)``. Vectorized over rows; arms with weight 0 (or NaN
counts) are padding and ignored, so experiments with different numbers of arms share one array.

Example:
    >>> r = srm_test([[5000, 5200]], [[0.5, 0.5]])
    >>> round(float(r.p_value[0]), 4), bool(r.mismatch[0])
    (0.0477, False)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from strategies.experiments.stats import FloatArray

DEFAULT_SRM_ALPHA = 0.001


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


def srm_test(
    counts: ArrayLike, weights: ArrayLike, *, alpha: float = DEFAULT_SRM_ALPHA
) -> SrmResult:
    """Chi-square goodness of fit per row of ``counts`` (rows x arms) against ``weights``."""
    obs = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    w = np.broadcast_to(np.atleast_2d(np.asarray(weights, dtype=np.float64)), obs.shape)
    if np.any(w < 0):
        raise ValueError("SRM weights must be non-negative")
    active = (w > 0) & np.isfinite(obs)
    obs_a = np.where(active, obs, 0.0)
    w_a = np.where(active, w, 0.0)
    total = obs_a.sum(axis=1, keepdims=True)
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


__all__ = ["DEFAULT_SRM_ALPHA", "SrmResult", "srm_test"]
