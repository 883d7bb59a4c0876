"""The nightly hooks publish the routing table into the registry; serving resolves it by context.

World (b) logs, the aggregate-step and per-use-case hooks, a real registry store (SQLite) and its
HTTP API, and the serving client: ``assign(unit_id, context={...})``. The truth only grades.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from strategies.objective import Objective
from strategies.routing import RoutingObjective
from tasks.allocation.routing_nightly import (
    attach_routing,
    nightly_routing,
    routing_inputs_for,
    routing_step,
)
from tasks.core.settings import Settings
from tasks.registry.api import serve_in_background
from tasks.registry.client import RegistryClient
from tasks.registry.model import ModelParams, RegistryConfig
from tasks.registry.routing import routing_of
from tasks.registry.store import RegistryStore
from tasks.simulation.files import load_simulated
from tasks.simulation.worlds_routing import segmented_world

OBJECTIVE = Objective.from_preset("quality-focused")
BUDGET_CONFIG: dict[str, Any] = {"routing": {"window_days": 14}}


def _night(con: Any) -> tuple[Any, Any]:
    world = segmented_world(requests_per_day=1500, days=14, seed=41)
    load_simulated(con, world.simulate())
    as_of = world.start + dt.timedelta(days=world.days - 1)
    inputs = routing_inputs_for(
        con,
        use_case=world.use_case,
        as_of=as_of,
        objective=OBJECTIVE,
        budget_config=BUDGET_CONFIG,
    )
    return world, inputs


def _routed(con: Any, **options: Any) -> tuple[Any, Any]:
    """The world and the night's routing with the weak model in production (``options``: more
    of :func:`nightly_routing`'s)."""
    world, inputs = _night(con)
    routed = nightly_routing(
        inputs,
        objective=OBJECTIVE,
        production_id=world.weak.config_id,
        budget_config=BUDGET_CONFIG,
        **options,
    )
    return world, routed


def test_held_traffic_records_the_proposal_without_publishing(con: Any) -> None:
    _, routed = _routed(con, held_by="experiment exp-1 is running")
    assert routed.proposal is not None and routed.proposal.status == "proposed"
    assert not routed.publish
    assert routed.reasons[-1] == "not published tonight: experiment exp-1 is running"
    assert routed.metrics["routing_proposed"] == 1.0
    gain_lower = routed.metrics["routing_dr_gain_lower"]
    assert gain_lower is not None and gain_lower > 0
    assert nightly_routing(
        None, objective=OBJECTIVE, production_id="x", budget_config=BUDGET_CONFIG
    ).reasons == ("routing not computed tonight",)


def test_published_table_is_served_by_context_through_the_registry_api(
    con: Any, settings: Settings, tmp_path: Any
) -> None:
    world, routed = _routed(con)
    assert routed.publish
    params = {a.config_id: {"model": a.model, "provider": a.provider} for a in world.arms}
    base = RegistryConfig(use_case=world.use_case, params=ModelParams(model=world.weak.model))
    document = attach_routing(base.to_dict(), routed, params)
    config = RegistryConfig.from_dict(document)
    table = routing_of(config)
    assert table is not None and table.context == "user_segment"
    assert sum(arm.weight for arm in config.traffic) == pytest.approx(1.0)
    # graded by the truth: near the per-segment oracle, above the best single configuration
    coef = RoutingObjective.coefficients_of(OBJECTIVE)
    value = world.policy_value(table.as_policy(), coefficients=coef)
    oracle = world.policy_value(world.oracle(coefficients=coef), coefficients=coef)
    single = world.policy_value({"*": world.best_single(coefficients=coef)}, coefficients=coef)
    assert abs(oracle - value) <= 0.02 * abs(oracle) and value > single

    store = RegistryStore(f"sqlite:///{tmp_path}/registry.db")
    store.publish(world.use_case, config, expected_version=0, actor="night", reason="routing")
    store.approve(world.use_case, 1, actor="reviewer", comment="ok")
    store.promote(world.use_case, 1, actor="reviewer", comment="ship")
    with serve_in_background(settings, store=store) as url:
        client = RegistryClient(url, timeout=2.0, background=False)
        free = client.assign(world.use_case, "user-1", context={"user_segment": "free"})
        assert free.config_id == table.assign("user-1", context={"user_segment": "free"})
        assert free.context_row == "free"
        assert free.propensity == pytest.approx(table.rows["free"][free.config_id])
        unseen = client.assign(world.use_case, "user-2", context={"user_segment": "brand-new"})
        assert unseen.context_row == "*"
        assert unseen.propensity == pytest.approx(table.default[unseen.config_id])
        again = [
            client.assign(world.use_case, f"u{i}", context={"user_segment": "pro"})
            for i in range(50)
        ]
        assert [a.config_id for a in again] == [
            table.assign(f"u{i}", context={"user_segment": "pro"}) for i in range(50)
        ]
    store.dispose()


def test_routing_step_publishes_only_when_the_config_says_so(con: Any) -> None:
    world, inputs = _night(con)

    class NightInputs:  # the fields the hook reads from the night's per-use-case inputs
        routing = inputs
        budget = None

    params = {a.config_id: {"model": a.model, "provider": a.provider} for a in world.arms}
    base = RegistryConfig(use_case=world.use_case, params=ModelParams(model=world.weak.model))
    kwargs: dict[str, Any] = {
        "objective": OBJECTIVE,
        "production_id": world.weak.config_id,
        "proposed_config": base.to_dict(),
        "params_for": params,
        "held_by": None,
    }
    same, routed = routing_step(NightInputs(), budget_config=BUDGET_CONFIG, **kwargs)
    assert not routed.publish and same == base.to_dict()
    assert routed.reasons[-1] == "not published: [routing] publish = false"
    config = {"routing": {**BUDGET_CONFIG["routing"], "publish": True}}
    document, routed = routing_step(NightInputs(), budget_config=config, **kwargs)
    assert routed.publish
    assert routing_of(RegistryConfig.from_dict(document)) is not None
    held, routed = routing_step(
        NightInputs(), budget_config=config, **{**kwargs, "held_by": "a rollout"}
    )
    assert not routed.publish and routing_of(RegistryConfig.from_dict(held)) is None
