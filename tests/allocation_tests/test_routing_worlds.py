"""Issue 12, worlds (b) and (c): the published routing table, graded by the simulator's truth.

The routing table comes from the entry function (:func:`tasks.allocation.routing.
plan_contextual_routing`) on a warehouse loaded with the world's logs; the truth is only used to
grade it, never to decide.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from strategies.objective import Objective
from strategies.routing import RoutingObjective
from tasks.allocation.budget import budget_report
from tasks.allocation.routing import (
    RoutingBudget,
    RoutingProposal,
    plan_contextual_routing,
    routing_inputs,
)
from tasks.registry.routing import RoutingTable
from tasks.simulation.files import load_simulated
from tasks.simulation.worlds_routing import RoutingWorld, budgeted_world, segmented_world


def _plan(con: Any, world: RoutingWorld, objective: Objective, **kw: Any) -> RoutingProposal:
    load_simulated(con, world.simulate())
    end = world.start + dt.timedelta(days=world.days - 1)
    inputs = routing_inputs(
        con, use_case=world.use_case, start=world.start, end=end, objective=objective
    )
    proposal = plan_contextual_routing(inputs, **kw)
    assert isinstance(proposal, RoutingProposal), proposal
    return proposal


def _published(proposal: RoutingProposal) -> dict[str, dict[str, float]]:
    table = RoutingTable.from_dict(proposal.table)  # what the registry would store and serve
    return table.as_policy()


@pytest.mark.parametrize("preset", ["quality-focused", "balanced"])
def test_world_b_table_is_near_the_per_segment_oracle_and_beats_any_single_config(
    con: Any, preset: str
) -> None:
    world = segmented_world(requests_per_day=2000, days=14, seed=21)
    objective = Objective.from_preset(preset)
    proposal = _plan(con, world, objective)
    coef = RoutingObjective.coefficients_of(objective)
    value = world.policy_value(_published(proposal), coefficients=coef)
    oracle = world.policy_value(world.oracle(coefficients=coef), coefficients=coef)
    single = world.policy_value({"*": world.best_single(coefficients=coef)}, coefficients=coef)
    assert proposal.status == "proposed", proposal.reasons
    assert proposal.context == "user_segment"
    assert abs(oracle - value) <= 0.02 * abs(oracle)
    assert value > single
    # empty and constant context columns are skipped, and said so
    assert "empty" in proposal.skipped_columns["language"]
    assert "constant" in proposal.skipped_columns["task_type"]
    assert any("language skipped" in r for r in proposal.reasons)


def test_world_c_forecast_within_budget_and_quality_above_the_mixing_line(con: Any) -> None:
    world = budgeted_world(requests_per_day=2000, days=14, seed=22)
    assert world.monthly_budget_usd is not None
    end = world.start + dt.timedelta(days=world.days - 1)
    load_simulated(con, world.simulate())
    config = {"use_cases": {world.use_case: {"monthly_budget_usd": world.monthly_budget_usd}}}
    report = budget_report(con, as_of=end, config=config, use_cases=[world.use_case])[0]
    budget = RoutingBudget(
        monthly_budget_usd=world.monthly_budget_usd,
        month_to_date_usd=report.month_to_date_usd,
        remaining_requests=report.projected_monthly_requests - report.requests_to_date,
    )
    objective = Objective.max_quality(monthly_budget_usd=world.monthly_budget_usd)
    inputs = routing_inputs(
        con, use_case=world.use_case, start=world.start, end=end, objective=objective
    )
    proposal = plan_contextual_routing(inputs, budget=budget)
    assert isinstance(proposal, RoutingProposal)
    assert proposal.status == "proposed", proposal.reasons
    quality, cost, _, _ = world.policy_metrics(_published(proposal))
    # the strong model alone would overrun the budget: the world is what it claims
    strong_q, strong_cost, _, _ = world.policy_metrics({"*": {world.strong.config_id: 1.0}})
    weak_q, weak_cost, _, _ = world.policy_metrics({"*": {world.weak.config_id: 1.0}})
    assert budget.forecast(strong_cost) > world.monthly_budget_usd
    # graded by the truth: the forecast at the table's true cost stays within the budget ...
    assert budget.forecast(cost) <= world.monthly_budget_usd
    assert proposal.forecast_spend_usd is not None
    assert proposal.forecast_spend_usd <= world.monthly_budget_usd
    # ... and its true quality is above random mixing at the same spend
    line = weak_q + (strong_q - weak_q) * (cost - weak_cost) / (strong_cost - weak_cost)
    assert quality > line + 0.02
    # most of the affordable strong traffic goes where it buys the most quality
    rows = proposal.table["rows"]
    assert rows["enterprise"].get(world.strong.config_id, 0.0) > 0.99
    assert rows["free"].get(world.weak.config_id, 0.0) > 0.99


def test_world_b_without_propensities_is_not_proposed(con: Any) -> None:
    world = segmented_world(requests_per_day=500, days=7, seed=23)
    table = world.simulate()
    table = table.set_column(
        table.schema.get_field_index("propensity"),
        "propensity",
        __import__("pyarrow").nulls(table.num_rows, "float64"),
    )
    load_simulated(con, table)
    end = world.start + dt.timedelta(days=world.days - 1)
    inputs = routing_inputs(
        con,
        use_case=world.use_case,
        start=world.start,
        end=end,
        objective=Objective.from_preset("quality-focused"),
    )
    proposal = plan_contextual_routing(inputs)
    assert isinstance(proposal, RoutingProposal)
    assert proposal.status == "not_proposed"
    assert any("no propensity" in r for r in proposal.reasons)
