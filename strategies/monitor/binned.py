"""Statistics of two windows from counts on shared bins: PSI, KS, Wasserstein-1, quantiles.

The warehouse bins each numeric field and counts rows per bin and window; these functions work on
those counts, never on rows. :mod:`strategies.monitor.drift` turns them into drift decisions.

Approximations (stated, and tested against scipy on raw samples):

* **KS** is the largest gap between the two empirical CDFs *evaluated at the bin edges*. The true
  supremum may fall inside a bin, so the binned statistic is a lower bound, short by at most the
  largest bin mass (1% with drift bins cut at 100 quantile levels of both windows; exact in the
  body of discrete fields such as small token counts, where every value is an edge). The
  p-value uses scipy's two-sample Kolmogorov distribution (``kstwo``) at the effective size
  ``n*m/(n+m)``, as ``scipy.stats.ks_2samp(method="asymp")`` does.
* **Wasserstein-1** is the area between the two CDFs with each CDF interpolated linearly inside a
  bin (rows assumed uniform within a bin); exact at the edges, error bounded by the bin widths
  times the in-bin CDF gap.
* **PSI** uses coarse bins (deciles of the reference by default, formed by merging fine bins) since
  PSI's sampling noise grows with the number of bins, about ``(K-1)(1/n+1/m)``; bands follow the
  usual convention: < 0.1 stable, 0.1-0.25 moderate, >= 0.25 significant.
* **Chi-square** on the 2 x K contingency table of category counts (``scipy.stats.chi2_contingency``
  without continuity correction), with Cramér's V as the effect size.

Example:
    >>> round(psi([50, 50], [50, 50]), 6), ks_from_binned([10, 0], [0, 10])[0]
    (0.0, 1.0)
    >>> wasserstein_from_binned([0.0, 1.0], [10, 0], [0, 10])
    0.5
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "binned_quantile",
    "counts_array",
    "ks_from_binned",
    "merge_bins",
    "psi",
    "wasserstein_from_binned",
]


def counts_array(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """``values`` as a 1-D float array of finite, non-negative counts (``name`` in the error).

    Args:
        values: the counts.
        name: what they are, for the error message.

    Returns:
        The array.

    Raises:
        ValueError: not one-dimensional, or a negative / non-finite count.
    """
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    return array


def psi(reference: ArrayLike, current: ArrayLike, *, epsilon: float = 1e-4) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` over bin shares.

    Empty bins get ``epsilon`` share (the usual guard against ``ln(0)``).

    Args:
        reference: counts per bin in the reference window.
        current: counts per bin in the current window (same bins).
        epsilon: the share given to an empty bin.

    Returns:
        The PSI (0 when the shares are equal).

    Raises:
        ValueError: different bins, negative counts or an empty window.
    """
    ref = counts_array(reference, "reference")
    cur = counts_array(current, "current")
    if ref.shape != cur.shape:
        raise ValueError("reference and current need the same bins")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("both windows need at least one row")
    p = np.maximum(ref / ref.sum(), epsilon)
    q = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def merge_bins(
    reference: ArrayLike, current: ArrayLike, n_bins: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Merge adjacent fine bins into about ``n_bins`` groups of equal reference mass.

    Args:
        reference: fine-bin counts of the reference window.
        current: fine-bin counts of the current window.
        n_bins: the number of groups wanted.

    Returns:
        ``(reference, current)`` counts per group.
    """
    ref = counts_array(reference, "reference")
    cur = counts_array(current, "current")
    total = ref.sum()
    if total <= 0:
        return ref, cur
    share = np.cumsum(ref) / total
    # group index: how many 1/n_bins boundaries the cumulative reference share has passed
    group = np.minimum(np.ceil(share * n_bins - 1e-9).astype(int), n_bins)
    group = np.maximum.accumulate(np.maximum(group, 1)) - 1
    size = int(group.max()) + 1
    merged_ref = np.bincount(group, weights=ref, minlength=size).astype(float)
    merged_cur = np.bincount(group, weights=cur, minlength=size).astype(float)
    return merged_ref, merged_cur


def ks_from_binned(reference: ArrayLike, current: ArrayLike) -> tuple[float, float]:
    """KS statistic and asymptotic p-value from counts on shared, ordered bins.

    Args:
        reference: counts per bin, reference window.
        current: counts per bin, current window.

    Returns:
        ``(D, p)``: the largest CDF gap at the bin edges and scipy's ``kstwo`` p-value at the
        effective size ``n*m/(n+m)``.

    Raises:
        ValueError: an empty window.
    """
    ref = counts_array(reference, "reference")
    cur = counts_array(current, "current")
    n, m = ref.sum(), cur.sum()
    if n <= 0 or m <= 0:
        raise ValueError("both windows need at least one row")
    d = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m)))
    en = n * m / (n + m)
    pvalue = float(stats.kstwo.sf(d, max(round(en), 1)))
    return d, min(max(pvalue, 0.0), 1.0)


def wasserstein_from_binned(edges: ArrayLike, reference: ArrayLike, current: ArrayLike) -> float:
    """Area between the CDFs, linear inside each bin.

    ``edges`` are the ``K`` upper bin edges, ascending; bin 0 holds rows ``<= edges[0]`` (the
    minimum, a point mass), bin ``i`` rows in ``(edges[i-1], edges[i]]``.

    Args:
        edges: upper bin edges, ascending.
        reference: counts per bin, reference window.
        current: counts per bin, current window.

    Returns:
        The Wasserstein-1 distance in the field's unit.

    Raises:
        ValueError: lengths differ or edges are not ascending.
    """
    e = np.asarray(edges, dtype=float)
    ref = counts_array(reference, "reference")
    cur = counts_array(current, "current")
    if not (e.shape == ref.shape == cur.shape):
        raise ValueError("edges, reference and current must have the same length")
    if np.any(np.diff(e) < 0):
        raise ValueError("edges must be ascending")
    diff = np.cumsum(ref) / ref.sum() - np.cumsum(cur) / cur.sum()
    a, b, width = diff[:-1], diff[1:], np.diff(e)
    same_sign = a * b >= 0
    # where the gap changes sign inside a bin, the area is two triangles
    denom = np.where(same_sign, 1.0, np.abs(a) + np.abs(b))
    crossing = (a * a + b * b) / denom
    area = np.where(same_sign, np.abs(a) + np.abs(b), crossing) * width / 2.0
    return float(np.sum(area))


def binned_quantile(edges: NDArray[np.float64], counts: NDArray[np.float64], q: float) -> float:
    """The ``q`` quantile of binned counts, the CDF interpolated linearly between edges.

    Args:
        edges: upper bin edges, ascending.
        counts: counts per bin (not all zero).
        q: the probability, in [0, 1].

    Returns:
        The quantile in the field's unit.
    """
    cdf = np.cumsum(counts) / counts.sum()
    return float(np.interp(q, cdf, edges))
