"""Multiple-testing correction over a family of comparisons: Holm (FWER) and BH (FDR).

Why: a three-arm experiment with two secondary metrics makes six comparisons; at alpha = 0.05
each, the chance of at least one false winner is about 26%. Holm controls the family-wise error
rate under any dependence; Benjamini-Hochberg controls the false discovery rate (fine when a few
false leads are acceptable, e.g. exploratory metrics). Adjusted p-values equal
``statsmodels.stats.multitest.multipletests(p, method="holm" | "fdr_bh")``.

Vectorized along the last axis (one family per row); NaN p-values (not analysable) are left out
of the family and stay NaN.

Example:
    >>> adjust_pvalues([0.01, 0.04, 0.03], method="holm").round(3).tolist()
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from strategies.experiments.stats import FloatArray

METHODS: tuple[str, ...] = ("none", "holm", "bh")


def adjust_pvalues(p_values: ArrayLike, *, method: str = "holm") -> FloatArray:
    """Adjusted p-values, same shape as the input.

    Args:
        p_values: one family per row (last axis); NaN entries are left out and stay NaN.
        method: ``none``, ``holm`` or ``bh`` (Benjamini-Hochberg).
    """
    if method not in METHODS:
        raise ValueError(f"correction must be one of {METHODS}, got {method!r}")
    p = np.asarray(p_values, dtype=np.float64)
    if method == "none" or p.size == 0:
        return p.copy()
    squeeze = p.ndim == 1
    p2 = np.atleast_2d(p)
    valid = np.isfinite(p2)
    m = valid.sum(axis=-1, keepdims=True).astype(np.float64)
    order = np.argsort(np.where(valid, p2, np.inf), axis=-1, kind="stable")
    sorted_p = np.take_along_axis(np.where(valid, p2, np.inf), order, axis=-1)
    rank = np.arange(1, p2.shape[-1] + 1, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # excluded entries sort last as inf; masked below
        if method == "holm":
            adj = np.maximum.accumulate((m - rank + 1.0) * sorted_p, axis=-1)
        else:
            scaled = m / rank * sorted_p
            adj = np.minimum.accumulate(scaled[..., ::-1], axis=-1)[..., ::-1]
    adj = np.minimum(adj, 1.0)
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, axis=-1)
    out = np.where(valid, out, np.nan)
    return out[0] if squeeze else out


__all__ = ["METHODS", "adjust_pvalues"]
