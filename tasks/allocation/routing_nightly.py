"""Contextual routing with a use case's settings: the CLI command and the nightly flow's two hooks.

* :func:`use_case_routing` (``llmopt bandit --contextual``): window, context columns and budget
  from ``budget.toml``, then :func:`tasks.allocation.routing.plan_contextual_routing`.
* The nightly flow aggregates once and decides without a connection:
  :func:`with_routing_inputs` (:func:`routing_inputs_for` per use case) in the aggregate step,
  :func:`routing_step` (:func:`nightly_routing`) in the per-use-case step. It records the
  proposal and publishes it only when the traffic is free (no experiment, rollout or safety
  action holds it) and ``[routing] publish = true``: :func:`attach_routing` then puts the table
  in the proposed registry configuration (``metadata.routing``; its arms are the routed
  configurations with their overall shares, role ``bandit``), resolved by serving with
  :func:`tasks.registry.routing.assign_routed`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from strategies.objective import Objective
from tasks.allocation.budget import BudgetReport, budget_report, use_case_settings
from tasks.allocation.routing import (
    DEFAULT_CONTEXT_COLUMNS,
    CannotRoute,
    RoutingBudget,
    RoutingInputs,
    RoutingProposal,
    plan_contextual_routing,
    routing_inputs,
)
from tasks.allocation.routing_publish import attach_routing

log = logging.getLogger(__name__)

__all__ = [
    "NightlyRouting",
    "attach_routing",
    "budget_from_report",
    "nightly_routing",
    "routing_inputs_for",
    "routing_step",
    "use_case_routing",
    "with_routing_inputs",
]


def routing_inputs_for(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    as_of: dt.date,
    objective: Objective,
    budget_config: Mapping[str, Any],
    columns: Sequence[str] | None = None,
) -> RoutingInputs:
    """The aggregate step: :func:`routing_inputs` over the ``[routing]`` window.

    Args:
        con: the warehouse.
        use_case: the use case.
        as_of: last day of the window.
        objective: the use case's objective.
        budget_config: the parsed ``budget.toml`` (``[routing]`` and the use case's
            ``context_columns``).
        columns: context columns (default: the use case's, else ``[routing]``'s, else all four
            canonical ones).

    Returns:
        The aggregated :class:`RoutingInputs`.
    """
    opts = dict(budget_config.get("routing", {}))
    mine = use_case_settings(budget_config, use_case)
    chosen = columns or mine.get("context_columns") or opts.get("context_columns")
    start = as_of - dt.timedelta(days=int(opts.get("window_days", 14)) - 1)
    return routing_inputs(
        con,
        use_case=use_case,
        start=start,
        end=as_of,
        objective=objective,
        columns=list(chosen or DEFAULT_CONTEXT_COLUMNS),
    )


def budget_from_report(
    report: BudgetReport | None, monthly_budget_usd: float | None
) -> RoutingBudget | None:
    """Where the month stands, for the routing LP (``None`` without a budget or a volume)."""
    if report is None or monthly_budget_usd is None:
        return None
    remaining = report.projected_monthly_requests - report.requests_to_date
    if remaining <= 0:
        return None
    return RoutingBudget(
        monthly_budget_usd=float(monthly_budget_usd),
        month_to_date_usd=report.month_to_date_usd,
        remaining_requests=remaining,
    )


def _monthly_budget(
    objective: Objective, budget_config: Mapping[str, Any], use_case: str
) -> float | None:
    value = objective.monthly_budget_usd or use_case_settings(budget_config, use_case).get(
        "monthly_budget_usd"
    )
    return None if value is None else float(value)


def _plan(
    inputs: RoutingInputs,
    budget_config: Mapping[str, Any],
    *,
    production: str | Mapping[str, float] | None,
    budget: RoutingBudget | None,
    seed: int,
) -> RoutingProposal | CannotRoute:
    opts = dict(budget_config.get("routing", {}))
    return plan_contextual_routing(
        inputs,
        production=production,
        budget=budget,
        floor=float(opts.get("floor", 0.0)),
        confidence=float(opts.get("confidence", 0.95)),
        min_ess=float(opts.get("min_ess", 200.0)),
        seed=seed,
    )


def use_case_routing(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    as_of: dt.date,
    objective: Objective,
    budget_config: Mapping[str, Any],
    columns: Sequence[str] | None = None,
    production: str | Mapping[str, float] | None = None,
    seed: int = 0,
) -> RoutingProposal | CannotRoute:
    """Routing for one use case with its settings (``budget.toml`` ``[routing]`` and budget).

    Args:
        con: the warehouse.
        use_case: the use case.
        as_of: last day of the window.
        objective: the use case's objective (``nightly.toml`` ``[objective]``).
        budget_config: the parsed ``budget.toml``: ``[routing]`` options, the use case's
            ``context_columns`` and ``monthly_budget_usd`` (a budget caps the mix).
        columns: context columns to consider (default: the use case's, else ``[routing]``'s).
        production: production's config id or weights (``None``: best single configuration).
        seed: posterior-draw seed.

    Returns:
        What :func:`plan_contextual_routing` returns.
    """
    inputs = routing_inputs_for(
        con,
        use_case=use_case,
        as_of=as_of,
        objective=objective,
        budget_config=budget_config,
        columns=columns,
    )
    monthly = _monthly_budget(objective, budget_config, use_case)
    report = None
    if monthly is not None:
        report = budget_report(con, as_of=as_of, config=budget_config, use_cases=[use_case])[0]
    budget = budget_from_report(report, monthly)
    return _plan(inputs, budget_config, production=production, budget=budget, seed=seed)


@dataclass(frozen=True, kw_only=True)
class NightlyRouting:
    """Tonight's routing for one use case: the proposal and whether the night may publish it."""

    publish: bool
    reasons: tuple[str, ...]
    proposal: RoutingProposal | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)


def nightly_routing(
    inputs: RoutingInputs | None,
    *,
    objective: Objective,
    production_id: str,
    budget_config: Mapping[str, Any],
    budget: BudgetReport | None = None,
    held_by: str | None = None,
    seed: int = 0,
) -> NightlyRouting:
    """The per-use-case step: learn, check off-policy against production, decide to publish.

    Args:
        inputs: from :func:`routing_inputs_for` in the aggregate step (``None``: not computed).
        objective: the use case's objective.
        production_id: tonight's production configuration.
        budget_config: the parsed ``budget.toml``.
        budget: the use case's budget report from the aggregate step.
        held_by: why the traffic is not free tonight (an experiment, a rollout, a safety
            action); a proposal is then recorded but not published.
        seed: posterior-draw seed.

    Returns:
        :class:`NightlyRouting`; ``metrics`` are comparable across nights (MLflow).
    """
    if inputs is None:
        return NightlyRouting(publish=False, reasons=("routing not computed tonight",))
    monthly = _monthly_budget(objective, budget_config, inputs.use_case)
    result = _plan(
        inputs,
        budget_config,
        production=production_id,
        budget=budget_from_report(budget, monthly),
        seed=seed,
    )
    if isinstance(result, CannotRoute):
        return NightlyRouting(
            publish=False, reasons=result.reasons, metrics={"routing_proposed": 0.0}
        )
    gain = result.dr_gain
    metrics: dict[str, float | None] = {
        "routing_proposed": 1.0 if result.status == "proposed" else 0.0,
        "routing_dr_gain": None if gain is None else gain.value,
        "routing_dr_gain_lower": None if gain is None else gain.lower,
        "routing_expected_cost_usd": result.policy.expected_cost,
        "routing_expected_quality": result.policy.expected_quality,
    }
    reasons = list(result.reasons)
    publish = result.status == "proposed"
    if publish and held_by:
        reasons.append(f"not published tonight: {held_by}")
        publish = False
    return NightlyRouting(publish=publish, reasons=tuple(reasons), proposal=result, metrics=metrics)


def with_routing_inputs(
    con: duckdb.DuckDBPyConnection,
    inputs_by_use_case: Mapping[str, Any],
    *,
    as_of: dt.date,
    objective_for: Callable[[str], Objective],
    budget_config: Mapping[str, Any],
) -> dict[str, Any]:
    """The aggregate step's hook: each use case's inputs with ``routing`` filled in.

    Args:
        con: the warehouse (the aggregate step's connection).
        inputs_by_use_case: the night's per-use-case inputs (dataclasses with a ``routing``
            field and a ``problem`` field; those with a problem are left as they are).
        as_of: the night.
        objective_for: the use case's objective.
        budget_config: the parsed ``budget.toml``.

    Returns:
        The same mapping with ``routing`` set to :class:`RoutingInputs` where it could be built.
    """
    out: dict[str, Any] = {}
    for use_case, inputs in inputs_by_use_case.items():
        if getattr(inputs, "problem", None) is not None:
            out[use_case] = inputs
            continue
        try:
            routing = routing_inputs_for(
                con,
                use_case=use_case,
                as_of=as_of,
                objective=objective_for(use_case),
                budget_config=budget_config,
            )
        except ValueError as exc:  # a bad context column: this use case routes nothing tonight
            log.warning("%s: contextual routing skipped: %s", use_case, exc)
            routing = None
        out[use_case] = dataclasses.replace(inputs, routing=routing)
    return out


def routing_step(
    inputs: Any,
    *,
    objective: Objective,
    production_id: str,
    budget_config: Mapping[str, Any],
    proposed_config: Mapping[str, Any],
    params_for: Mapping[str, Mapping[str, Any]],
    held_by: str | None,
    seed: int = 0,
) -> tuple[dict[str, Any], NightlyRouting]:
    """The per-use-case hook: tonight's routing and the (maybe routed) proposed configuration.

    Publishing also needs ``[routing] publish = true`` in ``budget.toml`` (the shipped default
    file sets it; without it the table is evidence in the report only).

    Args:
        inputs: the use case's night inputs (``routing`` and ``budget`` fields).
        objective: the use case's objective.
        production_id: tonight's production configuration.
        budget_config: the parsed ``budget.toml``.
        proposed_config: the night's proposed registry configuration.
        params_for: model parameters per config id (the night's catalogue).
        held_by: why the traffic is not free tonight, or ``None``.
        seed: posterior-draw seed.

    Returns:
        ``(proposed configuration, NightlyRouting)``; the configuration carries the table only
        when it is published.
    """
    routed = nightly_routing(
        getattr(inputs, "routing", None),
        objective=objective,
        production_id=production_id,
        budget_config=budget_config,
        budget=getattr(inputs, "budget", None),
        held_by=held_by,
        seed=seed,
    )
    if routed.publish and not budget_config.get("routing", {}).get("publish", False):
        routed = dataclasses.replace(
            routed,
            publish=False,
            reasons=(*routed.reasons, "not published: [routing] publish = false"),
        )
    if not routed.publish:
        return dict(proposed_config), routed
    return attach_routing(proposed_config, routed, params_for), routed
