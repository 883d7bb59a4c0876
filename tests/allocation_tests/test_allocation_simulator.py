"""Budget, bandits and off-policy evaluation against the simulator's ground truth."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tasks.allocation.budget import budget_report
from tasks.simulation import SimulationSpec, simulate
from tasks.simulation.evaluation import offpolicy_checks, simulate_closed_loop, simulator_regret
from tasks.simulation.world import USE_CASE_NAMES
from tasks.warehouse.connection import connect


def test_offpolicy_intervals_cover_the_simulator_truth(load_table: Any) -> None:
    checks = list(offpolicy_checks(lambda con, table, _seed: load_table(con, table), seeds=4))
    assert len(checks) == 24
    for check in checks:
        assert check.result.status == "ok", check.result.reasons
        dr = check.result.estimate.dr
        assert dr is not None and abs(dr.value - check.true_value) < 5 * dr.se
    covered = {name: sum(c.covered(name) for c in checks) for name in ("ips", "snips", "dr")}
    # nominal 95%: 24 intervals, at most three misses per estimator
    assert min(covered.values()) >= 21, covered


def test_thompson_closed_loop_on_simulated_traffic_beats_uniform(load_table: Any) -> None:
    """Each night: bandit weights from the warehouse -> simulator serves them -> ingest."""
    con = connect(path=":memory:")
    try:
        loop = simulate_closed_loop(
            con,
            lambda table, _night: load_table(con, table),
            use_case="code-review",
            nights=8,
            requests_per_night=800,
        )
    finally:
        con.close()
    assert set(loop.statuses) == {"ok"}
    assert loop.regret < 0.5 * loop.uniform_regret
    assert loop.top_arm_is_best


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
