"""strategies.budget: month-end forecast intervals and the budget-constrained traffic mix."""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from strategies.budget import Candidate, forecast_month_spend, optimize_traffic_mix


def test_constant_spend_forecasts_exactly() -> None:
    f = forecast_month_spend(np.full(12, 40.0), days_in_month=30)
    assert f.month_to_date == pytest.approx(480.0)
    assert f.forecast_total == pytest.approx(1200.0)
    assert f.lower == pytest.approx(1200.0) and f.upper == pytest.approx(1200.0)
    assert f.days_remaining == 18


def test_mean_model_interval_matches_the_t_formula() -> None:
    spend = np.array([10.0, 12.0, 9.0, 11.0, 13.0, 10.0, 8.0])
    f = forecast_month_spend(spend, days_in_month=30, window=5, level=0.9)
    recent = spend[-5:]
    m = 23
    half = stats.t.ppf(0.95, 4) * recent.std(ddof=1) * math.sqrt(m + m * m / 5)
    assert f.forecast_total == pytest.approx(spend.sum() + m * recent.mean())
    assert f.upper - f.forecast_total == pytest.approx(half)
    assert f.window_days == 5


def test_trend_interval_matches_statsmodels_prediction_of_the_sum() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(14.0)
    spend = 50 + 2.0 * t + rng.normal(0, 3, 14)
    f = forecast_month_spend(spend, days_in_month=31, method="trend", window=14, level=0.9)
    x = sm.add_constant(t)
    fit = sm.OLS(spend, x).fit()
    future = np.arange(14.0, 31.0)
    x_sum = np.array([[future.size, future.sum()]])
    pred = fit.get_prediction(x_sum)
    var_sum = float(pred.se_mean[0]) ** 2 + future.size * fit.scale
    half = stats.t.ppf(0.95, fit.df_resid) * math.sqrt(var_sum)
    assert f.forecast_total == pytest.approx(spend.sum() + float(pred.predicted_mean[0]))
    assert f.upper - f.forecast_total == pytest.approx(half, rel=1e-9)


@pytest.mark.parametrize("method", ["mean", "trend"])
def test_forecast_interval_covers_the_realised_total_near_nominal(
    method: Literal["mean", "trend"],
) -> None:
    rng = np.random.default_rng(11)
    reps, covered = 1500, 0
    for _ in range(reps):
        drift = 0.0 if method == "mean" else 1.5
        days = 100 + drift * np.arange(30) + rng.normal(0, 15, 30)
        f = forecast_month_spend(days[:16], days_in_month=30, method=method, window=16, level=0.9)
        covered += f.lower <= days.sum() <= f.upper
    assert 0.87 <= covered / reps <= 0.93


def test_too_few_days_give_no_interval_but_a_reason() -> None:
    f = forecast_month_spend([25.0], days_in_month=30)
    assert math.isinf(f.upper) and f.lower == pytest.approx(25.0)
    assert f.forecast_total == pytest.approx(750.0)
    assert "no interval" in f.reason


def test_bad_spend_is_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        forecast_month_spend([1.0, -2.0], days_in_month=30)
    with pytest.raises(ValueError, match="unknown forecast method"):
        forecast_month_spend([1.0], days_in_month=30, method="arima")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more elapsed days"):
        forecast_month_spend(np.ones(31), days_in_month=30)


CANDIDATES = [
    Candidate("cheap", 0.62, 0.0010, 800.0),
    Candidate("mid", 0.74, 0.0040, 1500.0),
    Candidate("best", 0.83, 0.0120, 2500.0),
]


def _grid_best(cands: list[Candidate], *, requests: float, budget: float, floor: float) -> float:
    best = -math.inf
    steps = np.round(np.arange(0, 1.0001, 0.01), 2)
    for a, b in itertools.product(steps, steps):
        c = round(1 - a - b, 2)
        w = np.array([a, b, c])
        if c < -1e-9 or np.any(w < floor - 1e-9):
            continue
        cost = requests * float(w @ [x.cost_per_request for x in cands])
        if cost <= budget + 1e-9:
            best = max(best, float(w @ [x.quality for x in cands]))
    return best


@pytest.mark.parametrize(("budget", "floor"), [(300.0, 0.0), (500.0, 0.05), (900.0, 0.1)])
def test_linprog_mix_matches_a_brute_force_grid(budget: float, floor: float) -> None:
    mix = optimize_traffic_mix(
        CANDIDATES,
        monthly_requests=60_000,
        budget=budget,
        latency_ceiling_ms=None,
        min_share=floor,
    )
    assert mix.feasible and mix.status == "optimal"
    w = np.array([mix.weights[c.config_id] for c in CANDIDATES])
    assert w.sum() == pytest.approx(1.0) and np.all(w >= floor - 1e-9)
    assert mix.expected_monthly_cost is not None and mix.expected_quality is not None
    assert mix.expected_monthly_cost <= budget + 1e-6
    grid = _grid_best(CANDIDATES, requests=60_000, budget=budget, floor=floor)
    # The LP optimum is at least the best grid point and within one grid step of it.
    assert grid - 1e-9 <= mix.expected_quality <= grid + 0.01 * (0.83 - 0.62) + 1e-9


def test_infeasible_budget_returns_the_cheapest_mix_and_its_shortfall() -> None:
    mix = optimize_traffic_mix(
        CANDIDATES, monthly_requests=60_000, budget=20.0, latency_ceiling_ms=None, min_share=0.1
    )
    assert not mix.feasible and mix.status == "over_budget"
    assert mix.weights == pytest.approx({"cheap": 0.8, "mid": 0.1, "best": 0.1})
    cheapest_cost = 60_000 * (0.8 * 0.001 + 0.1 * 0.004 + 0.1 * 0.012)
    assert mix.expected_monthly_cost == pytest.approx(cheapest_cost)
    assert mix.shortfall == pytest.approx(cheapest_cost - 20.0)
    assert "over budget" in mix.reason


def test_latency_ceiling_admits_candidates_and_explains_exclusions() -> None:
    mix = optimize_traffic_mix(
        CANDIDATES, monthly_requests=1000, budget=1e6, latency_ceiling_ms=2000, min_share=0.0
    )
    assert set(mix.weights) == {"cheap", "mid"}
    assert mix.weights["mid"] == pytest.approx(1.0)
    assert "best" in mix.excluded and "ceiling" in mix.excluded["best"]
    none = optimize_traffic_mix(
        CANDIDATES, monthly_requests=1000, budget=1e6, latency_ceiling_ms=10, min_share=0.0
    )
    assert none.status == "no_candidate" and not none.feasible and none.weights == {}


def test_floor_larger_than_an_equal_split_is_capped() -> None:
    mix = optimize_traffic_mix(
        CANDIDATES, monthly_requests=1000, budget=1e6, latency_ceiling_ms=None, min_share=0.5
    )
    assert mix.weights == pytest.approx({"cheap": 1 / 3, "mid": 1 / 3, "best": 1 / 3})
