"""Deterministic assignment: same answer in every process, fair split, minimal movement."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter

import pytest
from scipy import stats

from tasks.core.settings import REPO_ROOT
from tasks.registry.assignment import assign_arm, assign_weighted
from tasks.registry.model import Arm, ConfigValidationError, ModelParams, RegistryConfig

UNITS = [f"user-{i}" for i in range(20_000)]


def _assign_all(weights: list[tuple[str, float]], salt: str = "exp-1") -> list[str]:
    return [assign_weighted(weights, salt=salt, unit_id=u) for u in UNITS]


def test_same_assignment_in_other_processes() -> None:
    weights = [("control", 0.5), ("treatment", 0.3), ("explore", 0.2)]
    code = (
        "import json, sys; from tasks.registry.assignment import assign_weighted as a; "
        "w = json.loads(sys.argv[1]); "
        "print(json.dumps([a(w, salt='exp-1', unit_id=f'user-{i}') for i in range(2000)]))"
    )
    outputs = []
    for hash_seed in ("1", "12345"):  # str hashing differs per process; ours must not
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", code, json.dumps(weights)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(json.loads(result.stdout))
    here = [assign_weighted(weights, salt="exp-1", unit_id=f"user-{i}") for i in range(2000)]
    assert outputs[0] == outputs[1] == here
    assert set(here) == {"control", "treatment", "explore"}


def test_observed_split_is_within_binomial_bounds() -> None:
    weights = [("control", 0.5), ("treatment", 0.3), ("explore", 0.15), ("rare", 0.05)]
    counts = Counter(_assign_all(weights))
    n = len(UNITS)
    for arm, weight in weights:
        result = stats.binomtest(counts[arm], n, weight)
        assert result.pvalue > 1e-4, (arm, counts[arm], weight)
    chi = stats.chisquare([counts[a] for a, _ in weights], [n * w for _, w in weights])
    assert chi.pvalue > 1e-4


def test_salt_decorrelates_experiments() -> None:
    weights = [("control", 0.5), ("treatment", 0.5)]
    first, second = _assign_all(weights, "exp-a"), _assign_all(weights, "exp-b")
    both = sum(a == "treatment" and b == "treatment" for a, b in zip(first, second, strict=True))
    assert stats.binomtest(both, len(UNITS), 0.25).pvalue > 1e-4


def test_changing_one_weight_moves_only_units_of_that_arm_and_the_minimum_share() -> None:
    before_w = [("a", 0.5), ("b", 0.3), ("c", 0.2)]
    # a drops from 0.5 to 0.4; b and c keep their relative sizes (scaled by 0.6 / 0.5)
    after_w = [("a", 0.4), ("b", 0.36), ("c", 0.24)]
    before, after = _assign_all(before_w), _assign_all(after_w)
    moves = Counter((x, y) for x, y in zip(before, after, strict=True) if x != y)
    assert set(moves) <= {("a", "b"), ("a", "c")}, moves  # nobody moved between b and c
    moved = sum(moves.values())
    # the least any scheme can move is the 0.1 share a lost
    assert stats.binomtest(moved, len(UNITS), 0.1).pvalue > 1e-4


def test_reordering_or_adding_an_arm_keeps_existing_units_in_place() -> None:
    weights = [("control", 0.5), ("treatment", 0.5)]
    base = _assign_all(weights)
    assert _assign_all(list(reversed(weights))) == base
    with_new = _assign_all([("control", 0.45), ("treatment", 0.45), ("explore", 0.1)])
    moved = [(x, y) for x, y in zip(base, with_new, strict=True) if x != y]
    assert all(y == "explore" for _, y in moved)
    assert stats.binomtest(len(moved), len(UNITS), 0.1).pvalue > 1e-4


def test_zero_weight_arm_gets_nobody_and_config_assignment_uses_the_salt() -> None:
    params = ModelParams(model="gpt-4o-mini")
    config = RegistryConfig(
        use_case="uc",
        params=params,
        salt="exp-1",
        traffic=(
            Arm(arm_id="control", params=params, weight=0.6),
            Arm(arm_id="treatment", params=params, weight=0.4),
            Arm(arm_id="off", params=params, weight=0.0),
        ),
    )
    weights = [("control", 0.6), ("treatment", 0.4), ("off", 0.0)]
    chosen = [assign_arm(config, u).arm_id for u in UNITS[:3000]]
    assert chosen == _assign_all(weights)[:3000]
    assert "off" not in chosen
    plain = RegistryConfig(use_case="uc", params=params)
    assert assign_arm(plain, "anyone").params == params


def test_traffic_plan_becomes_a_config_with_stable_arm_ids() -> None:
    from strategies.traffic import ExperimentArms, TrafficPolicy, plan_traffic
    from tasks.registry.plans import config_from_plan

    params = {
        cid: ModelParams(model="gpt-4o-mini", prompt_id=prompt)
        for cid, prompt in (("prod", "summarize-v1"), ("v2", "summarize-v2"), ("cand", "s-v3"))
    }
    experiment = ExperimentArms("exp-summarize-prompt-v2", (("prod", 0.5), ("v2", 0.5)), 0.2)
    policy = TrafficPolicy(max_exploration_share=0.1, min_arm_share=0.01)
    plan = plan_traffic(
        use_case="support-summarize",
        production_config_id="prod",
        policy=policy,
        experiments=[experiment],
        exploration=["cand"],
    )
    variants = {"exp-summarize-prompt-v2": {"prod": "control", "v2": "treatment"}}
    config = config_from_plan(plan, params, variant_of=variants)
    by_id = {a.arm_id: a for a in config.traffic}
    assert set(by_id) == {
        "production/prod",
        "experiment/exp-summarize-prompt-v2/control",  # named by variant: stable across nights
        "experiment/exp-summarize-prompt-v2/treatment",
        "exploration/cand",
    }
    assert math.fsum(a.weight for a in config.traffic) == 1.0
    for planned in plan.arms:
        arm_id = (
            f"experiment/{planned.experiment_id}/"
            f"{variants[planned.experiment_id][planned.config_id]}"
            if planned.experiment_id
            else f"{planned.role.value}/{planned.config_id}"
        )
        assert abs(by_id[arm_id].weight - planned.weight) < 1e-9
    assert by_id["experiment/exp-summarize-prompt-v2/treatment"].variant_id == "treatment"
    assert config.allocation == "mixed" and config.params == params["prod"]
    # next night: exploration dropped; experiment units stay where they were
    night2 = config_from_plan(
        plan_traffic(
            use_case="support-summarize",
            production_config_id="prod",
            policy=policy,
            experiments=[experiment],
        ),
        params,
        variant_of=variants,
    )
    before = [assign_arm(config, u).arm_id for u in UNITS[:5000]]
    after = [assign_arm(night2, u).arm_id for u in UNITS[:5000]]
    moved = {(b, a) for b, a in zip(before, after, strict=True) if b != a}
    assert moved and all(b == "exploration/cand" for b, _ in moved)
    # inside the experiment the split is the experiment's own 50/50
    in_exp = [a for a in before if a.startswith("experiment/")]
    treated = sum(a.endswith("/treatment") for a in in_exp)
    assert stats.binomtest(treated, len(in_exp), 0.5).pvalue > 1e-4
    assert stats.binomtest(len(in_exp), len(before), 0.2).pvalue > 1e-4
    with pytest.raises(ConfigValidationError, match="no parameters"):
        config_from_plan(plan, {"prod": params["prod"]})
