"""A routing table into a registry configuration: the routed arms and ``metadata.routing``.

:func:`attach_routing` turns the night's proposed configuration into one that carries the table;
serving resolves it with :func:`tasks.registry.routing.assign_routed` or
``RegistryClient.assign(use_case, unit_id, context=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tasks.registry.model import Arm, ModelParams, RegistryConfig
from tasks.registry.routing import METADATA_KEY, RoutingTable

if TYPE_CHECKING:  # only for the annotation: routing_nightly imports this module
    from tasks.allocation.routing_nightly import NightlyRouting

__all__ = ["attach_routing"]


def _safe_id(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._:-" else "-" for ch in text)
    return cleaned.strip("-.")[:190] or "arm"


def attach_routing(
    proposed_config: Mapping[str, Any],
    routing: NightlyRouting,
    params_for: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The proposed registry configuration with the routing table and its arms.

    Args:
        proposed_config: the night's proposed configuration (``RegistryConfig.to_dict()``).
        routing: tonight's routing (must be publishable).
        params_for: model parameters per config id (the night's catalogue).

    Returns:
        A validated configuration document: traffic = one ``bandit`` arm per routed
        configuration with its overall share, ``metadata.routing`` = the table.

    Raises:
        ValueError: nothing to publish, or a routed configuration without parameters.
    """
    if not routing.publish or routing.proposal is None:
        raise ValueError("no publishable routing table")
    proposal = routing.proposal
    table = RoutingTable.from_dict(proposal.table)
    shares = proposal.policy.shares
    marginal: dict[str, float] = {}
    for value, row in table.rows.items():
        for arm, weight in row.items():
            marginal[arm] = marginal.get(arm, 0.0) + shares.get(value, 0.0) * weight
    total = math.fsum(marginal.values())
    missing = sorted(a for a in marginal if a not in params_for)
    if missing:
        raise ValueError(f"routed configuration(s) without parameters: {missing}")
    ordered = sorted(marginal)
    weights = [marginal[a] / total for a in ordered]
    weights[-1] = 1.0 - math.fsum(weights[:-1])  # exact sum for the registry's check
    arms = tuple(
        Arm(
            arm_id=_safe_id(config_id),
            params=ModelParams(**dict(params_for[config_id])),
            weight=max(weight, 0.0),
            role="bandit",
            config_id=config_id,
        )
        for config_id, weight in zip(ordered, weights, strict=True)
    )
    base = RegistryConfig.from_dict(proposed_config)
    metadata = dict(base.metadata)
    metadata[METADATA_KEY] = table.to_dict()
    metadata["routing_evidence"] = {
        "context": proposal.context,
        "objective": proposal.objective,
        "dr_gain": None if proposal.dr_gain is None else vars(proposal.dr_gain),
        "reasons": list(routing.reasons),
    }
    config = RegistryConfig(
        use_case=base.use_case,
        params=base.params,
        traffic=arms,
        salt=base.salt,
        allocation="bandit",
        metadata=metadata,
    )
    return config.to_dict()
