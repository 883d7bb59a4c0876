"""Tonight's decisions for one use case before the traffic plan: safety from monitoring,
experiment winners, and production from evidence (a configuration that beats production on the
objective). Pure decisions live in :mod:`strategies`; this module turns the night's results into
their arguments and keeps the reasons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from strategies.experiment_design import ExperimentProposal
from strategies.objective import Objective
from strategies.promotion import PromotionDecision
from strategies.traffic import ExperimentArms, RolloutState, SafetyOverride, start_rollout
from tasks.nightly import inputs as night_inputs
from tasks.nightly.experiment_plans import (
    DESIGNS_KEY,
    experiment_arms,
    propose_for,
    running_experiments,
    tried_candidates,
)
from tasks.nightly.inputs import UseCaseInputs
from tasks.nightly.loop import (
    config_stats,
    monthly_requests,
    promotion_from_logs,
    promotion_guardrails,
    with_logged_propensities,
)
from tasks.nightly.night import Night, NightOptions

__all__ = [
    "ExperimentDecisions",
    "Safety",
    "experiment_decisions",
    "experiment_guardrails",
    "experiment_step",
    "keep_promising",
    "promotion_step",
    "safety_from_monitoring",
]


@dataclasses.dataclass(frozen=True)
class Safety:
    override: SafetyOverride | None = None
    rollback_version: int | None = None


def safety_from_monitoring(
    inputs: UseCaseInputs, catalogue: Mapping[str, Any], registry: night_inputs.RegistryState
) -> Safety:
    """Monitoring may roll back, break the circuit or pause exploration (applied first)."""
    report = inputs.monitoring.use_cases[0] if inputs.monitoring is not None else None
    action = report.action if report is not None else None
    if action is None:
        return Safety()
    if action.kind in {"rollback", "circuit_breaker"}:
        target = action.target_config_id
        if target and target in catalogue:
            return Safety(
                SafetyOverride(action.kind, action.reason, target),
                registry.serving_versions.get(target),
            )
        return Safety(SafetyOverride("pause_optimizer", f"{action.reason} (no target)"))
    if action.pause_optimizer:
        return Safety(SafetyOverride("pause_optimizer", action.reason))
    return Safety()


@dataclasses.dataclass
class ExperimentDecisions:
    running: list[ExperimentArms] = dataclasses.field(default_factory=list)
    rollout: RolloutState | None = None
    needs_approval: bool = False
    guardrails: dict[str, bool] = dataclasses.field(default_factory=dict)
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)
    designs: dict[str, Any] = dataclasses.field(default_factory=dict)  # carried in the registry


def experiment_decisions(
    experiments: Sequence[Mapping[str, Any]],
    *,
    production_id: str,
    rollout: RolloutState | None,
    safety: SafetyOverride | None,
    catalogue: dict[str, dict[str, Any]],
    reasons: list[str],
    ended: frozenset[str] = frozenset(),
) -> ExperimentDecisions:
    """Running experiments keep their arms; a shipped winner starts a rollout (needs approval).

    A winner whose rollout already stopped or rolled back (``ended``, carried in the registry
    from night to night) is not proposed again from the same evidence: the experiment's "ship"
    stays, the rollout does not restart every night.
    """
    out = ExperimentDecisions(rollout=rollout)
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
            elif winner in ended:
                reasons.append(
                    f"{exp['experiment_id']} ships {winner}, but its rollout already ended "
                    "(stopped or rolled back): not proposed again; approve it by hand "
                    "(`llmopt registry approve`) or start a new experiment"
                )
            elif winner != production_id:
                out.rollout = start_rollout(
                    candidate_config_id=winner, incumbent_config_id=production_id
                )
                out.needs_approval = True
                out.guardrails = experiment_guardrails(exp)
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


def promotion_step(
    objective: Objective,
    inputs: UseCaseInputs,
    night: Night,
    options: NightOptions,
    *,
    production_id: str,
    first_night: bool,
    safety: SafetyOverride | None,
    decided: ExperimentDecisions,
    ended_rollout: str | None = None,
) -> tuple[PromotionDecision | None, str]:
    """Propose a configuration that beats production on the objective (same approval and
    rollout path as an experiment winner), or say why nothing is proposed.

    Args:
        objective: the use case's objective.
        inputs: the night's inputs of the use case.
        night: the night.
        options: the night's options (guard margins for the proposal's guardrails).
        production_id: production after tonight's rollout step.
        first_night: no production version yet (bootstrapped tonight: nothing to beat).
        safety: a monitoring override (no proposal while it holds).
        decided: tonight's experiment decisions (a shipped winner or a rollout goes first);
            a proposal is written into it.
        ended_rollout: the candidate whose rollout stopped or rolled back tonight: it is not
            proposed again on the same night.
    """
    history = inputs.history(night.as_of)
    in_experiments = {c for exp in decided.running for c, _ in exp.arms} - {production_id}
    window = inputs.window(night.as_of)
    decision = promotion_from_logs(
        objective,
        history=history,
        production_id=production_id,
        excluded=sorted(in_experiments),
        monthly=monthly_requests(window, options.lookback_days),
        recent=[str(k) for k in window["config_key"]],
    )
    decision = with_logged_propensities(decision, inputs.routing, objective)
    if first_night:
        return decision, "first night: production bootstrapped on the objective"
    if safety is not None:
        return decision, f"no proposal: safety first ({safety.reason})"
    if decided.rollout is not None:
        why = "an experiment winner is rolling out" if decided.needs_approval else "a rollout"
        return decision, f"no proposal: {why} is in progress"
    if decision.action != "propose" or decision.candidate_config_id is None:
        return decision, decision.reason
    if decision.candidate_config_id == ended_rollout:
        return decision, (
            f"no proposal: {ended_rollout} still beats production on the logs, but its rollout "
            "ended tonight; it is proposed again on a later night if the evidence holds"
        )
    winner = decision.candidate_config_id
    stats = {s.config_key: s for s in config_stats(history)}
    guardrails, notes = promotion_guardrails(
        objective,
        options.guard,
        production=stats[production_id],
        candidate=stats[winner],
        monthly=monthly_requests(window, options.lookback_days),
    )
    decided.rollout = start_rollout(candidate_config_id=winner, incumbent_config_id=production_id)
    decided.needs_approval = True
    decided.guardrails = guardrails
    decided.evidence = decision.evidence | {"guardrail_notes": notes}
    return decision, f"proposed {winner} from logged evidence: {decision.reason}"


def experiment_step(
    objective: Objective,
    inputs: UseCaseInputs,
    night: Night,
    options: NightOptions,
    *,
    promotion: PromotionDecision | None,
    production_id: str,
    first_night: bool,
    safety: SafetyOverride | None,
    decided: ExperimentDecisions,
    analysed: Sequence[Mapping[str, Any]],
    policy: Any,
) -> tuple[ExperimentProposal | None, str]:
    """A pre-registered experiment for a promising candidate the logs cannot decide.

    Runs after :func:`promotion_step`; nothing is proposed on a first night, under a safety
    action, while a rollout or a promotion is under way. A proposal adds the experiment's arms
    to ``decided.running`` and its design to ``decided.designs`` (the registry's
    ``metadata.experiment_designs``), and needs approval like any new configuration: the
    guardrails are the candidate's on its logged traffic so far, failing only on shown harm (the
    experiment is where they get proven, on a limited share).

    Args:
        objective: the use case's objective.
        inputs: the night's inputs of the use case.
        night: the night.
        options: the night's options (guard margins).
        promotion: tonight's promotion decision (its promising candidates).
        production_id: production after tonight's rollout step.
        first_night: production bootstrapped tonight (absent before): no experiment.
        safety: a monitoring override.
        decided: tonight's decisions; a proposal is written into it.
        analysed: tonight's analysed experiments of the use case.
        policy: the design policy (:class:`strategies.experiment_design.DesignPolicy`).

    Returns:
        (the proposal or None when not considered, the sentence for the reasons).
    """
    if first_night:
        return None, "no experiment: production is absent until tonight's bootstrap"
    if safety is not None:
        return None, f"no experiment: safety first ({safety.reason})"
    if decided.rollout is not None:
        return None, "no experiment: a rollout is in progress or proposed"
    routing = inputs.routing
    stats = {s.config_key: s for s in config_stats(inputs.history(night.as_of))}
    proposal = propose_for(
        promotion,
        use_case=inputs.use_case,
        objective=objective,
        stats=stats,
        production_id=production_id,
        requests_per_day=float(inputs.night_metrics.get("requests") or 0.0),
        policy=policy,
        running=running_experiments(analysed, decided.designs),
        tried=tried_candidates(decided.designs, production_id),
        offpolicy_possible=bool(
            routing is not None and routing.rows > 0 and not routing.missing_propensity
        ),
    )
    design = proposal.design
    if proposal.action != "propose" or design is None:
        return proposal, proposal.reason
    guardrails, notes = promotion_guardrails(
        objective,
        options.guard,
        production=stats[production_id],
        candidate=stats[design.treatment_config_id],
        monthly=monthly_requests(inputs.window(night.as_of), options.lookback_days),
        burden="no_harm",
    )
    decided.running.append(experiment_arms(design))
    decided.designs[design.experiment_id] = design.as_dict()
    decided.needs_approval = True
    decided.guardrails = guardrails
    decided.evidence = _experiment_evidence(design.as_dict(), promotion, notes)
    return proposal, proposal.reason


def _experiment_evidence(
    design: dict[str, Any], promotion: PromotionDecision | None, notes: Mapping[str, str]
) -> dict[str, Any]:
    """The evidence bundle of an experiment proposal (the registry version's evidence)."""
    return {
        "source": "logged traffic without propensities",
        "method": "pre-registered experiment",
        DESIGNS_KEY: {design["experiment_id"]: design},
        "promising": [c.as_dict() for c in (promotion.promising if promotion else ())],
        "guardrail_notes": dict(notes),
    }


def experiment_guardrails(exp: Mapping[str, Any]) -> dict[str, bool]:
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


def keep_promising(
    promotion: PromotionDecision | None,
    exploration: list[str],
    weights: dict[str, float] | None,
    *,
    paused: bool,
) -> tuple[list[str], dict[str, float] | None]:
    """A candidate ahead of production but not yet shown keeps exploration traffic, so the
    evidence the promotion test asks for keeps arriving (no experiment is created for it: its
    share comes out of the exploration budget, and the report says how many requests it needs)."""
    if promotion is None or paused:
        return exploration, weights
    promising = [c.config_key for c in promotion.promising if c.config_key not in exploration]
    if not promising:
        return exploration, weights
    merged = list(exploration) + promising
    if weights is not None:
        neutral = 1.0 / max(len(merged), 1)
        weights = dict(weights) | dict.fromkeys(promising, neutral)
    return merged, weights
