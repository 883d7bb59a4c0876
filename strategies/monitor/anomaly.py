"""Point anomalies: is today's value out of line with the reference window?

Three classic rules, each scoring new values against a reference sample:

* **z-score**: ``|x - mean| / std > 4`` (std floored as in
  :func:`~strategies.monitor.change.standardise`). Cheap, but the reference mean and std are
  themselves pulled by outliers.
* **IQR (Tukey's far-out fence)**: outside ``[Q1 - 3 IQR, Q3 + 3 IQR]``; 1.5 is the usual
  "outlier" fence, 3 the "far out" one, used here because reference windows are short.
* **MAD (robust)**: modified z-score ``0.6745 |x - median| / MAD > 5`` (Iglewicz and Hoaglin's
  3.5 flags too often on 14-point references).

A value is an anomaly when at least ``min_votes`` rules agree (default 2). With a 14-day reference
the three rules are noisy estimates, so a stationary day still trips two rules about 0.1-0.3% of the
time; run nightly over a month and four metrics that adds up, which is why anomalies are reported
but do not raise alerts by default (``alert_on_anomalies`` in the monitoring config).

Example:
    >>> ref = [0.80, 0.81, 0.79, 0.80, 0.82, 0.80, 0.79, 0.81, 0.80, 0.80]
    >>> [a.is_anomaly for a in detect_anomalies([0.80, 0.55], reference=ref)]
    [False, True]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

MAD_TO_SIGMA = 0.6745  # MAD of a standard normal is 0.6745


@dataclass(frozen=True)
class AnomalyThresholds:
    z: float = 4.0
    iqr_k: float = 3.0
    mad: float = 5.0
    min_votes: int = 2
    min_reference: int = 5
    min_relative_scale: float = 0.02

    def __post_init__(self) -> None:
        if not 1 <= self.min_votes <= 3:
            raise ValueError("min_votes must be 1, 2 or 3")


@dataclass(frozen=True, kw_only=True)
class AnomalyScore:
    """Scores of one value; ``methods`` names the rules that flagged it."""

    value: float
    z_score: float
    iqr_distance: float
    mad_score: float
    methods: tuple[str, ...]
    is_anomaly: bool


def zscore_scores(
    values: ArrayLike, *, reference: ArrayLike, min_relative_scale: float = 0.02
) -> np.ndarray:
    """Signed z-scores of ``values`` against the reference mean and (floored) std.

    Args:
        values: the points to score.
        reference: the points that set the mean and std.
        min_relative_scale: std floor as a share of the reference mean's magnitude.

    Returns:
        One score per value.
    """
    ref = np.asarray(reference, dtype=float)
    center = float(ref.mean())
    std = float(ref.std(ddof=1)) if ref.size > 1 else 0.0
    scale = max(std, min_relative_scale * abs(center), 1e-12)
    return (np.asarray(values, dtype=float) - center) / scale


def iqr_distances(
    values: ArrayLike, *, reference: ArrayLike, min_relative_scale: float = 0.02
) -> np.ndarray:
    """Signed distance beyond the quartiles in IQR units (0 inside ``[Q1, Q3]``).

    Args:
        values: the points to score.
        reference: the points that set the quartiles.
        min_relative_scale: IQR floor as a share of the quartiles' midpoint.

    Returns:
        One distance per value.
    """
    q1, q3 = np.quantile(np.asarray(reference, dtype=float), [0.25, 0.75])
    iqr = max(float(q3 - q1), min_relative_scale * abs(float((q1 + q3) / 2)), 1e-12)
    x = np.asarray(values, dtype=float)
    return np.where(x > q3, (x - q3) / iqr, np.where(x < q1, (x - q1) / iqr, 0.0))


def mad_scores(
    values: ArrayLike, *, reference: ArrayLike, min_relative_scale: float = 0.02
) -> np.ndarray:
    """Signed modified z-scores ``0.6745 (x - median) / MAD``.

    Args:
        values: the points to score.
        reference: the points that set the median and MAD.
        min_relative_scale: scale floor (in sigma units) as a share of the median's magnitude.

    Returns:
        One score per value.
    """
    ref = np.asarray(reference, dtype=float)
    median = float(np.median(ref))
    mad = float(np.median(np.abs(ref - median)))
    # a floor in sigma units, converted to MAD units
    mad = max(mad, MAD_TO_SIGMA * min_relative_scale * abs(median), 1e-12)
    return MAD_TO_SIGMA * (np.asarray(values, dtype=float) - median) / mad


def detect_anomalies(
    values: ArrayLike, *, reference: ArrayLike, thresholds: AnomalyThresholds | None = None
) -> list[AnomalyScore]:
    """Score each of ``values`` with the three rules; empty list if the reference is too short.

    Args:
        values: the points to judge (finite).
        reference: the points that set what is normal (non-finite ones are ignored).
        thresholds: per-rule thresholds and the votes needed (default
            :class:`AnomalyThresholds`).

    Returns:
        One :class:`AnomalyScore` per value.

    Raises:
        ValueError: a non-finite value.
    """
    th = thresholds or AnomalyThresholds()
    ref = np.asarray(reference, dtype=float)
    ref = ref[np.isfinite(ref)]
    x = np.asarray(values, dtype=float)
    if ref.size < th.min_reference or x.size == 0:
        return []
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite")
    kw = {"reference": ref, "min_relative_scale": th.min_relative_scale}
    z, iqr, mad = zscore_scores(x, **kw), iqr_distances(x, **kw), mad_scores(x, **kw)
    out: list[AnomalyScore] = []
    for i in range(x.size):
        flagged = tuple(
            name
            for name, hit in (
                ("zscore", abs(z[i]) > th.z),
                ("iqr", abs(iqr[i]) > th.iqr_k),
                ("mad", abs(mad[i]) > th.mad),
            )
            if hit
        )
        out.append(
            AnomalyScore(
                value=float(x[i]),
                z_score=float(z[i]),
                iqr_distance=float(iqr[i]),
                mad_score=float(mad[i]),
                methods=flagged,
                is_anomaly=len(flagged) >= th.min_votes,
            )
        )
    return out


def anomaly_flags(
    series: Sequence[float] | np.ndarray,
    *,
    reference_length: int,
    thresholds: AnomalyThresholds | None = None,
) -> list[int]:
    """Indices after the first ``reference_length`` points flagged against those points.

    Args:
        series: the whole series.
        reference_length: leading points that set what is normal.
        thresholds: as in :func:`detect_anomalies`.

    Returns:
        The flagged indices into ``series``.
    """
    x = np.asarray(series, dtype=float)
    scores = detect_anomalies(
        x[reference_length:], reference=x[:reference_length], thresholds=thresholds
    )
    return [reference_length + i for i, s in enumerate(scores) if s.is_anomaly]


__all__ = [
    "MAD_TO_SIGMA",
    "AnomalyScore",
    "AnomalyThresholds",
    "anomaly_flags",
    "detect_anomalies",
    "iqr_distances",
    "mad_scores",
    "zscore_scores",
]
