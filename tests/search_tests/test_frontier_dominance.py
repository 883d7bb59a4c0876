"""Pareto frontier: dominance with and without noise, standard errors, constrained selection."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from strategies.frontier import analyse_frontier, dominance_matrix
from strategies.search import PRESETS, ConfigStats, RewardWeights, weights_for


def _cfg(
    key: str, q: float, cost: float, lat: float, *, n: int = 400, seed: int = 0, q_sd: float = 0.1
) -> ConfigStats:
    rng = np.random.default_rng(seed)
    return ConfigStats.from_samples(
        key,
        quality=q + q_sd * rng.standard_normal(n),
        cost=np.full(n, cost),
        latency=lat * rng.lognormal(0.0, 0.3, n),
        success=np.ones(n, bool),
    )


def _plain_pareto(points: np.ndarray) -> set[int]:
    """Textbook filter (quality max, cost min, latency min) written independently."""
    keep = set()
    for j, b in enumerate(points):
        dominated = False
        for i, a in enumerate(points):
            if i == j:
                continue
            ge = a[0] >= b[0] and a[1] <= b[1] and a[2] <= b[2]
            gt = a[0] > b[0] or a[1] < b[1] or a[2] < b[2]
            dominated |= ge and gt
        if not dominated:
            keep.add(j)
    return keep


def test_zero_z_equals_the_textbook_pareto_filter_on_random_points() -> None:
    rng = np.random.default_rng(42)
    for _ in range(20):
        pts = np.round(rng.random((25, 3)), 1)  # rounding creates ties on purpose
        dom = dominance_matrix(pts, np.full_like(pts, 0.01), z=0.0, maximize=(True, False, False))
        assert set(np.flatnonzero(~dom.any(axis=0))) == _plain_pareto(pts)


def test_noise_keeps_a_config_whose_lead_is_within_noise() -> None:
    # "worse" is below "better" on quality by less than the noise, equal on cost and latency.
    better = _cfg("better", 0.800, 0.002, 900, n=100, seed=1)
    worse = ConfigStats(
        **{
            **better.__dict__,
            "config_key": "worse",
            "quality_sum": better.quality_sum - 100 * 0.005,
        }
    )
    noisy = analyse_frontier([better, worse], z=1.96)
    assert {p.config_key for p in noisy.frontier} == {"better", "worse"}
    plain = analyse_frontier([better, worse], z=0.0)
    assert [p.config_key for p in plain.frontier] == ["better"]
    assert plain.point("worse").dominated_by == ("better",)  # type: ignore[union-attr]
    # with a difference far beyond noise, z = 1.96 dominates too
    far = ConfigStats(
        **{**better.__dict__, "config_key": "far", "quality_sum": better.quality_sum - 100 * 0.2}
    )
    assert analyse_frontier([better, far], z=1.96).point("far").dominated_by == ("better",)  # type: ignore[union-attr]


def test_significance_uses_combined_standard_errors_exactly() -> None:
    means = np.array([[0.80, 1.0, 1.0], [0.78, 1.0, 1.0]])
    ses = np.array([[0.01, 0.0, 0.0], [0.01, 0.0, 0.0]])
    gap_z = 0.02 / np.sqrt(2 * 0.01**2)  # 1.414...
    assert dominance_matrix(means, ses, z=gap_z - 1e-6, maximize=(True, False, False))[0, 1]
    assert not dominance_matrix(means, ses, z=gap_z + 1e-6, maximize=(True, False, False))[0, 1]


def test_standard_errors_match_scipy_and_the_p95_approximation_is_calibrated() -> None:
    rng = np.random.default_rng(7)
    q = rng.beta(8, 2, 500)
    cost = rng.gamma(3, 0.001, 500)
    lat = rng.lognormal(np.log(1200), 0.5, 500)
    s = ConfigStats.from_samples("k", quality=q, cost=cost, latency=lat, success=np.ones(500, bool))
    assert s.quality_se == pytest.approx(sps.sem(q))
    assert s.cost_se == pytest.approx(sps.sem(cost))
    # Monte Carlo spread of the sample p95 of the same lognormal, n = 500
    p95s = np.quantile(rng.lognormal(np.log(1200), 0.5, (4000, 500)), 0.95, axis=1)
    assert s.latency_p95_se == pytest.approx(float(np.std(p95s)), rel=0.25)


def test_selection_respects_constraints_and_presets() -> None:
    configs = [
        _cfg("premium", 0.90, 0.0200, 4000, seed=1),
        _cfg("mid", 0.82, 0.0040, 2500, seed=2),
        _cfg("cheap", 0.70, 0.0004, 900, seed=3),
    ]
    quality = analyse_frontier(configs, weights=PRESETS["quality-focused"])
    cost = analyse_frontier(configs, weights=PRESETS["cost-focused"])
    assert quality.selection.config_key == "premium" and cost.selection.config_key == "cheap"
    floor = analyse_frontier(configs, weights=PRESETS["cost-focused"], quality_floor=0.8)
    assert floor.selection.config_key == "mid"
    assert floor.point("cheap").constraint_violations  # type: ignore[union-attr]
    ceiling = analyse_frontier(configs, weights=PRESETS["quality-focused"], latency_ceiling_ms=3000)
    assert ceiling.selection.config_key in {"mid", "cheap"}
    assert "premium" not in {p.config_key for p in ceiling.points if p.feasible}
    custom = analyse_frontier(
        configs, weights=weights_for("balanced", {"cost": 0.0, "latency": 0.0})
    )
    assert custom.selection.config_key == "premium"
    # the pick maximises the reward among feasible frontier points (brute force)
    for w in (
        RewardWeights(cost=c, latency=lat)
        for c, lat in itertools.product((0.0, 0.05, 0.3, 2.0), (0.0, 0.05, 0.3))
    ):
        result = analyse_frontier(configs, weights=w)
        assert result.selection.config_key == max(configs, key=w.score_stats).config_key


def test_no_feasible_and_no_data_are_explicit_results() -> None:
    configs = [_cfg("a", 0.7, 0.001, 900, seed=1), _cfg("b", 0.75, 0.002, 1200, seed=2)]
    none = analyse_frontier(configs, quality_floor=0.95)
    assert none.selection.status == "no_feasible" and none.selection.config_key is None
    assert "floor 0.95" in none.selection.reason
    thin = _cfg("thin", 0.9, 0.001, 500, n=20, seed=3)
    no_q = ConfigStats(**{**thin.__dict__, "config_key": "no-quality", "quality_n": 0, "n": 500})
    empty = analyse_frontier([thin, no_q], min_requests=100)
    assert empty.selection.status == "no_data" and empty.points == ()
    reasons = {e.config_key: e.reason for e in empty.excluded}
    assert "20 requests" in reasons["thin"] and "quality" in reasons["no-quality"]
    with pytest.raises(ValueError, match="z must be"):
        analyse_frontier(configs, z=-1.0)
