"""Budget, bandits and off-policy evaluation against the simulator's ground truth."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tasks.allocation.bandits import bandit_allocation
from tasks.allocation.budget import budget_report
from tasks.allocation.offpolicy import evaluate_policy
from tasks.simulation.evaluation import simulator_regret
from tasks.simulation.generate import (
    SimulationSpec,
    ground_truth,
    simulate,
    simulate_config_traffic,
)
from tasks.simulation.world import USE_CASE_NAMES, exploration_configs, production_config
from tasks.warehouse.connection import connect

OPE_RPD = {"ticket-classify": 1500, "code-review": 1500}
START = dt.date(2026, 10, 1)


def _policies(truth: Any) -> list[dict[str, float]]:
    prod = truth.production_config_id
    others = [c.config_id for c in truth.configs if c.config_id != prod]
    return [
        {others[0]: 1.0},  # an exploration config alone: ESS ~ its logged count
        {prod: 0.5, others[1]: 0.5},
        {c.config_id: 1 / len(truth.configs) for c in truth.configs},
    ]


def test_offpolicy_intervals_cover_the_simulator_truth(load_table: Any) -> None:
    truth = ground_truth(SimulationSpec(seed=0, days=7, requests_per_day=OPE_RPD))
    covered = {"ips": 0, "snips": 0, "dr": 0}
    total = 0
    for seed in range(4):
        spec = SimulationSpec(seed=seed, days=7, requests_per_day=OPE_RPD, include_cost=True)
        con = connect(path=":memory:")
        load_table(con, simulate(spec))
        for use_case in OPE_RPD:
            uc = truth.use_cases[use_case]
            for policy in _policies(uc):
                value = uc.policy_value(policy)
                result = evaluate_policy(
                    con,
                    use_case=use_case,
                    policy=policy,
                    start=START,
                    end=START + dt.timedelta(days=6),
                )
                assert result.status == "ok", result.reasons
                est = result.estimate
                assert est.dr is not None and abs(est.dr.value - value) < 5 * est.dr.se
                total += 1
                for name in covered:
                    e = getattr(est, name)
                    covered[name] += e.lower <= value <= e.upper
        con.close()
    assert total == 24
    # nominal 95%: 24 intervals, at most three misses per estimator
    assert min(covered.values()) >= 21, covered


def test_thompson_closed_loop_on_simulated_traffic_beats_uniform(load_table: Any) -> None:
    """Each night: bandit weights from the warehouse -> simulator serves them -> ingest."""
    use_case, nights, per_night = "code-review", 8, 800
    spec = SimulationSpec(seed=5, days=nights, requests_per_day={use_case: per_night})
    configs = (production_config(use_case), *exploration_configs(use_case))
    truth = ground_truth(spec).use_cases[use_case]
    means = {c.config_id: truth.config(c.config_id).true_mean_quality for c in configs}
    best = max(means.values())
    con = connect(path=":memory:")
    weights = {c.config_id: 1 / len(configs) for c in configs}
    regret = uniform = 0.0
    for night in range(nights):
        regret += per_night * sum(w * (best - means[k]) for k, w in weights.items())
        uniform += per_night * sum(best - m for m in means.values()) / len(means)
        for cfg in configs:
            n = round(weights[cfg.config_id] * per_night)
            table = simulate_config_traffic(
                spec,
                use_case,
                cfg,
                n,
                night,
                seed=100 + night,
                propensity=max(weights[cfg.config_id], 1e-6),
            )
            load_table(con, table)
        allocation = bandit_allocation(
            con,
            use_case=use_case,
            as_of=START + dt.timedelta(days=night),
            window_days=night + 1,
            floor=0.02,
            seed=night,
            draws=4000,
        )
        assert allocation.status == "ok"
        weights = allocation.weights()
    con.close()
    assert regret < 0.5 * uniform
    top = max(weights, key=weights.__getitem__)
    assert means[top] == best


@pytest.mark.parametrize("use_case", USE_CASE_NAMES)
def test_thompson_regret_on_the_true_world_is_sublinear_looking(use_case: str) -> None:
    result = simulator_regret(use_case, nights=30, requests_per_night=1000, seed=1)
    assert result.regret_ratio < 0.35
    assert result.thompson.late_to_early_ratio < 0.8
    assert result.uniform.late_to_early_ratio == pytest.approx(1.0)


def test_budget_forecast_interval_covers_the_realised_month(load_table: Any) -> None:
    rpd = {"ticket-classify": 600, "code-review": 300}
    spec = SimulationSpec(
        seed=3,
        days=31,
        requests_per_day=rpd,
        include_cost=True,
        cost_spike=False,
        experiments=False,
        drift=False,
    )
    table = simulate(spec)
    con = connect(path=":memory:")
    load_table(con, table)
    realised = dict(
        con.execute("SELECT use_case, sum(cost_usd) FROM usage_logs GROUP BY 1").fetchall()
    )
    config = {"defaults": {"forecast_window_days": 14, "forecast_level": 0.95}}
    reports = budget_report(con, as_of=dt.date(2026, 10, 18), config=config)
    con.close()
    assert {r.use_case for r in reports} == set(rpd)
    for report in reports:
        f = report.forecast
        assert f is not None and report.status == "no_budget"
        assert f.lower <= realised[report.use_case] <= f.upper, (report.use_case, f)
        assert report.requests_to_date == 18 * rpd[report.use_case]
