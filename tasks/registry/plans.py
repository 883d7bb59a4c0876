"""Turn the nightly traffic plan (``strategies.traffic.TrafficPlan``) into a registry config.

The plan speaks in config ids and weights; serving needs the parameters behind each id. The
caller supplies them (``params_for``: config id -> :class:`ModelParams`), and this module builds
the :class:`RegistryConfig`, with arm ids that stay the same from night to night for the same
role and config (``experiment/<experiment_id>/<config_id>``, ``<role>/<config_id>``), so
deterministic assignment keeps units where they were while the plan evolves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from tasks.registry.model import Arm, ConfigValidationError, ModelParams, RegistryConfig

__all__ = ["PlanArmLike", "TrafficPlanLike", "config_from_plan"]


class PlanArmLike(Protocol):
    @property
    def config_id(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def role(self) -> Any: ...
    @property
    def experiment_id(self) -> str | None: ...
    @property
    def variant_id(self) -> str | None: ...


class TrafficPlanLike(Protocol):
    @property
    def use_case(self) -> str: ...
    @property
    def production_config_id(self) -> str: ...
    @property
    def arms(self) -> Sequence[PlanArmLike]: ...


def _role(value: Any) -> str:
    return str(getattr(value, "value", value))


def config_from_plan(
    plan: TrafficPlanLike,
    params_for: Mapping[str, ModelParams],
    *,
    salt: str = "",
    variant_of: Mapping[str, Mapping[str, str]] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> RegistryConfig:
    """The registry configuration serving ``plan``.

    ``variant_of`` maps experiment id -> config id -> variant id (e.g. ``control``) so serving
    logs the experiment's own variant names. Raises :class:`ConfigValidationError` naming any
    config id without parameters, or a plan whose weights do not sum to 1.
    """
    missing = sorted(
        {a.config_id for a in plan.arms} - set(params_for)
        | ({plan.production_config_id} - set(params_for))
    )
    if missing:
        raise ConfigValidationError(f"no parameters for config id(s) {missing}")
    arms = []
    for arm in plan.arms:
        if arm.weight <= 0.0:
            continue
        role = _role(arm.role)
        if role == "experiment" and arm.experiment_id:
            variant = arm.variant_id or (variant_of or {}).get(arm.experiment_id, {}).get(
                arm.config_id
            )
            arm_id = f"experiment/{arm.experiment_id}/{variant or arm.config_id}"
        else:
            arm_id, variant = f"{role}/{arm.config_id}", None
        arms.append(
            Arm(
                arm_id=arm_id,
                params=params_for[arm.config_id],
                weight=float(arm.weight),
                role=role,
                experiment_id=arm.experiment_id,
                variant_id=variant,
                config_id=arm.config_id,
            )
        )
    total = math.fsum(a.weight for a in arms)
    if arms and total != 1.0 and abs(total - 1.0) <= 1e-9:
        # absorb rounding in the largest arm so the stored plan sums to 1 exactly
        largest = max(range(len(arms)), key=lambda i: arms[i].weight)
        rest = math.fsum(a.weight for i, a in enumerate(arms) if i != largest)
        head = arms[largest]
        arms[largest] = Arm(
            arm_id=head.arm_id,
            params=head.params,
            weight=1.0 - rest,
            role=head.role,
            experiment_id=head.experiment_id,
            variant_id=head.variant_id,
            config_id=head.config_id,
        )
    roles = {a.role for a in arms} - {"production"}
    allocation = {
        frozenset(): "static",
        frozenset({"experiment"}): "experiment",
        frozenset({"exploration"}): "bandit",
        frozenset({"bandit"}): "bandit",
        frozenset({"rollout"}): "rollout",
    }.get(frozenset(roles), "mixed")
    single = len(arms) == 1
    return RegistryConfig(
        use_case=plan.use_case,
        params=arms[0].params if single else params_for[plan.production_config_id],
        traffic=() if single else tuple(arms),
        salt=salt,
        allocation="static" if single else allocation,
        metadata=dict(metadata or {}),
    )
