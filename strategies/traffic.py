"""One traffic plan per use case: who gets how much of tomorrow's traffic, and why.

Experiments, exploration candidates from the search, bandit weights and staged rollouts all want
traffic. :func:`plan_traffic` resolves them with a fixed precedence, so the plan a serving system
reads always sums to 1:

1. **Safety first.** A rollback or circuit-breaker from monitoring sends 100% to its target and
   suspends everything else; a paused optimizer drops exploration.
2. **Running experiments next.** Each keeps its configured share (in config order) while traffic
   is left and every arm clears the per-arm floor.
3. **Exploration last.** Candidates share at most ``max_exploration_share``; bandit weights, when
   given, split it; candidates that would fall under the floor are dropped, weakest first.
4. **What remains** is production traffic, of which a staged rollout takes its stage's share.

A rollout advances a stage when its guardrails held on the stage's traffic (:func:`step_rollout`),
holds while the evidence is still arriving, rolls back only when harm is shown, and stops (the
incumbent stays) when the stage cannot gather its evidence in time
(:func:`strategies.rollout_guard.step_verdict`).

Example:
    >>> policy = TrafficPolicy(max_exploration_share=0.1, min_arm_share=0.01)
    >>> plan = plan_traffic(
    ...     use_case="support-summarize",
    ...     production_config_id="prod",
    ...     policy=policy,
    ...     experiments=[ExperimentArms("exp-1", (("prod", 0.5), ("new", 0.5)), 0.2)],
    ...     exploration=["cand-a", "cand-b"],
    ... )
    >>> round(sum(arm.weight for arm in plan.arms), 12), round(plan.exploration_share, 3)
    (1.0, 0.1)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

__all__ = [
    "ArmRole",
    "ExperimentArms",
    "PlannedArm",
    "RolloutState",
    "RolloutStep",
    "SafetyOverride",
    "TrafficPlan",
    "TrafficPolicy",
    "plan_traffic",
    "start_rollout",
    "step_rollout",
]


class ArmRole(StrEnum):
    """Why an arm receives traffic; serving systems may log it beside the config id."""

    PRODUCTION = "production"
    ROLLOUT = "rollout"
    EXPERIMENT = "experiment"
    EXPLORATION = "exploration"


@dataclass(frozen=True)
class TrafficPolicy:
    """Limits every plan respects. ``rollout_stages`` are the candidate's shares, night by night."""

    max_exploration_share: float = 0.10
    min_arm_share: float = 0.01
    rollout_stages: tuple[float, ...] = (0.05, 0.25, 0.50, 1.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_exploration_share < 1.0:
            raise ValueError("max_exploration_share must be in [0, 1)")
        if not 0.0 <= self.min_arm_share < 0.5:
            raise ValueError("min_arm_share must be in [0, 0.5)")
        stages = self.rollout_stages
        if not stages or stages[-1] != 1.0 or any(not 0.0 < s <= 1.0 for s in stages):
            raise ValueError("rollout_stages must be shares in (0, 1] ending with 1.0")
        if any(b <= a for a, b in itertools.pairwise(stages)):
            raise ValueError("rollout_stages must increase")


@dataclass(frozen=True)
class SafetyOverride:
    """A monitoring decision that outranks everything else for one use case."""

    kind: Literal["rollback", "circuit_breaker", "pause_optimizer"]
    reason: str
    target_config_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind in {"rollback", "circuit_breaker"} and not self.target_config_id:
            raise ValueError(f"{self.kind} needs a target_config_id")


@dataclass(frozen=True)
class ExperimentArms:
    """A running experiment: arms as (config_id, weight within the experiment), and its share."""

    experiment_id: str
    arms: tuple[tuple[str, float], ...]
    traffic_share: float
    variants: tuple[str, ...] = ()  # variant name per arm, when known (A/A arms share a config)

    def __post_init__(self) -> None:
        if self.variants and len(self.variants) != len(self.arms):
            raise ValueError(f"{self.experiment_id}: one variant name per arm")
        total = sum(weight for _, weight in self.arms)
        if len(self.arms) < 2 or not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"{self.experiment_id}: needs >= 2 arms whose weights sum to 1")
        if not 0.0 < self.traffic_share <= 1.0:
            raise ValueError(f"{self.experiment_id}: traffic_share must be in (0, 1]")


@dataclass(frozen=True)
class PlannedArm:
    config_id: str
    weight: float
    role: ArmRole
    reason: str
    experiment_id: str | None = None
    variant_id: str | None = None


@dataclass(frozen=True)
class RolloutState:
    """A newly approved configuration ramping up against the incumbent production one."""

    candidate_config_id: str
    incumbent_config_id: str
    stage_index: int = 0
    history: tuple[str, ...] = ()

    @property
    def nights_at_stage(self) -> int:
        """Nights of traffic the current stage has had by tonight (1 on its first judgement)."""
        trailing = 0
        for entry in reversed(self.history):
            if entry != "hold":
                break
            trailing += 1
        return trailing + 1


@dataclass(frozen=True)
class RolloutStep:
    """The outcome of one night for a rollout: what happened, the new share, and why."""

    action: Literal["advance", "hold", "rollback", "complete", "stop"]
    state: RolloutState | None
    candidate_share: float
    production_config_id: str
    reason: str


@dataclass(frozen=True)
class TrafficPlan:
    use_case: str
    production_config_id: str
    arms: tuple[PlannedArm, ...]
    reasons: tuple[str, ...] = field(default=())

    @property
    def total(self) -> float:
        return math.fsum(arm.weight for arm in self.arms)

    @property
    def exploration_share(self) -> float:
        return math.fsum(a.weight for a in self.arms if a.role is ArmRole.EXPLORATION)

    def weights(self) -> dict[str, float]:
        """Total weight per config id (arms that share a config are added up)."""
        merged: dict[str, float] = {}
        for arm in self.arms:
            merged[arm.config_id] = merged.get(arm.config_id, 0.0) + arm.weight
        return merged


def start_rollout(*, candidate_config_id: str, incumbent_config_id: str) -> RolloutState:
    """A rollout at its first stage."""
    return RolloutState(candidate_config_id, incumbent_config_id, 0, ("start",))


def step_rollout(
    state: RolloutState,
    *,
    guardrails_held: bool | None,
    policy: TrafficPolicy,
    stop_reason: str | None = None,
    reason: str | None = None,
) -> RolloutStep:
    """Advance, hold, roll back or stop a rollout after a night of traffic.

    Args:
        state: the rollout before tonight.
        guardrails_held: True (advance), False (harm shown: roll back), None (hold).
        policy: the stages.
        stop_reason: set when the step cannot gather its evidence in time: the rollout stops,
            the incumbent keeps production, and this text says why (not a failed guardrail).
        reason: the judgement's own sentence, used instead of the generic one when given.
    """
    stages = policy.rollout_stages
    index = min(state.stage_index, len(stages) - 1)
    if stop_reason is not None:
        return RolloutStep(
            "stop",
            None,
            0.0,
            state.incumbent_config_id,
            f"{stop_reason}: {state.incumbent_config_id} stays production",
        )
    if guardrails_held is False:
        return RolloutStep(
            "rollback",
            None,
            0.0,
            state.incumbent_config_id,
            (reason or f"guardrails failed at {stages[index]:.0%}")
            + f": back to {state.incumbent_config_id}",
        )
    if guardrails_held is None:
        return RolloutStep(
            "hold",
            replace(state, history=(*state.history, "hold")),
            stages[index],
            state.incumbent_config_id,
            reason or f"not enough evidence at {stages[index]:.0%}: holding",
        )
    next_index = index + 1
    if next_index >= len(stages) - 1:
        return RolloutStep(
            "complete",
            None,
            1.0,
            state.candidate_config_id,
            f"guardrails held at every stage: {state.candidate_config_id} is production",
        )
    advanced = replace(state, stage_index=next_index, history=(*state.history, "advance"))
    return RolloutStep(
        "advance",
        advanced,
        stages[next_index],
        state.incumbent_config_id,
        f"guardrails held at {stages[index]:.0%}: advancing to {stages[next_index]:.0%}",
    )


def _exploration_arms(
    candidates: Sequence[str],
    weights: Mapping[str, float] | None,
    budget: float,
    floor: float,
) -> tuple[list[PlannedArm], list[str]]:
    reasons: list[str] = []
    pool = [c for c in dict.fromkeys(candidates)]
    raw = {c: max(float((weights or {}).get(c, 1.0)), 0.0) for c in pool}
    while pool:
        total = math.fsum(raw[c] for c in pool)
        if total <= 0.0:
            raw = {c: 1.0 for c in pool}
            total = float(len(pool))
        shares = {c: budget * raw[c] / total for c in pool}
        weakest = min(pool, key=lambda c: (shares[c], c))
        if shares[weakest] + 1e-12 >= floor:
            arms = [
                PlannedArm(c, shares[c], ArmRole.EXPLORATION, "search / bandit exploration")
                for c in pool
            ]
            return arms, reasons
        pool.remove(weakest)
        reasons.append(f"exploration candidate {weakest} dropped: share under floor {floor:.2%}")
    return [], reasons


def plan_traffic(
    *,
    use_case: str,
    production_config_id: str,
    policy: TrafficPolicy,
    safety: SafetyOverride | None = None,
    rollout: RolloutState | None = None,
    experiments: Sequence[ExperimentArms] = (),
    exploration: Sequence[str] = (),
    exploration_weights: Mapping[str, float] | None = None,
) -> TrafficPlan:
    """Combine every claim on traffic into one plan that sums to 1 (see the module docstring)."""
    if safety is not None and safety.kind in {"rollback", "circuit_breaker"}:
        target = str(safety.target_config_id)
        reason = f"{safety.kind}: {safety.reason}"
        arm = PlannedArm(target, 1.0, ArmRole.PRODUCTION, reason)
        suspended = "experiments, exploration and rollouts suspended"
        return TrafficPlan(use_case, target, (arm,), (reason, suspended))

    reasons: list[str] = []
    arms: list[PlannedArm] = []
    remaining = 1.0
    for experiment in experiments:
        share = min(experiment.traffic_share, remaining)
        smallest = share * min(weight for _, weight in experiment.arms)
        if smallest + 1e-12 < policy.min_arm_share:
            reasons.append(f"{experiment.experiment_id} paused: no room above the per-arm floor")
            continue
        arms.extend(
            PlannedArm(
                config,
                share * weight,
                ArmRole.EXPERIMENT,
                "running experiment",
                experiment.experiment_id,
                variant,
            )
            for (config, weight), variant in zip(
                experiment.arms,
                experiment.variants or (None,) * len(experiment.arms),
                strict=True,
            )
        )
        remaining -= share
        reasons.append(f"{experiment.experiment_id} gets {share:.1%}")

    if safety is not None and safety.kind == "pause_optimizer":
        reasons.append(f"exploration paused: {safety.reason}")
    elif exploration:
        budget = min(policy.max_exploration_share, max(remaining - policy.min_arm_share, 0.0))
        explore, dropped = _exploration_arms(
            exploration, exploration_weights, budget, policy.min_arm_share
        )
        arms.extend(explore)
        reasons.extend(dropped)
        remaining -= math.fsum(a.weight for a in explore)
    remaining = max(remaining, 0.0)  # float rounding can leave -1e-19 when the claims fill 1

    if rollout is not None and remaining <= 1e-12:
        reasons.append(f"rollout of {rollout.candidate_config_id} held: no traffic left")
    elif rollout is not None:
        stage = policy.rollout_stages[min(rollout.stage_index, len(policy.rollout_stages) - 1)]
        share = stage * remaining
        arms.append(
            PlannedArm(
                rollout.candidate_config_id,
                share,
                ArmRole.ROLLOUT,
                f"staged rollout at {stage:.0%} of production traffic",
            )
        )
        remaining -= share

    production_share = 1.0 - math.fsum(a.weight for a in arms)
    if production_share > 1e-12:
        arms.insert(
            0, PlannedArm(production_config_id, production_share, ArmRole.PRODUCTION, "incumbent")
        )
    return TrafficPlan(use_case, production_config_id, tuple(arms), tuple(reasons))
