"""strategies.routing and the paired DR gain: checked against brute force and row-level numpy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from strategies.objective import Objective
from strategies.offpolicy import aggregate_logged, dr_difference
from strategies.routing import (
    CannotRoute,
    ContextArmStats,
    RoutingObjective,
    RoutingPolicy,
    learn_routing,
    shrink,
)


def _stats(context: str, arm: str, q: np.ndarray, cost: float = 0.0) -> ContextArmStats:
    return ContextArmStats(
        context=context,
        arm=arm,
        n=float(q.size),
        quality_sum=float(q.sum()),
        quality_sum_squares=float((q**2).sum()),
        cost_sum=cost * q.size,
        cost_sum_squares=cost * cost * q.size,
    )


def test_shrink_matches_the_normal_normal_formula_and_pulls_thin_groups_harder() -> None:
    means = np.array([0.60, 0.70, 0.90])
    variances = np.array([0.0001, 0.0001, 0.01])  # the last group is thin
    post, post_var, tau2 = shrink(means, variances)
    w = 1 / variances
    pooled = (w * means).sum() / w.sum()
    expected_tau2 = max(np.var(means, ddof=1) - variances.mean(), 0.0)
    assert tau2 == pytest.approx(expected_tau2)
    factor = tau2 / (tau2 + variances)
    np.testing.assert_allclose(post, pooled + factor * (means - pooled))
    pulled = np.abs(post - means)
    assert pulled[2] > 10 * pulled[0]
    assert np.all(post_var <= variances + 1e-12)
    # no between-group spread beyond noise: everyone gets the pooled mean
    flat, _, tau0 = shrink(np.array([0.5, 0.5001, 0.4999]), np.full(3, 0.01))
    assert tau0 == 0.0 and np.allclose(flat, flat[0])


def test_budget_lp_matches_a_brute_force_grid_search() -> None:
    rng = np.random.default_rng(4)
    contexts, arms = ["a", "b", "c"], ["x", "y"]
    quality = {(c, a): float(rng.uniform(0.5, 0.9)) for c in contexts for a in arms}
    cost = {"x": 0.01, "y": 0.001}
    data = [
        ContextArmStats(
            context=c,
            arm=a,
            n=1e6,
            quality_sum=1e6 * quality[c, a],
            quality_sum_squares=1e6 * quality[c, a] ** 2,
            cost_sum=1e6 * cost[a],
            cost_sum_squares=1e6 * cost[a] ** 2,
        )
        for c in contexts
        for a in arms
    ]
    shares = {"a": 0.5, "b": 0.3, "c": 0.2}
    cap = 0.004
    objective = RoutingObjective(kind="max_quality", max_cost_per_request=cap)
    policy = learn_routing(data, objective=objective, shares=shares, cost_z=0.0)
    assert isinstance(policy, RoutingPolicy) and policy.feasible
    assert policy.expected_cost <= cap + 1e-9
    grid = np.linspace(0, 1, 41)
    best = -math.inf
    for xa, xb, xc in itertools.product(grid, grid, grid):
        x = {"a": xa, "b": xb, "c": xc}  # share of arm "x"
        spend = sum(shares[c] * (x[c] * cost["x"] + (1 - x[c]) * cost["y"]) for c in contexts)
        if spend <= cap:
            value = sum(
                shares[c] * (x[c] * quality[c, "x"] + (1 - x[c]) * quality[c, "y"])
                for c in contexts
            )
            best = max(best, value)
    # shrinkage moves 1e6-row means by < 1e-6: the LP is at least as good as the grid's best
    assert policy.expected_quality >= best - 1e-6
    assert policy.expected_quality - best < 0.02


def test_infeasible_budget_returns_the_cheapest_mix_and_says_so() -> None:
    q = np.full(500, 0.8)
    data = [_stats("a", "x", q, 0.01), _stats("a", "y", q - 0.1, 0.005)]
    objective = RoutingObjective(kind="max_quality", max_cost_per_request=0.001)
    policy = learn_routing(data, objective=objective)
    assert isinstance(policy, RoutingPolicy)
    assert not policy.feasible
    assert policy.rows["a"]["y"] == pytest.approx(1.0)
    assert any("no mix meets" in r for r in policy.reasons)


def test_posterior_weights_drop_a_clearly_worse_arm_and_keep_a_proven_better_one() -> None:
    rng = np.random.default_rng(1)
    good = rng.normal(0.8, 0.1, 2000)
    bad = rng.normal(0.6, 0.1, 2000)
    close = rng.normal(0.801, 0.1, 40)
    data = [
        _stats("clear", "good", good),
        _stats("clear", "bad", bad),
        _stats("unsure", "good", rng.normal(0.8, 0.1, 40)),
        _stats("unsure", "bad", close),
    ]
    objective = RoutingObjective(kind="reward")
    policy = learn_routing(data, objective=objective, floor=0.01, seed=3)
    assert isinstance(policy, RoutingPolicy)
    assert policy.rows["clear"]["good"] == pytest.approx(0.99)  # only the floor explores
    assert policy.rows["clear"]["bad"] == pytest.approx(0.01)
    assert 0.05 < policy.rows["unsure"]["bad"] < 0.95  # uncertain: the posterior splits
    assert learn_routing(data[:1], objective=objective) == CannotRoute(
        reasons=("1 arm(s) with logged rewards: nothing to route",)
    )


def test_objective_conversion_uses_the_preset_scales() -> None:
    objective = Objective.from_preset("quality-focused")
    routing = RoutingObjective.from_objective(objective)
    w = objective.weights
    assert routing.coefficients() == pytest.approx(
        (w.quality, -w.cost / w.cost_scale_usd, -w.latency / w.latency_scale_ms, -w.errors)
    )
    assert routing.name == "quality-focused"
    capped = RoutingObjective.from_objective(
        Objective.max_quality(monthly_budget_usd=100.0), max_cost_per_request=0.002
    )
    assert capped.kind == "max_quality" and capped.max_cost_per_request == 0.002
    with pytest.raises(ValueError, match="cost cap"):
        RoutingObjective.from_objective(Objective.max_quality(monthly_budget_usd=100.0))


def test_paired_dr_gain_equals_the_row_level_computation() -> None:
    rng = np.random.default_rng(9)
    n = 5000
    cells = rng.choice(["p", "q"], n)
    arms = rng.choice(["a", "b"], n, p=[0.3, 0.7])
    prop = np.where(arms == "a", 0.3, 0.7)
    reward = (
        np.where(arms == "a", 0.7, 0.6) + np.where(cells == "q", 0.1, 0) + rng.normal(0, 0.1, n)
    )
    logged = aggregate_logged(cells, arms, reward, prop)
    cand = {"p": {"a": 1.0}, "q": {"a": 0.5, "b": 0.5}}
    base = {"*": {"b": 1.0}}
    est = dr_difference(logged, cand, base, level=0.9)
    assert est is not None
    # row level: rhat = mean reward per (cell, arm); DR term per row for each policy
    rhat = {(c, a): reward[(cells == c) & (arms == a)].mean() for c in "pq" for a in "ab"}

    def pi(policy: dict[str, dict[str, float]], c: str, a: str) -> float:
        return policy.get(c, policy.get("*", {})).get(a, 0.0)

    terms = np.array(
        [
            sum((pi(cand, c, x) - pi(base, c, x)) * rhat[c, x] for x in "ab")
            + (pi(cand, c, a) - pi(base, c, a)) * (r - rhat[c, a]) / p
            for c, a, r, p in zip(cells, arms, reward, prop, strict=True)
        ]
    )
    assert est.value == pytest.approx(terms.mean())
    se = terms.std(ddof=1) / math.sqrt(n)
    assert est.se == pytest.approx(se)
    z = stats.norm.ppf(0.95)
    assert est.lower == pytest.approx(terms.mean() - z * se)
