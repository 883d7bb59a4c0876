"""z-score, IQR and MAD anomaly rules against hand formulas and numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from strategies.monitor.anomaly import (
    AnomalyThresholds,
    anomaly_flags,
    detect_anomalies,
    iqr_distances,
    mad_scores,
    zscore_scores,
)


def test_scores_match_reference_formulas() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(10, 2, 14)
    x = np.array([10.0, 25.0, -3.0])
    z = zscore_scores(x, reference=ref)
    assert z == pytest.approx((x - ref.mean()) / ref.std(ddof=1))
    mad = stats.median_abs_deviation(ref)
    assert mad_scores(x, reference=ref) == pytest.approx(0.6745 * (x - np.median(ref)) / mad)
    q1, q3 = np.quantile(ref, [0.25, 0.75])
    d = iqr_distances(x, reference=ref)
    assert d[1] == pytest.approx((25 - q3) / (q3 - q1))
    assert d[2] == pytest.approx((-3 - q1) / (q3 - q1))


def test_a_spike_is_flagged_by_all_three_and_a_normal_day_by_none() -> None:
    ref = [0.80, 0.81, 0.79, 0.80, 0.82, 0.80, 0.79, 0.81, 0.80, 0.80, 0.81, 0.79, 0.80, 0.80]
    normal, spike = detect_anomalies([0.805, 0.50], reference=ref)
    assert not normal.is_anomaly and normal.methods == ()
    assert spike.is_anomaly and set(spike.methods) == {"zscore", "iqr", "mad"}


def test_robust_mad_resists_an_outlier_in_the_reference() -> None:
    ref = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 50.0]  # one polluted day
    (score,) = detect_anomalies([2.0], reference=ref, thresholds=AnomalyThresholds(min_votes=1))
    assert "mad" in score.methods  # the median / MAD barely move
    assert "zscore" not in score.methods  # the mean / std were dragged by the outlier


def test_constant_reference_uses_the_relative_floor() -> None:
    ref = [100.0] * 14
    small, big = detect_anomalies([101.0, 130.0], reference=ref)
    assert not small.is_anomaly  # 1% move under the 2% floor
    assert big.is_anomaly


def test_short_or_empty_reference_gives_no_verdict() -> None:
    assert detect_anomalies([1.0], reference=[1.0, 2.0]) == []
    assert detect_anomalies([], reference=list(range(20))) == []
    with pytest.raises(ValueError, match="finite"):
        detect_anomalies([float("nan")], reference=list(range(20)))


def test_anomaly_flags_index_into_the_series() -> None:
    x = np.r_[np.full(14, 5.0) + np.linspace(-0.1, 0.1, 14), [5.0, 9.0, 5.0]]
    assert anomaly_flags(x, reference_length=14) == [15]


def test_false_positive_rate_per_day_matches_the_documented_level() -> None:
    rng = np.random.default_rng(8)
    n = 5000
    ref = rng.normal(0, 1, (n, 14))
    x = rng.normal(0, 1, n)
    hits = sum(detect_anomalies([x[i]], reference=ref[i])[0].is_anomaly for i in range(n))
    assert hits / n < 0.006  # documented: about 0.1-0.3% per day and metric
