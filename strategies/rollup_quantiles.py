"""Fixed log-spaced bins: histograms that add up across days, and quantiles read from them.

Why: a quantile (latency p95) or a distribution (drift) of a window cannot be summed from daily
quantiles, but it can be read from daily *binned counts* on bins that never move. Each positive
value ``x`` lands in bin ``k = floor(ln(x) / ln(r))``, the interval ``[r**k, r**(k+1))``; zero and
negative values land in one separate bin, :data:`NONPOSITIVE_BIN`, which sorts before every
positive bin. No edge table is needed and any two histograms merge by adding the counts of equal
bin indices. Every bin also carries the smallest and largest value it holds (``vmin`` and
``vmax``; they merge by ``min`` and ``max``), so a bin holding a single distinct value (small
token counts, zeros) is exact.

**Error bound.** :func:`quantile_by_group` reads DuckDB's ``quantile_cont`` (the order
statistics at ranks ``floor(h)`` and ``ceil(h)`` with ``h = q (N - 1)``, interpolated linearly)
from merged bins: each of the two order statistics is estimated inside its bin's ``[vmin, vmax]``
(by its rank within the bin), and ``vmax / vmin < r`` for a positive bin, so for positive values

    ``|estimate - quantile_cont| <= (r - 1) * quantile_cont``     (1% with ``r = 1.01``)

(the interpolation of two estimates keeps the relative bound). Values in the non-positive bin are
exact when they are all equal (the zeros of the non-negative fields the schema allows); otherwise
their error is at most that bin's ``vmax - vmin``. An order statistic at either end of its bin is
exact.

**Drift on fixed bins.** :func:`drift_bins` merges the fine bins of a reference and a current
window into at most about ``2 * levels`` groups, cutting where a ``1/levels`` quantile level of
either window falls (what the quantile edges of both windows did before): no group holds more than
``1/levels`` of either window unless one fine bin does, and each group's upper edge is the largest
value it holds. PSI, KS and Wasserstein (:mod:`strategies.monitor.binned`) read those groups.

Example:
    >>> import numpy as np
    >>> x = np.array([0.0, 1.0, 2.0, 3.0, 120.0, 121.0, 950.0])
    >>> h = LogHistogram.from_values(x)
    >>> h.index.tolist(), h.counts.tolist()
    ([-1000000, 0, 69, 110, 481, 689], [1, 1, 1, 1, 2, 1])
    >>> float(h.vmin[4]), float(h.vmax[4])
    (120.0, 121.0)
    >>> merged = merge_histograms([h, LogHistogram.from_values([2.0, 2.0])])
    >>> merged.counts.tolist()
    [1, 1, 3, 1, 2, 1]
    >>> merged.quantile(0.5), float(np.quantile(np.r_[x, 2.0, 2.0], 0.5))
    (2.0, 2.0)
    >>> rng = np.random.default_rng(1)
    >>> latency = rng.lognormal(6.0, 0.7, 20_000)
    >>> est = LogHistogram.from_values(latency).quantile(0.95)
    >>> bool(abs(est / np.quantile(latency, 0.95) - 1) <= RATIO - 1)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: ratio between consecutive bin edges: a quantile from bins is within ``RATIO - 1`` (1%)
RATIO = 1.01
#: ``ln(RATIO)``, written into the SQL so DuckDB and numpy divide by the same double
LOG_RATIO = math.log(RATIO)
#: the bin of zero and negative values (sorts before every positive bin)
NONPOSITIVE_BIN = -1_000_000

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


def bin_index(values: ArrayLike, *, ratio: float = RATIO) -> IntArray:
    """The fixed bin of each value: ``floor(ln(x) / ln(ratio))``, or :data:`NONPOSITIVE_BIN`.

    Args:
        values: finite values.
        ratio: the edge ratio ``r`` (> 1).

    Returns:
        One bin index per value.

    Example:
        >>> bin_index([1.0, 1.01, 1000.0, 0.0, -5.0]).tolist()
        [0, 1, 694, -1000000, -1000000]
    """
    x = np.asarray(values, dtype=float)
    log_r = LOG_RATIO if ratio == RATIO else math.log(ratio)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.floor(np.log(np.where(x > 0, x, 1.0)) / log_r)
    return np.where(x > 0, k, NONPOSITIVE_BIN).astype(np.int64)


def bin_sql(expr: str, *, ratio: float = RATIO) -> str:
    """The SQL expression of :func:`bin_index` for a numeric SQL expression (NULL stays NULL).

    Args:
        expr: a SQL expression of type DOUBLE (or castable to it).
        ratio: the edge ratio ``r`` (> 1).

    Returns:
        A SQL ``INTEGER`` expression.

    Example:
        >>> bin_sql("x")
        'CASE WHEN (x) > 0 THEN CAST(floor(ln(x) / 0.009950330853168092) AS INTEGER) \
WHEN (x) <= 0 THEN -1000000 END'
    """
    log_r = LOG_RATIO if ratio == RATIO else math.log(ratio)
    return (
        f"CASE WHEN ({expr}) > 0 THEN CAST(floor(ln({expr}) / {log_r!r}) AS INTEGER)"
        f" WHEN ({expr}) <= 0 THEN {NONPOSITIVE_BIN} END"
    )


def bin_edges(index: ArrayLike, *, ratio: float = RATIO) -> tuple[FloatArray, FloatArray]:
    """Lower and upper edge of each positive bin (``-inf`` and 0 for the non-positive bin).

    Args:
        index: bin indices.
        ratio: the edge ratio ``r``.

    Returns:
        ``(lower, upper)``: the bin is ``[lower, upper)``.

    Example:
        >>> [e.tolist() for e in bin_edges([0, NONPOSITIVE_BIN])]
        [[1.0, -inf], [1.01, 0.0]]
    """
    k = np.asarray(index, dtype=np.int64)
    positive = k != NONPOSITIVE_BIN
    kf = np.where(positive, k, 0).astype(float)
    lower = np.where(positive, np.power(ratio, kf), -np.inf)
    upper = np.where(positive, np.power(ratio, kf + 1.0), 0.0)
    return lower, upper


@dataclass(frozen=True, eq=False)
class LogHistogram:
    """Counts on the fixed bins, with each bin's smallest and largest value.

    Args:
        index: bin indices, strictly ascending.
        counts: rows per bin (> 0).
        vmin: smallest value in each bin.
        vmax: largest value in each bin.

    Raises:
        ValueError: lengths differ, indices not strictly ascending, a count below 1, or
            ``vmin > vmax``.
    """

    index: IntArray
    counts: IntArray
    vmin: FloatArray
    vmax: FloatArray

    def __post_init__(self) -> None:
        index = np.asarray(self.index, dtype=np.int64).reshape(-1)
        counts = np.asarray(self.counts, dtype=np.int64).reshape(-1)
        vmin = np.asarray(self.vmin, dtype=float).reshape(-1)
        vmax = np.asarray(self.vmax, dtype=float).reshape(-1)
        if not index.size == counts.size == vmin.size == vmax.size:
            raise ValueError("index, counts, vmin and vmax must have the same length")
        if np.any(np.diff(index) <= 0):
            raise ValueError("bin indices must be strictly ascending")
        if np.any(counts < 1) or np.any(vmin > vmax):
            raise ValueError("every bin needs a count >= 1 and vmin <= vmax")
        for name, value in (("index", index), ("counts", counts), ("vmin", vmin), ("vmax", vmax)):
            object.__setattr__(self, name, value)

    @classmethod
    def from_values(cls, values: ArrayLike, *, ratio: float = RATIO) -> LogHistogram:
        """Bin raw values (NaN dropped): the reference the SQL rollup is tested against.

        Args:
            values: the values.
            ratio: the edge ratio ``r``.

        Returns:
            Their histogram.
        """
        x = np.asarray(values, dtype=float).reshape(-1)
        x = x[~np.isnan(x)]
        k = bin_index(x, ratio=ratio)
        uniq, inverse = np.unique(k, return_inverse=True)
        counts = np.bincount(inverse, minlength=uniq.size)
        vmin = np.full(uniq.size, np.inf)
        vmax = np.full(uniq.size, -np.inf)
        np.minimum.at(vmin, inverse, x)
        np.maximum.at(vmax, inverse, x)
        return cls(uniq, counts, vmin, vmax)

    @property
    def total(self) -> int:
        """Rows in all bins."""
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        """The ``quantile_cont`` estimate (see the module docstring); NaN when empty.

        Args:
            q: the probability, in [0, 1].

        Returns:
            The estimate.
        """
        groups = np.zeros(self.index.size, dtype=np.int64)
        _, values = quantile_by_group(groups, self.counts, self.vmin, self.vmax, q)
        return float(values[0]) if values.size else math.nan


def merge_histograms(histograms: Iterable[LogHistogram]) -> LogHistogram:
    """Add histograms on the same fixed bins (counts add; ``vmin``/``vmax`` take min/max).

    Args:
        histograms: the histograms (for example one per day of a window).

    Returns:
        The merged histogram.
    """
    items = list(histograms)
    if not items:
        empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0)
        return LogHistogram(empty_i, empty_i, empty_f, empty_f)
    index = np.concatenate([h.index for h in items])
    uniq, inverse = np.unique(index, return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate([h.counts for h in items]))
    vmin = np.full(uniq.size, np.inf)
    vmax = np.full(uniq.size, -np.inf)
    np.minimum.at(vmin, inverse, np.concatenate([h.vmin for h in items]))
    np.maximum.at(vmax, inverse, np.concatenate([h.vmax for h in items]))
    return LogHistogram(uniq, counts.astype(np.int64), vmin, vmax)


def quantile_by_group(
    groups: ArrayLike, counts: ArrayLike, vmin: ArrayLike, vmax: ArrayLike, q: float
) -> tuple[NDArray[np.generic], FloatArray]:
    """``quantile_cont(q)`` of many histograms at once, from bin rows sorted by (group, bin).

    Each group's rows are its (already merged) bins in ascending bin order; the order statistic
    of rank ``j`` in a bin holding ranks ``s .. s + c - 1`` is estimated as
    ``vmin + (j - s) / (c - 1) * (vmax - vmin)`` (exact at both ends of the bin).

    Args:
        groups: one group label per row, non-decreasing (rows of a group are contiguous).
        counts: rows per bin (zero rows are allowed and skipped).
        vmin: smallest value of each bin.
        vmax: largest value of each bin.
        q: the probability, in [0, 1].

    Returns:
        ``(labels, estimates)``: one estimate per distinct group label, in order (NaN for a
        group whose counts are all zero).

    Raises:
        ValueError: ``q`` outside [0, 1], lengths differ or groups not contiguous.

    Example:
        >>> quantile_by_group([7, 7, 9], [2, 2, 1], [1.0, 5.0, 3.0], [2.0, 5.0, 3.0], 0.5)
        (array([7, 9]), array([3.5, 3. ]))
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be in [0, 1]")
    g = np.asarray(groups).reshape(-1)
    n = np.asarray(counts, dtype=np.int64).reshape(-1)
    lo_v = np.asarray(vmin, dtype=float).reshape(-1)
    hi_v = np.asarray(vmax, dtype=float).reshape(-1)
    if not g.size == n.size == lo_v.size == hi_v.size:
        raise ValueError("groups, counts, vmin and vmax must have the same length")
    if g.size == 0:
        return g, np.zeros(0)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    labels = g[starts]
    if np.unique(labels).size != labels.size:
        raise ValueError("the rows of each group must be contiguous")
    cum = np.cumsum(n)  # inclusive: row i holds global ranks cum[i] - n[i] .. cum[i] - 1
    before = np.r_[0, cum][starts]  # ranks before each group
    totals = np.add.reduceat(n, starts)
    h = q * np.maximum(totals - 1, 0)
    lo = np.floor(h)
    frac = h - lo
    hi = np.minimum(np.ceil(h), np.maximum(totals - 1, 0))

    def order_statistic(rank: FloatArray) -> FloatArray:
        r = (before + rank).astype(np.int64)
        row = np.minimum(np.searchsorted(cum, r, side="right"), n.size - 1)
        first = cum[row] - n[row]
        span = np.maximum(n[row] - 1, 1)
        t = (r - first) / span
        return lo_v[row] + t * (hi_v[row] - lo_v[row])

    x_lo, x_hi = order_statistic(lo), order_statistic(hi)
    out = np.where(totals > 0, x_lo + frac * (x_hi - x_lo), np.nan)
    return labels, out


def align_histograms(
    reference: LogHistogram, current: LogHistogram
) -> tuple[IntArray, IntArray, IntArray, FloatArray, FloatArray]:
    """Both windows on the union of their bins.

    Args:
        reference: the reference window's histogram.
        current: the current window's histogram.

    Returns:
        ``(index, reference counts, current counts, vmin, vmax)`` over the union of bins
        (zero counts where a window has no row; ``vmin``/``vmax`` over both windows).
    """
    both = merge_histograms([reference, current])
    ref = np.zeros(both.index.size, dtype=np.int64)
    cur = np.zeros(both.index.size, dtype=np.int64)
    ref[np.searchsorted(both.index, reference.index)] = reference.counts
    cur[np.searchsorted(both.index, current.index)] = current.counts
    return both.index, ref, cur, both.vmin, both.vmax


def drift_bins(
    reference: LogHistogram, current: LogHistogram, *, levels: int = 100
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Fine fixed bins of two windows merged into drift bins (``Bins`` of the monitor).

    A group ends at every fine bin where a quantile level ``j / levels`` of either window falls
    (integer arithmetic on the cumulative counts), and at the last bin. Each group's edge is the
    largest value it holds, so the ``Bins`` convention holds exactly: group ``i`` holds the
    rows in ``(edges[i-1], edges[i]]`` (group 0 the rows ``<= edges[0]``).

    Args:
        reference: the reference window's histogram.
        current: the current window's histogram.
        levels: quantile levels per window (at most about ``2 * levels`` groups).

    Returns:
        ``(edges, reference counts, current counts)``, empty when both windows are.

    Raises:
        ValueError: ``levels < 1``.

    Example:
        >>> ref = LogHistogram.from_values([1, 1, 2, 3, 4, 5, 6, 7])
        >>> cur = LogHistogram.from_values([5, 6, 7, 8])
        >>> [a.tolist() for a in drift_bins(ref, cur, levels=2)]
        [[3.0, 6.0, 7.0, 8.0], [4.0, 3.0, 1.0, 0.0], [0.0, 2.0, 1.0, 1.0]]
    """
    if levels < 1:
        raise ValueError("levels must be >= 1")
    index, ref, cur, _, vmax = align_histograms(reference, current)
    if index.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    cut = np.zeros(index.size, dtype=bool)
    cut[-1] = True
    for counts in (ref, cur):
        total = int(counts.sum())
        if total > 0:
            passed = np.cumsum(counts) * levels // total  # levels at or below each bin's top
            cut |= np.diff(passed, prepend=0) > 0
    group = np.r_[0, np.cumsum(cut)[:-1]]
    size = int(group[-1]) + 1
    edges = np.maximum.reduceat(vmax, np.flatnonzero(np.diff(group, prepend=-1)))
    ref_g = np.bincount(group, weights=ref, minlength=size).astype(float)
    cur_g = np.bincount(group, weights=cur, minlength=size).astype(float)
    return edges.astype(float), ref_g, cur_g


__all__ = [
    "LOG_RATIO",
    "NONPOSITIVE_BIN",
    "RATIO",
    "LogHistogram",
    "align_histograms",
    "bin_edges",
    "bin_index",
    "bin_sql",
    "drift_bins",
    "merge_histograms",
    "quantile_by_group",
]
