"""Distribution drift between a reference window and a current window, from binned counts.

Rows never reach Python: the warehouse counts each numeric field per day on fixed log-spaced
bins (daily rollups, :mod:`strategies.rollup_quantiles`), and a window's fine bins are merged into
drift bins cut at the percentiles of the reference window and of the current window, so that no
bin holds more than 1% of either (unless one fine bin does); categorical fields arrive as counts
per category. Everything here works on those counts.

The statistics on binned counts (PSI, KS, Wasserstein-1) and their stated approximations are in
:mod:`strategies.monitor.binned`; this module declares a drift from them.

Large windows make every tiny shift "significant", so a drift is *declared* only when an effect
size clears a bar as well: PSI in the significant band, or a test with p < alpha *and* KS D of at
least ``min_ks`` = 0.15 (numeric) or Cramér's V of at least ``min_cramers_v`` = 0.1 (categorical).
The KS bar sits above the sampling noise of D for a day of a few hundred calls (the 1% critical
value is about 0.1 at n = 300), so a small use case does not alarm on noise.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> ref, cur = rng.normal(0, 1, 5000), rng.normal(0.5, 1, 1000)
    >>> edges = np.quantile(np.r_[ref, cur], [0, *np.linspace(0.01, 0.99, 99), 1])
    >>> ref_counts = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges))
    >>> cur_counts = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges))
    >>> result = numeric_drift("x", edges, ref_counts, cur_counts)
    >>> result.drift_detected, result.psi_band
    (True, 'significant')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from strategies._checks import require_open_interval
from strategies.monitor.binned import (
    binned_quantile,
    counts_array,
    ks_from_binned,
    merge_bins,
    psi,
    wasserstein_from_binned,
)

PsiBand = Literal["stable", "moderate", "significant"]

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25


@dataclass(frozen=True)
class DriftThresholds:
    """When a drift is declared (see the module docstring)."""

    alpha: float = 0.01
    min_ks: float = 0.15
    min_cramers_v: float = 0.1
    psi_bins: int = 10
    psi_alert: float = PSI_SIGNIFICANT
    min_rows: int = 30
    psi_epsilon: float = 1e-4

    def __post_init__(self) -> None:
        require_open_interval("alpha", self.alpha, 0.0, 1.0)
        if self.psi_bins < 2 or self.min_rows < 1:
            raise ValueError("psi_bins must be >= 2 and min_rows >= 1")


@dataclass(frozen=True, kw_only=True)
class DriftResult:
    """Drift of one field of one use case; ``analysable`` is False with a ``reason`` otherwise."""

    feature: str
    kind: Literal["numeric", "categorical"]
    n_reference: int
    n_current: int
    analysable: bool
    drift_detected: bool
    reason: str
    psi: float | None = None
    psi_band: PsiBand | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    wasserstein: float | None = None
    wasserstein_scaled: float | None = None
    chi2: float | None = None
    chi2_pvalue: float | None = None
    dof: int | None = None
    cramers_v: float | None = None


def psi_band(value: float) -> PsiBand:
    """The conventional band of a population stability index.

    Args:
        value: a PSI.

    Returns:
        ``stable`` (< 0.1), ``moderate`` (< 0.25) or ``significant``.
    """
    if value < PSI_MODERATE:
        return "stable"
    if value < PSI_SIGNIFICANT:
        return "moderate"
    return "significant"


def _too_few_rows(
    feature: str, kind: Literal["numeric", "categorical"], n: int, m: int, th: DriftThresholds
) -> DriftResult:
    """The explicit "cannot analyse" result of a window below ``min_rows``."""
    reason = f"too few rows (reference {n}, current {m}; need {th.min_rows} each)"
    return _analysed(feature, kind, n, m, reasons=(), quiet=reason, analysable=False)


def _psi_reasons(value_psi: float, th: DriftThresholds) -> list[str]:
    """The PSI bar, the first of the reasons a drift is declared."""
    return [f"PSI {value_psi:.3f} >= {th.psi_alert}"] if value_psi >= th.psi_alert else []


def _analysed(
    feature: str,
    kind: Literal["numeric", "categorical"],
    n: int,
    m: int,
    *,
    reasons: Sequence[str],
    quiet: str,
    analysable: bool = True,
    **statistics: Any,
) -> DriftResult:
    """A result: a drift when there are ``reasons``, else the ``quiet`` reason."""
    return DriftResult(
        feature=feature,
        kind=kind,
        n_reference=n,
        n_current=m,
        analysable=analysable,
        drift_detected=bool(reasons),
        reason="; ".join(reasons) or quiet,
        **statistics,
    )


def numeric_drift(
    feature: str,
    edges: ArrayLike,
    reference: ArrayLike,
    current: ArrayLike,
    *,
    thresholds: DriftThresholds | None = None,
) -> DriftResult:
    """PSI, KS and Wasserstein of one numeric field; an explicit non-analysable result if empty.

    Args:
        feature: the field's name.
        edges: upper bin edges, ascending.
        reference: counts per bin, reference window.
        current: counts per bin, current window.
        thresholds: when a drift is declared (default :class:`DriftThresholds`).

    Returns:
        A :class:`DriftResult` (``analysable=False`` with a reason below ``min_rows``).
    """
    th = thresholds or DriftThresholds()
    ref = counts_array(reference, "reference")
    cur = counts_array(current, "current")
    e = np.asarray(edges, dtype=float)
    n, m = int(ref.sum()), int(cur.sum())
    if min(n, m) < th.min_rows:
        return _too_few_rows(feature, "numeric", n, m, th)
    if e.size < 2 or e[-1] == e[0]:
        # a single value in both windows: nothing moved
        return _analysed(
            feature,
            "numeric",
            n,
            m,
            reasons=(),
            quiet="constant field in both windows",
            psi=0.0,
            psi_band="stable",
            ks_statistic=0.0,
            ks_pvalue=1.0,
            wasserstein=0.0,
            wasserstein_scaled=0.0,
        )
    value_psi = psi(*merge_bins(ref, cur, th.psi_bins), epsilon=th.psi_epsilon)
    d, pvalue = ks_from_binned(ref, cur)
    w = wasserstein_from_binned(e, ref, cur)
    iqr = binned_quantile(e, ref, 0.75) - binned_quantile(e, ref, 0.25)
    scale = iqr if iqr > 0 else float(e[-1] - e[0])
    band = psi_band(value_psi)
    reasons = _psi_reasons(value_psi, th)
    if pvalue < th.alpha and d >= th.min_ks:
        reasons.append(f"KS D {d:.3f} >= {th.min_ks} with p {pvalue:.2g} < {th.alpha}")
    return _analysed(
        feature,
        "numeric",
        n,
        m,
        reasons=reasons,
        quiet=f"no drift (PSI {value_psi:.3f}, KS D {d:.3f})",
        psi=value_psi,
        psi_band=band,
        ks_statistic=d,
        ks_pvalue=pvalue,
        wasserstein=w,
        wasserstein_scaled=w / scale,
    )


def categorical_drift(
    feature: str,
    categories: Sequence[str],
    reference: ArrayLike,
    current: ArrayLike,
    *,
    thresholds: DriftThresholds | None = None,
) -> DriftResult:
    """Chi-square, Cramér's V and PSI of a categorical mix (counts aligned with ``categories``).

    Args:
        feature: the field's name.
        categories: the category labels.
        reference: counts per category, reference window.
        current: counts per category, current window.
        thresholds: when a drift is declared (default :class:`DriftThresholds`).

    Returns:
        A :class:`DriftResult` (``analysable=False`` with a reason below ``min_rows``).

    Raises:
        ValueError: the three sequences differ in length.
    """
    th = thresholds or DriftThresholds()
    ref = counts_array(reference, "reference")
    cur = counts_array(current, "current")
    if ref.shape != cur.shape or ref.size != len(categories):
        raise ValueError("categories, reference and current must have the same length")
    n, m = int(ref.sum()), int(cur.sum())
    if min(n, m) < th.min_rows:
        return _too_few_rows(feature, "categorical", n, m, th)
    seen = (ref + cur) > 0
    value_psi = psi(ref[seen], cur[seen], epsilon=th.psi_epsilon)
    if int(seen.sum()) < 2:
        return _analysed(
            feature,
            "categorical",
            n,
            m,
            reasons=(),
            quiet="a single category in both windows",
            psi=value_psi,
            psi_band=psi_band(value_psi),
            chi2=0.0,
            chi2_pvalue=1.0,
            dof=0,
            cramers_v=0.0,
        )
    table = np.vstack([ref[seen], cur[seen]])
    chi2, pvalue, dof, _ = stats.chi2_contingency(table, correction=False)
    cramers_v = math.sqrt(float(chi2) / (n + m))  # 2 x K table: min(r, c) - 1 = 1
    reasons = _psi_reasons(value_psi, th)
    if pvalue < th.alpha and cramers_v >= th.min_cramers_v:
        reasons.append(f"Cramér's V {cramers_v:.3f} >= {th.min_cramers_v} with p {pvalue:.2g}")
    return _analysed(
        feature,
        "categorical",
        n,
        m,
        reasons=reasons,
        quiet=f"no drift (PSI {value_psi:.3f}, V {cramers_v:.3f})",
        psi=value_psi,
        psi_band=psi_band(value_psi),
        chi2=float(chi2),
        chi2_pvalue=float(pvalue),
        dof=int(dof),
        cramers_v=cramers_v,
    )


__all__ = [
    "PSI_MODERATE",
    "PSI_SIGNIFICANT",
    "DriftResult",
    "DriftThresholds",
    "PsiBand",
    "categorical_drift",
    "ks_from_binned",
    "merge_bins",
    "numeric_drift",
    "psi",
    "psi_band",
    "wasserstein_from_binned",
]
