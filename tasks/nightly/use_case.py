"""One use case tonight: aggregate inputs, then safety, experiments, exploration, frontier and
budget into one traffic plan (:func:`optimize_use_case`). No warehouse access here.

Size: the night's one ordered sequence of decisions per use case and the helpers that shape its
registry payload; the decisions themselves live in :mod:`tasks.nightly.decisions`,
:mod:`tasks.nightly.loop` and :mod:`strategies`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strategies.traffic import (
    RolloutState,
    RolloutStep,
    SafetyOverride,
    TrafficPlan,
    plan_traffic,
)
from tasks.core.config import load_config
from tasks.core.settings import Settings
from tasks.nightly import inputs as night_inputs
from tasks.nightly.decisions import (
    ExperimentDecisions,
    Safety,
    experiment_decisions,
    experiment_step,
    keep_promising,
    promotion_step,
    safety_from_monitoring,
)
from tasks.nightly.experiment_plans import DESIGNS_KEY, design_policy_for, planned_specs
from tasks.nightly.inputs import UseCaseInputs
from tasks.nightly.loop import (
    judge_rollout,
    judgement_dict,
    loop_section,
    objective_for,
    plan_expectation,
)
from tasks.nightly.night import (
    Night,
    NightOptions,
    NothingToAnalyse,
    UseCaseOutcome,
    _params_of,
    _warehouse,
    artifact_dir,
    run_key_for,
)

if TYPE_CHECKING:  # types only: routing_nightly imports the warehouse, loaded when enabled
    from strategies.objective import Objective
    from strategies.promotion import PromotionDecision
    from tasks.allocation.routing_nightly import NightlyRouting

log = logging.getLogger(__name__)


def aggregate_night(
    settings: Settings, night: Night, options: NightOptions, *, run_key: str
) -> dict[str, UseCaseInputs]:
    """The night's aggregate step: every use case's inputs from one set of grouped scans
    (see :mod:`tasks.nightly.inputs`); monitoring runs here once for all use cases."""
    with _warehouse(settings) as con:
        out = night_inputs.aggregate_night(
            settings,
            con,
            as_of=night.as_of,
            use_cases=night.use_cases,
            run_key=run_key,
            lookback_days=options.lookback_days,
            monitoring=options.enabled("monitoring"),
            budget=options.enabled("budget"),
        )
        # --- contextual routing inputs (issue 12 item 3; tasks/allocation/routing_nightly.py)
        if options.enabled("routing"):
            from tasks.allocation.routing_nightly import with_routing_inputs

            out = with_routing_inputs(
                con,
                out,
                as_of=night.as_of,
                objective_for=lambda uc: objective_for(settings, uc),
                budget_config=load_config("budget", settings),
            )
        # --- end contextual routing
        return out


def _exploration(
    settings: Settings,
    night: Night,
    use_case: str,
    options: NightOptions,
    inputs: UseCaseInputs,
    *,
    paused: bool,
    catalogue: dict[str, dict[str, Any]],
    results: dict[str, Any],
) -> tuple[list[str], dict[str, float] | None]:
    """Search candidates, weighted by the bandit's beliefs (none while monitoring pauses)."""
    exploration: list[str] = []
    weights: dict[str, float] | None = None
    if options.enabled("search") and not paused and options.search_candidates > 0:
        from tasks.search.study import load_search_config, open_storage, run_search_round

        config = load_search_config(settings)
        search = run_search_round(
            settings,
            None,
            use_case=use_case,
            as_of=night.as_of,
            n_candidates=options.search_candidates,
            config=config,
            storage=open_storage(config.storage or settings.optuna_storage, schema_checked=True),
            shared=inputs.metrics,
        )
        results["search"] = search
        for candidate in search.candidates:
            catalogue.setdefault(candidate.config_id, dict(candidate.params))
            exploration.append(candidate.config_id)
    if options.enabled("bandits"):
        from tasks.allocation.bandits import bandit_allocation

        bandit = bandit_allocation(
            None,
            use_case=use_case,
            as_of=night.as_of,
            window_days=options.lookback_days,
            floor=options.bandit_floor,
            seed=_stable_seed(use_case, night.as_of),
            shared=inputs.metrics,
        )
        results["bandit"] = bandit
        if bandit.status == "ok" and exploration:
            beliefs = {a.config_id: a.probability_best for a in bandit.arms}
            neutral = 1.0 / max(len(beliefs), 1)
            weights = {c: beliefs.get(c, neutral) for c in exploration}
    return exploration, weights


def _frontier_and_budget(
    settings: Settings,
    night: Night,
    use_case: str,
    options: NightOptions,
    inputs: UseCaseInputs,
    *,
    production_id: str,
    out_dir: Path,
    results: dict[str, Any],
) -> list[str]:
    """Evidence for people: the frontier (plot) and the budget-constrained mix."""
    plots: list[str] = []
    if options.enabled("frontier"):
        from tasks.search.frontier import compute_frontier, plot_frontier

        frontier = compute_frontier(
            None,
            use_case=use_case,
            start=inputs.lookback_start,
            end=night.as_of,
            production_config=production_id,
            shared=inputs.metrics,
        )
        results["frontier"] = frontier
        plots.append(str(plot_frontier(frontier, out_dir / "frontier.png")))
    if options.enabled("budget"):
        from tasks.allocation.budget import candidates_from_frontier, use_case_traffic_mix

        results["budget"] = inputs.budget
        if "frontier" in results and inputs.budget is not None:
            results["budget_mix"] = use_case_traffic_mix(
                None,
                use_case=use_case,
                as_of=night.as_of,
                config=load_config("budget", settings),
                window_days=options.lookback_days,
                candidates=candidates_from_frontier(results["frontier"].points),
                report=inputs.budget,
            )
    return plots


@dataclasses.dataclass
class _Tonight:
    """What the steps of one use case share while tonight's plan is built."""

    use_case: str
    run_key: str
    out_dir: Path
    registry: night_inputs.RegistryState
    catalogue: dict[str, dict[str, Any]]
    production_id: str
    rollout: RolloutState | None
    reasons: list[str] = dataclasses.field(default_factory=list)
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    plots: list[str] = dataclasses.field(default_factory=list)
    safety: Safety = dataclasses.field(default_factory=Safety)
    step: RolloutStep | None = None


def optimize_use_case(
    settings: Settings,
    night: Night,
    use_case: str,
    options: NightOptions,
    experiments: Sequence[Mapping[str, Any]],
    *,
    inputs: UseCaseInputs,
) -> UseCaseOutcome:
    """Run every enabled strategy for one use case and decide tomorrow's traffic plan.

    Reads ``inputs`` (the night's aggregate step), the Optuna storage, the configuration files
    and the serving version's planned experiment designs (registry): no warehouse connection.
    The order is the logic: safety, rollout, experiments, promotion, a new experiment,
    exploration, the plan, the loop section, contextual routing.
    """
    if inputs.problem is not None or inputs.registry is None:
        raise NothingToAnalyse(inputs.problem or f"{use_case}: no registry state")
    t = _tonight(settings, night, use_case, inputs)
    _safety_and_rollout(t, inputs, options)
    mine = [e for e in experiments if e.get("use_case") == use_case]
    decided = _experiment_step(settings, t, mine)
    objective = objective_for(settings, use_case)
    promotion, proposed_why = _promotion_and_experiment(
        settings, t, night, options, inputs, objective=objective, decided=decided, mine=mine
    )
    plan = _plan(settings, t, night, options, inputs, promotion=promotion, decided=decided)
    expectation = plan_expectation(
        plan.weights(),
        window=inputs.window(night.as_of),
        production_id=t.production_id,
        requests_per_day=float(inputs.night_metrics.get("requests") or 0.0),
    )
    t.results["loop"], loop_metrics = loop_section(
        objective,
        production_id=t.production_id,
        promotion=promotion,
        proposed=proposed_why,
        expectation=expectation,
        experiment=t.results.get("experiment_proposal", {}).get("experiment_id"),
    )
    proposed = _registry_payload(plan, t.catalogue, decided.rollout, t.run_key)
    proposed["metadata"]["objective"] = objective.as_dict()
    if decided.designs:
        proposed["metadata"][DESIGNS_KEY] = dict(decided.designs)
    ended = _ended_rollouts(t.registry, t.step)
    if ended:
        proposed["metadata"]["ended_rollouts"] = sorted(ended)
    # --- contextual routing (issue 12 item 3; tasks/allocation/routing_nightly.py)
    proposed, routed = _contextual_routing(
        settings,
        night,
        use_case,
        options,
        inputs,
        objective=objective,
        production_id=t.production_id,
        proposed=proposed,
        catalogue=t.catalogue,
        safety=t.safety,
        decided=decided,
    )
    if routed is not None:
        t.results["routing"] = routed
    # --- end contextual routing
    metrics = _use_case_metrics(inputs, t.results, loop_metrics, routed)
    return _outcome(
        t, night, plan, proposed=proposed, decided=decided, routed=routed, metrics=metrics
    )


def _tonight(settings: Settings, night: Night, use_case: str, inputs: UseCaseInputs) -> _Tonight:
    """The shared state: registry, catalogue of parameters, artifact folder."""
    registry = inputs.registry
    assert registry is not None  # checked by the caller
    out_dir = artifact_dir(settings, night) / use_case
    out_dir.mkdir(parents=True, exist_ok=True)
    history = inputs.history(night.as_of)
    catalogue = {str(r["config_key"]): _params_of(r) for r in history.to_dict("records")}
    catalogue.setdefault(registry.production_id, registry.production_params)
    return _Tonight(
        use_case=use_case,
        run_key=run_key_for(night),
        out_dir=out_dir,
        registry=registry,
        catalogue=catalogue,
        production_id=registry.production_id,
        rollout=registry.rollout,
        reasons=[registry.bootstrap_reason] if registry.bootstrap_reason else [],
    )


def _safety_and_rollout(t: _Tonight, inputs: UseCaseInputs, options: NightOptions) -> None:
    """Steps 1 and 2: monitoring's safety action, then the rollout judged on its traffic."""
    t.safety = _monitoring_safety(inputs, t.catalogue, t.out_dir, results=t.results, plots=t.plots)
    if t.safety.override is not None and t.safety.override.kind != "pause_optimizer":
        t.rollout = None  # a rollback or circuit breaker ends any rollout
    if t.rollout is not None and t.safety.override is None and inputs.rollout_pair is not None:
        judgement, step = judge_rollout(
            t.rollout, inputs.rollout_pair, guard=options.guard, policy=options.policy
        )
        t.results["rollout"] = {"judgement": judgement_dict(judgement), "step": step}
        t.reasons.append(f"rollout: {step.reason}")
        t.production_id = step.production_config_id
        t.rollout = step.state
        t.step = step


def _experiment_step(
    settings: Settings, t: _Tonight, mine: Sequence[Mapping[str, Any]]
) -> ExperimentDecisions:
    """Step 3: this use case's experiments (a winner starts a rollout); planned designs kept."""
    t.results["experiments"] = [
        {"experiment_id": e["experiment_id"], "decision": e["decision"]} for e in mine
    ]
    decided = experiment_decisions(
        mine,
        production_id=t.production_id,
        rollout=t.rollout,
        safety=t.safety.override,
        catalogue=t.catalogue,
        reasons=t.reasons,
        ended=_ended_rollouts(t.registry, t.step),
    )
    decided.designs = dict(planned_specs(settings, [t.use_case]).get(t.use_case, {}))
    return decided


def _promotion_and_experiment(
    settings: Settings,
    t: _Tonight,
    night: Night,
    options: NightOptions,
    inputs: UseCaseInputs,
    *,
    objective: Objective,
    decided: ExperimentDecisions,
    mine: Sequence[Mapping[str, Any]],
) -> tuple[PromotionDecision | None, str]:
    """Steps 3b and 3c: production from evidence; else an experiment for a promising candidate."""
    registry = t.registry
    first_night = registry.current_version is None
    promotion, proposed_why = promotion_step(
        objective,
        inputs,
        night,
        options,
        production_id=t.production_id,
        first_night=first_night,
        safety=t.safety.override,
        decided=decided,
        ended_rollout=(
            registry.rollout.candidate_config_id
            if registry.rollout is not None and t.step is not None and t.step.state is None
            else None
        ),
    )
    t.reasons.append(f"objective {objective.name}: {proposed_why}")
    experiment, why = experiment_step(
        objective,
        inputs,
        night,
        options,
        promotion=promotion,
        production_id=t.production_id,
        first_night=first_night,
        safety=t.safety.override,
        decided=decided,
        analysed=mine,
        policy=design_policy_for(settings, objective, options.guard),
    )
    t.reasons.append(why)
    if experiment is not None and experiment.design is not None:
        t.results["experiment_proposal"] = experiment.design.as_dict()
        proposed_why = f"{proposed_why}; {why}"
    return promotion, proposed_why


def _plan(
    settings: Settings,
    t: _Tonight,
    night: Night,
    options: NightOptions,
    inputs: UseCaseInputs,
    *,
    promotion: PromotionDecision | None,
    decided: ExperimentDecisions,
) -> TrafficPlan:
    """Steps 4 to 6: exploration, frontier and budget, then the plan that sums to 1."""
    paused = t.safety.override is not None
    exploration, weights = _exploration(
        settings,
        night,
        t.use_case,
        options,
        inputs,
        paused=paused,
        catalogue=t.catalogue,
        results=t.results,
    )
    exploration, weights = keep_promising(promotion, exploration, weights, paused=paused)
    in_experiments = {c for exp in decided.running for c, _ in exp.arms}
    t.plots += _frontier_and_budget(
        settings,
        night,
        t.use_case,
        options,
        inputs,
        production_id=t.production_id,
        out_dir=t.out_dir,
        results=t.results,
    )
    plan = plan_traffic(
        use_case=t.use_case,
        production_config_id=t.production_id,
        policy=options.policy,
        safety=t.safety.override,
        rollout=decided.rollout,
        experiments=decided.running,
        exploration=[c for c in exploration if c in t.catalogue and c not in in_experiments],
        exploration_weights=weights,
    )
    t.reasons.extend(plan.reasons)
    return plan


def _outcome(
    t: _Tonight,
    night: Night,
    plan: TrafficPlan,
    *,
    proposed: dict[str, Any],
    decided: ExperimentDecisions,
    routed: NightlyRouting | None,
    metrics: dict[str, float | None],
) -> UseCaseOutcome:
    """The use case's outcome: what the publish step, the report and MLflow read."""
    published_routing = routed is not None and routed.publish
    guardrails = decided.guardrails
    registry = t.registry
    return UseCaseOutcome(
        use_case=t.use_case,
        as_of=night.as_of,
        run_key=t.run_key,
        current_version=registry.current_version,
        base_version=registry.base_version,
        production_config_id=plan.production_config_id,
        plan=_plan_dict(plan),
        proposed_config=proposed,
        needs_approval=decided.needs_approval or published_routing,
        guardrails_passed=all(guardrails.values()) if guardrails else not decided.needs_approval,
        guardrails=guardrails,
        registry_action="rollback" if t.safety.rollback_version is not None else "publish",
        rollback_to_version=t.safety.rollback_version,
        headline=_headline(
            plan,
            t.step,
            t.safety.override,
            decided.needs_approval,
            experiment=t.results.get("experiment_proposal", {}).get("experiment_id"),
        ),
        reasons=tuple(t.reasons),
        metrics=metrics,
        strategies=_jsonable(t.results),
        plots=tuple(t.plots),
        evidence=(
            {**decided.evidence, "routing": proposed["metadata"]["routing_evidence"]}
            if published_routing
            else decided.evidence
        ),
    )


def _monitoring_safety(
    inputs: UseCaseInputs,
    catalogue: Mapping[str, Any],
    out_dir: Path,
    *,
    results: dict[str, Any],
    plots: list[str],
) -> Safety:
    """Step 1: tonight's monitoring report (plotted) and the safety action it calls for.

    Args:
        inputs: the use case's aggregate inputs (monitoring computed there, or None).
        catalogue: parameters by configuration id.
        out_dir: where the plots go.
        results: the night's strategy results (``monitoring`` is added).
        plots: the plot paths (extended).

    Returns:
        The safety action (none when monitoring did not run).
    """
    if inputs.monitoring is None or inputs.registry is None:
        return Safety()
    from tasks.monitoring.run import plot_monitoring

    results["monitoring"] = inputs.monitoring
    plots += [str(p) for p in plot_monitoring(inputs.monitoring, out_dir)]
    return safety_from_monitoring(inputs, catalogue, inputs.registry)


def _contextual_routing(
    settings: Settings,
    night: Night,
    use_case: str,
    options: NightOptions,
    inputs: UseCaseInputs,
    *,
    objective: Objective,
    production_id: str,
    proposed: dict[str, Any],
    catalogue: Mapping[str, Any],
    safety: Safety,
    decided: ExperimentDecisions,
) -> tuple[dict[str, Any], NightlyRouting | None]:
    """The per-context routing table, when enabled; held while anything else moves traffic.

    Args:
        settings: locations and configuration.
        night: tonight.
        use_case: the use case.
        options: the night's options (``routing`` may be disabled).
        inputs: the use case's aggregate inputs (routing cells).
        objective: the use case's objective.
        production_id: production tonight.
        proposed: the proposed registry configuration.
        catalogue: parameters by configuration id.
        safety: tonight's safety action.
        decided: tonight's experiment decisions (a rollout or a running experiment holds it).

    Returns:
        The (maybe routed) proposed configuration and the routing result (None: disabled).
    """
    if not options.enabled("routing"):
        return proposed, None
    from tasks.allocation.routing_nightly import routing_step

    held = [safety.override and "a safety action", decided.rollout and "a rollout"]
    held += ["an experiment"] if decided.running else []
    return routing_step(
        inputs,
        objective=objective,
        production_id=production_id,
        budget_config=load_config("budget", settings),
        proposed_config=proposed,
        params_for=catalogue,
        held_by=", ".join(h for h in held if h) or None,
        seed=_stable_seed(use_case, night.as_of),
    )


def _use_case_metrics(
    inputs: UseCaseInputs,
    results: Mapping[str, Any],
    loop_metrics: Mapping[str, float | None],
    routed: NightlyRouting | None,
) -> dict[str, float | None]:
    """Tonight's MLflow metrics of one use case (comparable across nights).

    Args:
        inputs: the aggregate inputs (tonight's traffic metrics).
        results: the strategy results (experiments, monitoring).
        loop_metrics: the decision loop's metrics.
        routed: the routing result, if routing ran.

    Returns:
        Metric name to value (None: not measured tonight).
    """
    metrics: dict[str, float | None] = dict(inputs.night_metrics)
    metrics["experiments_shipped"] = float(
        sum(1 for e in results["experiments"] if e["decision"]["action"] == "ship")
    )
    monitoring_result = results.get("monitoring")
    metrics["drift_alerts"] = float(len(monitoring_result.alerts)) if monitoring_result else None
    metrics.update(loop_metrics)
    metrics.update(routed.metrics if routed is not None else {})
    return metrics


def _stable_seed(use_case: str, day: dt.date) -> int:
    digest = hashlib.sha256(f"{use_case}|{day.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _plan_dict(plan: TrafficPlan) -> dict[str, Any]:
    return {
        "use_case": plan.use_case,
        "production_config_id": plan.production_config_id,
        "arms": [
            {
                "config_id": a.config_id,
                "weight": a.weight,
                "role": a.role.value,
                "reason": a.reason,
                "experiment_id": a.experiment_id,
            }
            for a in plan.arms
        ],
        "reasons": list(plan.reasons),
        "exploration_share": plan.exploration_share,
    }


def _registry_payload(
    plan: TrafficPlan,
    catalogue: Mapping[str, Mapping[str, Any]],
    rollout: RolloutState | None,
    run_key: str,
) -> dict[str, Any]:
    """The plan as a registry configuration document (validated again by the registry)."""
    from tasks.registry.model import ModelParams
    from tasks.registry.plans import config_from_plan

    needed = {a.config_id for a in plan.arms} | {plan.production_config_id}
    params = {key: ModelParams(**dict(catalogue[key])) for key in needed}
    metadata: dict[str, Any] = {
        "production_config_id": plan.production_config_id,
        "run_key": run_key,
        "reasons": list(plan.reasons),
    }
    if rollout is not None:
        metadata["rollout"] = dataclasses.asdict(rollout) | {"history": list(rollout.history)}
    return config_from_plan(plan, params, metadata=metadata).to_dict()


def _ended_rollouts(registry: Any, step: RolloutStep | None) -> frozenset[str]:
    """Candidates whose rollout stopped or rolled back: the registry's list plus tonight's."""
    ended = set(registry.ended_rollouts)
    if registry.rollout is not None and step is not None and step.action in {"stop", "rollback"}:
        ended.add(registry.rollout.candidate_config_id)
    return frozenset(ended)


def _safe_id(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._:-" else "-" for ch in text)
    return cleaned.strip("-.")[:190] or "arm"


def _headline(
    plan: TrafficPlan,
    step: RolloutStep | None,
    safety: SafetyOverride | None,
    shipping: bool,
    *,
    experiment: str | None = None,
) -> str:
    if safety is not None and safety.kind != "pause_optimizer":
        return f"{safety.kind} to {safety.target_config_id}: {safety.reason}"
    parts = [f"production {plan.production_config_id}"]
    if step is not None and step.action in {"stop", "rollback"}:
        parts.append(f"rollout {step.reason}")
    elif step is not None:
        parts.append(f"rollout {step.action} ({step.candidate_share:.0%})")
    if experiment is not None:
        parts.append(f"experiment {experiment} proposed")
    elif shipping:
        parts.append("new rollout proposed")
    if safety is not None:
        parts.append(f"exploration paused ({safety.reason})")
    parts.append(f"exploration {plan.exploration_share:.0%}")
    return "; ".join(parts)


def _jsonable(value: Any) -> Any:
    from tasks.core.jsonable import to_jsonable

    return to_jsonable(value)
