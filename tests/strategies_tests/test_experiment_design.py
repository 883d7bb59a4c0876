"""The experiment the nightly flow proposes for a promising candidate (issue 12 item 2): when,
and the pre-registered numbers (strategies/experiment_design.py, tasks/nightly/experiment_plans.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from strategies.config_stats import ConfigStats
from strategies.experiment_design import (
    DesignPolicy,
    ExperimentDesign,
    experiment_id_for,
    propose_experiment,
)
from strategies.experiments.sequential import SequentialTest
from strategies.objective import Objective
from tasks.experiments.spec import experiment_spec
from tasks.nightly.experiment_plans import (
    running_experiments,
    tried_candidates,
    with_planned_specs,
)

QUALITY = Objective.from_preset("quality-focused")
POLICY = DesignPolicy(traffic_share=0.5, mde=0.02, min_days=3, max_days=14)


def _cfg(key: str, quality: float, n: int, cost: float = 0.001, seed: int = 0) -> ConfigStats:
    rng = np.random.default_rng(seed)
    return ConfigStats.from_samples(
        key,
        quality=rng.beta(quality * 20, (1 - quality) * 20, n),
        cost=rng.gamma(4.0, cost / 4.0, n),
        latency=rng.lognormal(np.log(900.0), 0.3, n),
        success=np.ones(n, bool),
    )


PROD, CAND = _cfg("prod", 0.78, 8000, seed=1), _cfg("cand", 0.80, 300, seed=2)


def _propose(**overrides: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "use_case": "faq",
        "objective": QUALITY,
        "production": PROD,
        "candidate": CAND,
        "requests_per_day": 4000.0,
        "policy": POLICY,
    }
    return propose_experiment(**(args | overrides))  # type: ignore[arg-type]


def test_the_design_is_pre_registered_with_the_sequential_sample_size() -> None:
    proposal = _propose()
    design = proposal.design
    assert proposal.action == "propose" and design is not None
    assert design.experiment_id == experiment_id_for("faq", "prod", "cand")
    assert (design.control_config_id, design.treatment_config_id) == ("prod", "cand")
    assert design.primary == "quality" and design.mde == 0.02
    expected = SequentialTest(alpha=POLICY.alpha, n_star=POLICY.n_star).required_n(
        design.variance_control, design.variance_treatment, 0.02, power=0.8
    )[0]
    assert design.planned_units_per_arm == pytest.approx(float(expected))
    per_arm_per_day = 4000 * 0.5 / 2
    assert design.planned_days == max(
        int(np.ceil(design.planned_units_per_arm / per_arm_per_day)), 3
    )
    assert design.variance_control == pytest.approx(PROD.quality_se**2 * PROD.quality_n)
    # the spec the nightly analysis reads is a valid experiments.toml table
    spec = experiment_spec(
        design.experiment_id,
        {"experiments": {design.experiment_id: design.spec_table()}},
    )
    assert spec is not None and spec.primary == "quality" and spec.max_days == 14
    assert {g.metric for g in spec.guardrails} == {"cost_usd", "error_rate", "latency_ms"}
    assert dict(spec.weights) == {"control": 0.5, "treatment": 0.5}
    assert ExperimentDesign.from_dict(design.as_dict()) == design


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"production": None}, "production is absent"),
        ({"candidate": None}, "no promising candidate"),
        ({"running": ["auto-faq-1"]}, "auto-faq-1 already runs for faq"),
        ({"offpolicy_possible": True}, "the off-policy estimate decides"),
        ({"tried": {"cand"}}, "cand was already tested against this production"),
        ({"requests_per_day": 20.0}, "more than 14 days"),
        ({"policy": DesignPolicy(enabled=False)}, "enabled = false"),
    ],
)
def test_no_experiment_and_the_reason_says_why(overrides: dict, why: str) -> None:
    proposal = _propose(**overrides)
    assert proposal.action == "none" and proposal.design is None
    assert proposal.reason.startswith("no experiment: ") and why in proposal.reason


def test_the_primary_follows_the_objective() -> None:
    cheaper = _cfg("cheap", 0.78, 300, cost=0.0005, seed=3)
    expensive = _cfg("prod", 0.78, 8000, cost=0.004, seed=4)
    cost_focused = _propose(
        objective=Objective.from_preset("cost-focused"),
        production=expensive,
        candidate=cheaper,
        policy=DesignPolicy(traffic_share=0.5, min_days=3, max_days=28),
    )
    assert cost_focused.design is not None and cost_focused.design.primary == "cost_usd"
    metric, _, relative = cost_focused.design.guardrails[0]
    assert metric == "quality" and not relative  # the quality the cost gain pays for
    min_cost = _propose(
        objective=Objective.min_cost(quality_floor=0.7),
        production=expensive,
        candidate=cheaper,
        policy=DesignPolicy(traffic_share=0.5, min_days=3, max_days=28),
    )
    assert min_cost.design is not None and min_cost.design.primary == "cost_usd"
    assert min_cost.design.guardrails[0][0] == "quality"
    assert min_cost.design.guardrails[0][1] == pytest.approx(expensive.quality_mean - 0.7)


def test_planned_specs_join_experiments_toml_and_a_written_table_wins() -> None:
    design = _propose().design
    assert design is not None
    stored = {"faq": {design.experiment_id: design.as_dict()}}
    merged = with_planned_specs({"defaults": {"alpha": 0.05}}, stored)
    assert merged["experiments"][design.experiment_id]["primary"] == "quality"
    mine = {"experiments": {design.experiment_id: {"primary": "cost_usd"}}}
    assert with_planned_specs(mine, stored)["experiments"][design.experiment_id] == {
        "primary": "cost_usd"
    }


def test_running_and_tried_experiments_from_tonight_and_the_registry() -> None:
    designs = {"auto-a": {"control_config_id": "prod", "treatment_config_id": "cand"}}
    # published, no traffic yet: it waits to start, so it counts as running
    assert running_experiments([], designs) == ["auto-a"]
    analysed = [{"experiment_id": "auto-a", "decision": {"action": "keep running"}}]
    assert running_experiments(analysed, designs) == ["auto-a"]
    ended = [{"experiment_id": "auto-a", "decision": {"action": "inconclusive at max duration"}}]
    assert running_experiments(ended, designs) == []
    assert tried_candidates(designs, "prod") == {"cand"}
    assert tried_candidates(designs, "other") == frozenset()
