"""The objective: presets, constrained forms, intervals from sufficient statistics, config."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from strategies.objective import Objective, monthly_from_daily, objective_from_config
from strategies.search import PRESETS, ConfigStats


def _cfg(
    key: str, q: float, cost: float, *, n: int = 3000, seed: int = 0, lat: float = 900.0
) -> ConfigStats:
    rng = np.random.default_rng(seed)
    return ConfigStats.from_samples(
        key,
        quality=np.clip(rng.normal(q, 0.15, n), 0, 1),
        cost=rng.gamma(4.0, cost / 4.0, n),
        latency=rng.lognormal(np.log(lat), 0.3, n),
        success=rng.random(n) > 0.01,
    )


def test_presets_are_the_issue_weights_with_explicit_scales() -> None:
    expected = {
        "quality-focused": (0.8, 0.15, 0.05),
        "balanced": (0.6, 0.3, 0.1),
        "cost-focused": (0.4, 0.5, 0.1),
        "latency-focused": (0.4, 0.3, 0.3),
    }
    for name, (wq, wc, wl) in expected.items():
        w = Objective.from_preset(name).weights
        assert (w.quality, w.cost, w.latency) == (wq, wc, wl)
        assert w is PRESETS[name]  # one table, one spelling
        assert w.cost_scale_usd > 0 and w.latency_scale_ms > 0


def test_reward_interval_matches_delta_method_by_hand() -> None:
    s = _cfg("a", 0.8, 0.01)
    obj = Objective.from_preset("quality-focused")
    sc = obj.score(s)
    w = obj.weights
    q_se = np.sqrt(s.quality_sum_squares / s.quality_n - s.quality_mean**2) / np.sqrt(s.quality_n)
    # by hand: independent terms (sample variance with n-1 as in ConfigStats)
    se = math.sqrt(
        (w.quality * s.quality_se) ** 2
        + (w.cost / w.cost_scale_usd * s.cost_se) ** 2
        + (w.latency / w.latency_scale_ms * s.latency_p95_se) ** 2
        + (w.errors * s.error_rate_se) ** 2
    )
    assert s.quality_se == pytest.approx(q_se, rel=1e-3)
    assert sc.status == "ok" and sc.se == pytest.approx(se)
    z = sps.norm.ppf(0.975)
    assert sc.lower == pytest.approx(sc.value - z * se)
    assert sc.upper == pytest.approx(sc.value + z * se)
    assert sc.value == pytest.approx(w.score_stats(s))


def test_best_uses_the_lower_bound_not_the_mean() -> None:
    # "thin" has a higher mean on 30 requests; "solid" a slightly lower mean on 5,000.
    thin = _cfg("thin", 0.82, 0.001, n=30, seed=1)
    solid = _cfg("solid", 0.80, 0.001, n=5000, seed=2)
    obj = Objective.from_preset("balanced")
    assert obj.score(thin).value > obj.score(solid).value
    assert obj.best([thin, solid]).config_key == "solid"


def test_ties_go_to_the_cheaper() -> None:
    a = _cfg("pricey", 0.8, 0.01, seed=3)
    b = _cfg("cheap", 0.8, 0.002, seed=3)
    obj = Objective.max_quality(max_cost_per_request=0.05)  # quality only: identical draws tie
    choice = obj.best([a, b])
    assert choice.config_key == "cheap" and "cheaper" in choice.reason


def test_constraints_and_cannot_analyse() -> None:
    strong, weak = _cfg("strong", 0.88, 0.012, seed=4), _cfg("weak", 0.70, 0.001, seed=5)
    capped = Objective.max_quality(max_cost_per_request=0.005)
    assert capped.best([strong, weak]).config_key == "weak"
    s = capped.score(strong)
    assert not s.feasible and "cap" in s.reason
    budget = Objective.max_quality(monthly_budget_usd=100.0)
    assert budget.cost_cap(monthly_from_daily(1000)) == pytest.approx(100 / 30_000)
    assert budget.score(weak).reason.startswith("monthly budget given but")
    floor = Objective.min_cost(quality_floor=0.8)
    assert floor.best([strong, weak]).config_key == "strong"
    assert Objective.min_cost(quality_floor=0.95).best([strong, weak]).status == "cannot_analyse"
    tiny = _cfg("tiny", 0.9, 0.001, n=5)
    sc = Objective.from_preset().score(tiny)
    assert sc.status == "cannot_analyse" and "only 5 requests" in sc.reason
    assert math.isnan(sc.lower)


def test_validation() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        Objective.from_preset("cheap")
    with pytest.raises(ValueError, match="exactly one"):
        Objective.max_quality()
    with pytest.raises(ValueError, match="takes no constraint"):
        Objective(kind="reward", quality_floor=0.5)
    with pytest.raises(ValueError, match="level"):
        Objective.from_preset(level=1.2)


def test_config_defaults_and_per_use_case_overrides() -> None:
    section = {
        "preset": "balanced",
        "level": 0.9,
        "use_cases": {
            "my-bot": {"preset": "quality-focused"},
            "cheap-bot": {"kind": "min_cost", "quality_floor": 0.7},
            "tuned": {"weights": {"cost": 0.0}},
        },
    }
    assert objective_from_config(section, "other").name == "balanced"
    mine = objective_from_config(section, "my-bot")
    assert mine.name == "quality-focused" and mine.level == 0.9
    cheap = objective_from_config(section, "cheap-bot")
    assert cheap.kind == "min_cost" and "quality >= 0.7" in cheap.describe()
    tuned = objective_from_config(section, "tuned")
    assert tuned.name == "custom" and tuned.weights.cost == 0.0
    assert objective_from_config(None).name == "balanced"
    with pytest.raises(ValueError, match="unknown keys"):
        objective_from_config({"preset": "balanced", "budget": 3})
    with pytest.raises(ValueError, match="takes no"):
        objective_from_config({"quality_floor": 0.5})


def test_per_request_reward_averages_to_the_reward_of_means() -> None:
    rng = np.random.default_rng(7)
    q, c, lat = rng.random(100), rng.random(100) * 0.01, rng.random(100) * 2000
    err = (rng.random(100) < 0.1).astype(float)
    obj = Objective.from_preset("cost-focused")
    w = obj.weights
    r = obj.per_request_reward(quality=q, cost=c, latency_ms=lat, error=err)
    assert r.mean() == pytest.approx(w.score(q.mean(), c.mean(), lat.mean(), err.mean()), rel=1e-9)
