"""One use case tonight: aggregate inputs, then safety, experiments, exploration, frontier and
budget into one traffic plan (:func:`optimize_use_case`). No warehouse access here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from strategies.rollout_guard import RolloutJudgement
from strategies.traffic import (
    ExperimentArms,
    RolloutState,
    RolloutStep,
    SafetyOverride,
    TrafficPlan,
    plan_traffic,
    start_rollout,
    step_rollout,
)
from tasks.core.config import load_config
from tasks.core.settings import Settings
from tasks.nightly import inputs as night_inputs
from tasks.nightly.inputs import UseCaseInputs
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

log = logging.getLogger(__name__)


def aggregate_night(
    settings: Settings, night: Night, options: NightOptions, *, run_key: str
) -> dict[str, UseCaseInputs]:
    """The night's aggregate step: every use case's inputs from one set of grouped scans
    (see :mod:`tasks.nightly.inputs`); monitoring runs here once for all use cases."""
    with _warehouse(settings) as con:
        return night_inputs.aggregate_night(
            settings,
            con,
            as_of=night.as_of,
            use_cases=night.use_cases,
            run_key=run_key,
            lookback_days=options.lookback_days,
            monitoring=options.enabled("monitoring"),
            budget=options.enabled("budget"),
        )


@dataclasses.dataclass(frozen=True)
class _Safety:
    override: SafetyOverride | None = None
    rollback_version: int | None = None


def _safety_from_monitoring(
    inputs: UseCaseInputs, catalogue: Mapping[str, Any], registry: night_inputs.RegistryState
) -> _Safety:
    """Monitoring may roll back, break the circuit or pause exploration (applied first)."""
    report = inputs.monitoring.use_cases[0] if inputs.monitoring is not None else None
    action = report.action if report is not None else None
    if action is None:
        return _Safety()
    if action.kind in {"rollback", "circuit_breaker"}:
        target = action.target_config_id
        if target and target in catalogue:
            return _Safety(
                SafetyOverride(action.kind, action.reason, target),
                registry.serving_versions.get(target),
            )
        return _Safety(SafetyOverride("pause_optimizer", f"{action.reason} (no target)"))
    if action.pause_optimizer:
        return _Safety(SafetyOverride("pause_optimizer", action.reason))
    return _Safety()


@dataclasses.dataclass
class _ExperimentDecisions:
    running: list[ExperimentArms] = dataclasses.field(default_factory=list)
    rollout: RolloutState | None = None
    needs_approval: bool = False
    guardrails: dict[str, bool] = dataclasses.field(default_factory=dict)
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)


def _experiment_decisions(
    experiments: Sequence[Mapping[str, Any]],
    *,
    production_id: str,
    rollout: RolloutState | None,
    safety: SafetyOverride | None,
    catalogue: dict[str, dict[str, Any]],
    reasons: list[str],
) -> _ExperimentDecisions:
    """Running experiments keep their arms; a shipped winner starts a rollout (needs approval)."""
    out = _ExperimentDecisions(rollout=rollout)
    for exp in experiments:
        decision = exp["decision"]
        arm_configs = exp.get("arm_configs", {})
        for info in arm_configs.values():
            catalogue.setdefault(info["config_key"], info["params"])
        if decision["action"] == "ship" and decision.get("variant") in arm_configs:
            winner = arm_configs[decision["variant"]]["config_key"]
            if safety is not None:
                reasons.append(f"{exp['experiment_id']} ships, but safety comes first")
            elif out.rollout is not None:
                reasons.append(f"{exp['experiment_id']} ships {winner}: queued behind rollout")
            elif winner != production_id:
                out.rollout = start_rollout(
                    candidate_config_id=winner, incumbent_config_id=production_id
                )
                out.needs_approval = True
                out.guardrails = _experiment_guardrails(exp)
                out.evidence = {"experiment": exp["experiment_id"], "decision": decision}
                shipped = f"{exp['experiment_id']} ships {decision['variant']}"
                reasons.append(f"{shipped}: rollout of {winner}")
        elif decision["action"] == "keep running" and exp.get("traffic_share", 0) > 0:
            weights = exp.get("weights") or {v: 1 / len(arm_configs) for v in arm_configs}
            variants = tuple(v for v in weights if v in arm_configs)
            arms = tuple((arm_configs[v]["config_key"], float(weights[v])) for v in variants)
            if len(arms) >= 2:
                share = min(float(exp["traffic_share"]), 1.0)
                out.running.append(ExperimentArms(exp["experiment_id"], arms, share, variants))
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

    Reads only ``inputs`` (the night's aggregate step), the Optuna storage and the
    configuration files: no warehouse connection.
    """
    if inputs.problem is not None or inputs.registry is None:
        raise NothingToAnalyse(inputs.problem or f"{use_case}: no registry state")
    registry = inputs.registry
    run_key = run_key_for(night)
    out_dir = artifact_dir(settings, night) / use_case
    out_dir.mkdir(parents=True, exist_ok=True)
    reasons: list[str] = [registry.bootstrap_reason] if registry.bootstrap_reason else []
    results: dict[str, Any] = {}
    plots: list[str] = []
    history = inputs.history(night.as_of)
    catalogue = {str(r["config_key"]): _params_of(r) for r in history.to_dict("records")}
    production_id = registry.production_id
    catalogue.setdefault(production_id, registry.production_params)
    rollout = registry.rollout

    # 1. monitoring (computed in the aggregate step): may roll back / break / pause
    safety = _Safety()
    if inputs.monitoring is not None:
        from tasks.monitoring.run import plot_monitoring

        results["monitoring"] = inputs.monitoring
        plots += [str(p) for p in plot_monitoring(inputs.monitoring, out_dir)]
        safety = _safety_from_monitoring(inputs, catalogue, registry)
        if safety.override is not None and safety.override.kind != "pause_optimizer":
            rollout = None  # a rollback or circuit breaker ends any rollout

    # 2. a rollout in progress: judge last night's traffic
    step: RolloutStep | None = None
    if rollout is not None and safety.override is None and inputs.rollout_pair is not None:
        pair = inputs.rollout_pair
        judgement = options.guard.judge(
            quality=pair.quality, errors=pair.errors, latency=pair.latency
        )
        step = _rollout_step(rollout, judgement, options)
        results["rollout"] = {"judgement": judgement, "step": step}
        reasons.append(f"rollout: {step.reason}")
        production_id = step.production_config_id
        rollout = step.state

    # 3. experiments of this use case
    mine = [e for e in experiments if e.get("use_case") == use_case]
    results["experiments"] = [
        {"experiment_id": e["experiment_id"], "decision": e["decision"]} for e in mine
    ]
    decided = _experiment_decisions(
        mine,
        production_id=production_id,
        rollout=rollout,
        safety=safety.override,
        catalogue=catalogue,
        reasons=reasons,
    )

    # 4. exploration, 5. frontier and budget
    exploration, exploration_weights = _exploration(
        settings,
        night,
        use_case,
        options,
        inputs,
        paused=safety.override is not None,
        catalogue=catalogue,
        results=results,
    )
    plots += _frontier_and_budget(
        settings,
        night,
        use_case,
        options,
        inputs,
        production_id=production_id,
        out_dir=out_dir,
        results=results,
    )

    plan = plan_traffic(
        use_case=use_case,
        production_config_id=production_id,
        policy=options.policy,
        safety=safety.override,
        rollout=decided.rollout,
        experiments=decided.running,
        exploration=[c for c in exploration if c in catalogue],
        exploration_weights=exploration_weights,
    )
    reasons.extend(plan.reasons)
    proposed = _registry_payload(plan, catalogue, decided.rollout, run_key)
    headline = _headline(plan, step, safety.override, decided.needs_approval)
    metrics = dict(inputs.night_metrics)
    metrics["experiments_shipped"] = float(
        sum(1 for e in results["experiments"] if e["decision"]["action"] == "ship")
    )
    monitoring_result = results.get("monitoring")
    metrics["drift_alerts"] = float(len(monitoring_result.alerts)) if monitoring_result else None
    guardrails = decided.guardrails
    return UseCaseOutcome(
        use_case=use_case,
        as_of=night.as_of,
        run_key=run_key,
        current_version=registry.current_version,
        base_version=registry.base_version,
        production_config_id=plan.production_config_id,
        plan=_plan_dict(plan),
        proposed_config=proposed,
        needs_approval=decided.needs_approval,
        guardrails_passed=all(guardrails.values()) if guardrails else not decided.needs_approval,
        guardrails=guardrails,
        registry_action="rollback" if safety.rollback_version is not None else "publish",
        rollback_to_version=safety.rollback_version,
        headline=headline,
        reasons=tuple(reasons),
        metrics=metrics,
        strategies=_jsonable(results),
        plots=tuple(plots),
        evidence=decided.evidence,
    )


def _rollout_step(
    rollout: RolloutState, judgement: RolloutJudgement, options: NightOptions
) -> RolloutStep:
    holds = sum(1 for h in rollout.history if h == "hold")
    if judgement.held is None and holds >= options.max_rollout_holds:
        return step_rollout(rollout, guardrails_held=False, policy=options.policy)
    return step_rollout(rollout, guardrails_held=judgement.held, policy=options.policy)


def _experiment_guardrails(exp: Mapping[str, Any]) -> dict[str, bool]:
    """Guardrail verdicts of the shipped variant, named as the registry policy expects."""
    variant = exp["decision"].get("variant")
    names = {
        "error_rate": "error_rate",
        "cost_usd": "cost_per_request",
        "latency_ms": "latency_p95",
        "quality": "quality",
    }
    out = {"srm": not bool(exp.get("srm", {}).get("mismatch", False))}
    for comparison in exp.get("comparisons", []):
        if comparison.get("variant") != variant:
            continue
        name = names.get(comparison["metric"])
        if name is None:
            continue
        if comparison["role"] == "guardrail":
            out[name] = comparison.get("verdict") in {"non-inferior", "better", "no difference yet"}
        elif comparison["role"] == "primary":
            out[name] = comparison.get("verdict") == "better"
    return out


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


def _safe_id(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._:-" else "-" for ch in text)
    return cleaned.strip("-.")[:190] or "arm"


def _headline(
    plan: TrafficPlan, step: RolloutStep | None, safety: SafetyOverride | None, shipping: bool
) -> str:
    if safety is not None and safety.kind != "pause_optimizer":
        return f"{safety.kind} to {safety.target_config_id}: {safety.reason}"
    parts = [f"production {plan.production_config_id}"]
    if step is not None:
        parts.append(f"rollout {step.action} ({step.candidate_share:.0%})")
    if shipping:
        parts.append("new rollout proposed")
    if safety is not None:
        parts.append(f"exploration paused ({safety.reason})")
    parts.append(f"exploration {plan.exploration_share:.0%}")
    return "; ".join(parts)


def _jsonable(value: Any) -> Any:
    from tasks.core.jsonable import to_jsonable

    return to_jsonable(value)
