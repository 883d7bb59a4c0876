"""Regression: an early look with no events in one arm must not freeze the relative interval."""

from __future__ import annotations

import numpy as np

from strategies.experiments import ProportionStats, SequentialTest, cumulate


def test_zero_width_relative_interval_is_not_analysable_and_does_not_freeze_later_looks() -> None:
    # looks are cumulative: night 1 has no errors in treatment, later nights have some
    control = ProportionStats(
        n=np.array([200.0, 2_000.0, 6_000.0]), successes=np.array([3.0, 40.0, 120.0])
    )
    treated = ProportionStats(
        n=np.array([200.0, 2_000.0, 6_000.0]), successes=np.array([0.0, 38.0, 126.0])
    )
    looks = SequentialTest(alpha=0.05).compute(control.moments(), treated.moments())
    assert np.isnan(looks.relative_ci_low[0]) and np.isnan(looks.relative_ci_high[0])
    history = cumulate(looks)
    low, high = float(history.relative_ci_low[-1]), float(history.relative_ci_high[-1])
    assert high - low > 0.05  # a real interval, not the [-1, -1] of the first night
    assert low < float(looks.relative[-1]) < high
