from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from strategies.experiments import MeanStats, ProportionStats
from strategies.rollout_guard import RolloutGuard


def _night(
    rng: np.random.Generator,
    n: int,
    quality: tuple[float, float],
    error: tuple[float, float],
    latency: tuple[float, float],
) -> dict[str, MeanStats | ProportionStats]:
    q = [rng.normal(m, 0.15, n).clip(0, 1) for m in quality]
    e = [rng.random(n) < p for p in error]
    lat = [rng.lognormal(np.log(m), 0.3, n) for m in latency]
    return {
        "quality": MeanStats(
            n=[n, n], sum=[x.sum() for x in q], sum_squares=[(x * x).sum() for x in q]
        ),
        "errors": ProportionStats(n=[n, n], successes=[int(x.sum()) for x in e]),
        "latency": MeanStats(
            n=[n, n], sum=[x.sum() for x in lat], sum_squares=[(x * x).sum() for x in lat]
        ),
    }


def test_equal_configurations_hold_with_enough_traffic() -> None:
    night = _night(np.random.default_rng(1), 20_000, (0.7, 0.7), (0.002, 0.002), (900, 900))
    judgement = RolloutGuard().judge(**night)  # type: ignore[arg-type]
    assert judgement.held is True
    assert {f.verdict for f in judgement.findings} == {"held"}


def test_clear_quality_harm_fails() -> None:
    night = _night(np.random.default_rng(2), 5_000, (0.7, 0.6), (0.002, 0.002), (900, 900))
    judgement = RolloutGuard().judge(**night)  # type: ignore[arg-type]
    assert judgement.held is False
    assert "quality" in judgement.reason


def test_too_little_traffic_is_undecided_not_a_verdict() -> None:
    night = _night(np.random.default_rng(3), 50, (0.7, 0.2), (0.0, 0.5), (900, 5000))
    judgement = RolloutGuard(min_requests=200).judge(**night)  # type: ignore[arg-type]
    assert judgement.held is None
    assert "fewer than 200" in judgement.reason


def test_quality_interval_matches_scipy_welch_on_raw_samples() -> None:
    rng = np.random.default_rng(4)
    incumbent, candidate = rng.normal(0.70, 0.15, 3_000), rng.normal(0.69, 0.2, 2_500)
    quality = MeanStats(
        n=[incumbent.size, candidate.size],
        sum=[incumbent.sum(), candidate.sum()],
        sum_squares=[(incumbent**2).sum(), (candidate**2).sum()],
    )
    errors = ProportionStats(n=[3_000, 2_500], successes=[3, 3])
    latency = MeanStats(n=[3_000, 2_500], sum=[2.7e6, 2.25e6], sum_squares=[2.5e9, 2.1e9])
    finding = RolloutGuard().judge(quality=quality, errors=errors, latency=latency).findings[0]
    ci = stats.ttest_ind(candidate, incumbent, equal_var=False).confidence_interval(0.95)
    assert finding.ci_low == pytest.approx(ci.low, abs=1e-10)
    assert finding.ci_high == pytest.approx(ci.high, abs=1e-10)
