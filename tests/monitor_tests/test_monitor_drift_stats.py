"""Drift statistics from binned counts against scipy on the raw samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from strategies.monitor.drift import (
    DriftThresholds,
    categorical_drift,
    ks_from_binned,
    merge_bins,
    numeric_drift,
    psi,
    psi_band,
    wasserstein_from_binned,
)


def _bin(ref: np.ndarray, cur: np.ndarray, n_bins: int = 100) -> tuple[np.ndarray, ...]:
    """What the warehouse SQL does: quantile edges of both windows + min/max, (lo, hi] bins."""
    levels = np.arange(1, n_bins) / n_bins
    inner = np.r_[
        np.quantile(ref, levels, method="inverted_cdf"),
        np.quantile(cur, levels, method="inverted_cdf"),
    ]
    both = np.r_[ref, cur]
    edges = np.unique(np.r_[inner, both.min(), both.max()])
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=edges.size)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=edges.size)
    return edges, ref_counts.astype(float), cur_counts.astype(float)


@pytest.mark.parametrize(
    ("shift", "scale", "seed"), [(0.0, 1.0, 1), (0.2, 1.0, 2), (0.5, 1.3, 3), (1.0, 0.7, 4)]
)
def test_binned_ks_and_wasserstein_match_scipy_on_raw_samples(
    shift: float, scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.lognormal(6.0, 0.5, 8000)
    cur = rng.lognormal(6.0 + shift, 0.5 * scale, 2000)
    edges, r, c = _bin(ref, cur)
    d, p = ks_from_binned(r, c)
    exact = stats.ks_2samp(ref, cur, method="asymp")
    # the binned sup is taken at bin edges only: a lower bound, short by < one bin's mass
    assert d <= exact.statistic + 1e-12
    assert exact.statistic - d < 0.011
    if exact.pvalue > 1e-6:
        assert p == pytest.approx(exact.pvalue, rel=0.6)
    w = wasserstein_from_binned(edges, r, c)
    exact_w = stats.wasserstein_distance(ref, cur)
    assert w == pytest.approx(exact_w, rel=0.05, abs=0.01 * float(np.std(ref)))


def test_ks_on_discrete_tokens_is_exact_at_every_value() -> None:
    rng = np.random.default_rng(11)
    ref = rng.poisson(20, 5000)
    cur = rng.poisson(23, 1000)
    edges, r, c = _bin(ref, cur)
    d, _ = ks_from_binned(r, c)
    # in the body of a discrete field every value is an edge: the gap is read exactly there
    values = np.arange(0, 60)
    gaps = np.abs(
        np.searchsorted(np.sort(ref), values, "right") / ref.size
        - np.searchsorted(np.sort(cur), values, "right") / cur.size
    )
    assert values[np.argmax(gaps)] in edges
    assert d == pytest.approx(stats.ks_2samp(ref, cur, method="asymp").statistic, abs=1e-12)


def test_psi_matches_the_formula_and_bands() -> None:
    ref = np.array([25.0, 25.0, 25.0, 25.0])
    cur = np.array([10.0, 20.0, 30.0, 40.0])
    p, q = ref / ref.sum(), cur / cur.sum()
    assert psi(ref, cur) == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    assert psi(ref, ref) == 0.0
    assert [psi_band(v) for v in (0.05, 0.1, 0.2, 0.25, 1.0)] == [
        "stable",
        "moderate",
        "moderate",
        "significant",
        "significant",
    ]


def test_merge_bins_keeps_totals_and_equalises_reference_mass() -> None:
    rng = np.random.default_rng(5)
    ref = rng.integers(50, 150, 100).astype(float)
    cur = rng.integers(0, 40, 100).astype(float)
    mr, mc = merge_bins(ref, cur, 10)
    assert mr.sum() == ref.sum() and mc.sum() == cur.sum()
    assert len(mr) == 10
    assert np.all(np.abs(mr / mr.sum() - 0.1) < 0.05)


def test_numeric_drift_flags_a_shift_and_not_a_same_distribution_sample() -> None:
    rng = np.random.default_rng(21)
    ref = rng.normal(100, 10, 5000)
    same = numeric_drift("x", *_bin(ref, rng.normal(100, 10, 1000)))
    moved = numeric_drift("x", *_bin(ref, rng.normal(115, 10, 1000)))
    assert same.analysable and not same.drift_detected and same.psi_band == "stable"
    assert moved.drift_detected and moved.psi_band == "significant"
    assert moved.wasserstein == pytest.approx(15, rel=0.1)
    assert moved.wasserstein_scaled == pytest.approx(15 / (2 * 0.6745 * 10), rel=0.15)


def test_empty_and_tiny_windows_are_not_analysable_with_a_reason() -> None:
    empty = numeric_drift("x", np.zeros(0), np.zeros(0), np.zeros(0))
    assert not empty.analysable and not empty.drift_detected and "too few rows" in empty.reason
    tiny = numeric_drift(
        "x",
        np.array([1.0, 2.0]),
        np.array([3.0, 2.0]),
        np.array([1.0, 0.0]),
        thresholds=DriftThresholds(min_rows=5),
    )
    assert not tiny.analysable and tiny.psi is None


def test_constant_field_is_stable_not_an_error() -> None:
    result = numeric_drift("max_tokens", np.array([512.0]), np.array([400.0]), np.array([90.0]))
    assert result.analysable and not result.drift_detected and result.psi == 0.0


def test_categorical_drift_matches_scipy_chi2_contingency() -> None:
    ref = np.array([600.0, 300.0, 100.0])
    cur = np.array([150.0, 150.0, 200.0])
    result = categorical_drift("model", ["a", "b", "c"], ref, cur)
    chi2, p, dof, _ = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert result.chi2 == pytest.approx(chi2) and result.chi2_pvalue == pytest.approx(p)
    assert result.dof == dof == 2
    assert result.cramers_v == pytest.approx(np.sqrt(chi2 / 1500))
    assert result.drift_detected


def test_categorical_new_category_and_single_category() -> None:
    new = categorical_drift(
        "language", ["en", "ja"], np.array([1000.0, 0.0]), np.array([50.0, 50.0])
    )
    assert new.drift_detected and new.psi is not None and new.psi > 0.25
    single = categorical_drift("model", ["m", "n"], np.array([500.0, 0.0]), np.array([80.0, 0.0]))
    assert single.analysable and not single.drift_detected and single.dof == 0


def test_bad_counts_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        psi([1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="same bins"):
        psi([1.0, 1.0], [1.0, 1.0, 1.0])
