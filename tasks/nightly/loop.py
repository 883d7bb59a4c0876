"""The decision loop of one use case: objective, rollout step on evidence, promotion from logs.

:func:`tasks.nightly.use_case.optimize_use_case` calls these between its strategies; the
decisions themselves are pure (:mod:`strategies.objective`, :mod:`strategies.promotion`,
:mod:`strategies.rollout_guard`). This module turns the night's inputs into their arguments and
their results into the plan's evidence bundle and the report's loop section (what the nightly
report, MLflow and the printed summary show per use case).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd
from scipy import stats as sps

from strategies.objective import Objective, monthly_from_daily, objective_from_config
from strategies.offpolicy_promotion import dr_promotion, propensities_vary
from strategies.promotion import PromotionDecision, choose_bootstrap, propose_promotion
from strategies.rollout_guard import RolloutGuard, RolloutJudgement, step_verdict
from strategies.search import ConfigStats
from strategies.traffic import RolloutState, RolloutStep, TrafficPolicy, step_rollout
from tasks.core.config import ConfigError, load_config
from tasks.core.settings import Settings

__all__ = [
    "LOOP_METRICS",
    "bootstrap_by_objective",
    "config_stats",
    "judge_rollout",
    "loop_section",
    "objective_for",
    "plan_expectation",
    "promotion_from_logs",
    "promotion_guardrails",
    "with_logged_propensities",
]

LOOP_METRICS = (
    "objective_production_value",
    "objective_production_lower",
    "objective_best_alternative_value",
    "objective_best_alternative_lower",
    "objective_best_alternative_upper",
    "loop_proposed",
    "loop_experiment_proposed",
    "plan_expected_quality_change",
    "plan_expected_spend_change_usd",
)


def objective_for(
    settings: Settings, use_case: str, section: Mapping[str, Any] | None = None
) -> Objective:
    """The use case's objective from ``[objective]`` of ``nightly.toml`` (defaults + override).

    Args:
        settings: resolved settings (where the configuration lives).
        use_case: whose override applies.
        section: the ``[objective]`` table when the caller has it already.

    Raises:
        ConfigError: the section names an unknown preset, key or an inconsistent constraint.
    """
    if section is None:
        try:
            section = load_config("nightly", settings).get("objective", {})
        except ConfigError as exc:
            if "not found" not in str(exc):
                raise
            section = {}
    try:
        return objective_from_config(section, use_case)
    except ValueError as exc:
        raise ConfigError(f"nightly.toml: {exc}") from exc


def config_stats(frame: pd.DataFrame) -> list[ConfigStats]:
    """Per-configuration sufficient statistics from a ``config_metrics`` frame."""
    return [ConfigStats.from_row(row) for row in frame.to_dict("records")]


def monthly_requests(frame: pd.DataFrame, days: int) -> float | None:
    """Expected monthly requests from a window's request count (for monthly budget caps)."""
    total = float(frame["n"].sum()) if len(frame) else 0.0
    return monthly_from_daily(total / days) if total > 0 and days > 0 else None


def bootstrap_by_objective(
    settings: Settings, use_case: str, window: pd.DataFrame, incumbent: str, days: int
) -> tuple[str, str]:
    """First production: the best configuration on the objective by its lower confidence bound
    (ties to the cheaper); the incumbent only when no configuration can be ranked, and why."""
    objective = objective_for(settings, use_case)
    frame = window[window["use_case"] == use_case]
    choice = choose_bootstrap(
        objective, config_stats(frame), monthly_requests=monthly_requests(frame, days)
    )
    if choice.status == "ok" and choice.config_key is not None and choice.score is not None:
        return choice.config_key, (
            f"bootstrap: production is {choice.config_key}, best on {objective.name} "
            f"(lower bound {choice.score.lower:.4f}; {choice.reason})"
        )
    return incumbent, (
        f"bootstrap: no configuration can be ranked on {objective.name} ({choice.reason}); "
        f"production is the incumbent config {incumbent}"
    )


def judge_rollout(
    rollout: RolloutState,
    pair: Any,
    *,
    guard: RolloutGuard,
    policy: TrafficPolicy,
) -> tuple[RolloutJudgement, RolloutStep]:
    """Judge the current stage on its traffic so far and take the step the evidence supports.

    Args:
        rollout: the rollout before tonight (its history counts the stage's nights).
        pair: :class:`tasks.nightly.inputs.RolloutPair` over the stage's nights.
        guard: margins, alpha and the most nights a stage may take.
        policy: the stages.
    """
    judgement = guard.judge(quality=pair.quality, errors=pair.errors, latency=pair.latency)
    stages = policy.rollout_stages
    share = stages[min(rollout.stage_index, len(stages) - 1)]
    verdict = step_verdict(
        judgement,
        nights_at_stage=rollout.nights_at_stage,
        max_nights=guard.max_nights,
        stage_share=share,
    )
    held = {"advance": True, "rollback": False}.get(verdict.action)
    step = step_rollout(
        rollout,
        guardrails_held=held,
        policy=policy,
        stop_reason=verdict.reason if verdict.action == "stop" else None,
        reason=verdict.reason if verdict.action in {"hold", "rollback"} else None,
    )
    return judgement, step


def promotion_from_logs(
    objective: Objective,
    *,
    history: pd.DataFrame,
    production_id: str,
    excluded: Sequence[str] = (),
    monthly: float | None = None,
    recent: Sequence[str] | None = None,
) -> PromotionDecision:
    """Does a configuration with logged traffic beat production on the objective with confidence?

    Statistics are cumulative (every day up to the night): the sequential test is valid at every
    nightly look on a growing sample. ``excluded`` configurations (arms of running experiments:
    their experiment decides) are not compared.

    Args:
        objective: the use case's objective.
        history: per-configuration statistics up to the night.
        production_id: the production configuration key.
        excluded: configuration keys not to propose.
        monthly: expected monthly requests (monthly budget caps).
        recent: configuration keys with traffic in the lookback window; only these are
            candidates (a configuration that served long ago is not compared with today's
            production: its traffic was not concurrent). ``None``: every key.
    """
    stats = config_stats(history)
    production = next((s for s in stats if s.config_key == production_id), None)
    skip = set(excluded)
    keep = set(recent) if recent is not None else None
    candidates = [
        s for s in stats if s.config_key not in skip and (keep is None or s.config_key in keep)
    ]
    return propose_promotion(
        objective,
        production=production,
        candidates=candidates,
        alpha=1.0 - objective.level,
        monthly_requests=monthly,
    )


def with_logged_propensities(
    decision: PromotionDecision, routing: Any, objective: Objective
) -> PromotionDecision:
    """The promotion decision on the doubly-robust estimate when the logs allow and need it.

    Applies when every logged row of the window carries a propensity and, in some context
    column, an arm's propensities differ between values (the per-configuration means are then
    confounded): :func:`strategies.offpolicy_promotion.dr_promotion` re-judges every candidate
    on the paired DR difference over that column, at the same alpha (Bonferroni over the
    candidates, a confidence sequence over the nights). Otherwise ``decision`` stands.

    Args:
        decision: :func:`promotion_from_logs`' decision.
        routing: the use case's :class:`tasks.allocation.context_stats.RoutingInputs` (None
            when contextual routing is off: no logged sums to estimate with).
        objective: the use case's objective (its level gives alpha).

    Returns:
        The decision to act on.
    """
    if routing is None or routing.rows == 0 or routing.missing_propensity:
        return decision
    column = next((c for c in routing.columns if propensities_vary(c.logged)), None)
    if column is None:
        return decision
    return dr_promotion(decision, column.logged, context=column.column, alpha=1.0 - objective.level)


def plan_expectation(
    weights: Mapping[str, float],
    *,
    window: pd.DataFrame,
    production_id: str,
    requests_per_day: float,
) -> dict[str, Any]:
    """Expected quality and daily spend of tomorrow's plan against production alone.

    Each arm counts at its observed mean quality and cost in the window; an arm without
    observations counts at production's (said in ``unobserved``), so the change is what the
    evidence supports, not a guess about new arms.
    """
    by_key = {str(r["config_key"]): r for r in window.to_dict("records")}
    prod = by_key.get(production_id)
    if prod is None or not prod.get("quality_n") or not prod.get("n"):
        return {"status": "cannot_analyse", "reason": f"production {production_id} has no traffic"}
    base_q = float(prod["quality_sum"]) / float(prod["quality_n"])
    base_c = float(prod["cost_sum"]) / float(prod["n"])
    quality = cost = 0.0
    unobserved: list[str] = []
    for key, weight in weights.items():
        row = by_key.get(key)
        if row is None or not row.get("quality_n") or not row.get("n"):
            unobserved.append(key)
            q, c = base_q, base_c
        else:
            q = float(row["quality_sum"]) / float(row["quality_n"])
            c = float(row["cost_sum"]) / float(row["n"])
        quality += weight * q
        cost += weight * c
    return {
        "status": "ok",
        "quality": quality,
        "quality_change": quality - base_q,
        "cost_per_request": cost,
        "spend_per_day_usd": cost * requests_per_day,
        "spend_change_per_day_usd": (cost - base_c) * requests_per_day,
        "unobserved": unobserved,
    }


def loop_section(
    objective: Objective,
    *,
    production_id: str,
    promotion: PromotionDecision | None,
    proposed: str,
    expectation: Mapping[str, Any],
    experiment: str | None = None,
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """The report's loop section for one use case and its MLflow metrics (comparable nightly).

    Args:
        objective: the objective every decision used.
        production_id: production tonight (before the plan).
        promotion: the promotion decision (None when it was not evaluated, and why is in
            ``proposed``).
        proposed: one sentence: what was proposed and why, or why not.
        expectation: :func:`plan_expectation`'s result.
        experiment: the id of the experiment proposed tonight for a promising candidate.
    """
    prod = promotion.production if promotion is not None else None
    best = promotion.best_alternative if promotion is not None else None
    section: dict[str, Any] = {
        "objective": objective.name,
        "objective_description": objective.describe(),
        "production": production_id,
        "production_value": _value(prod.value if prod else None),
        "production_interval": _pair(prod.lower, prod.upper) if prod else None,
        "best_alternative": best.config_key if best else None,
        "best_alternative_value": _value(best.candidate.value) if best else None,
        "best_alternative_interval": _pair(best.candidate.lower, best.candidate.upper)
        if best
        else None,
        "best_alternative_difference": _value(best.difference) if best else None,
        "best_alternative_difference_interval": _pair(best.lower, best.upper) if best else None,
        "proposed": proposed,
        "promotion": promotion.action if promotion else "not evaluated",
        "experiment_proposed": experiment,
        "expected": dict(expectation),
    }
    ok = expectation.get("status") == "ok"
    metrics: dict[str, float | None] = {
        "objective_production_value": section["production_value"],
        "objective_production_lower": _value(prod.lower) if prod else None,
        "objective_best_alternative_value": section["best_alternative_value"],
        "objective_best_alternative_lower": _value(best.candidate.lower) if best else None,
        "objective_best_alternative_upper": _value(best.candidate.upper) if best else None,
        "loop_proposed": 1.0 if promotion is not None and promotion.action == "propose" else 0.0,
        "loop_experiment_proposed": 1.0 if experiment else 0.0,
        "plan_expected_quality_change": expectation.get("quality_change") if ok else None,
        "plan_expected_spend_change_usd": expectation.get("spend_change_per_day_usd")
        if ok
        else None,
    }
    return section, metrics


def _value(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _pair(low: float, high: float) -> list[float | None]:
    return [_value(low), _value(high)]


def judgement_dict(judgement: RolloutJudgement) -> dict[str, Any]:
    """The judgement as plain values (the findings as dicts)."""
    return dataclasses.asdict(judgement)


def promotion_guardrails(
    objective: Objective,
    guard: RolloutGuard,
    *,
    production: ConfigStats,
    candidate: ConfigStats,
    monthly: float | None = None,
    burden: Literal["non_inferior", "no_harm"] = "non_inferior",
) -> tuple[dict[str, bool], dict[str, str]]:
    """Guardrail verdicts of a logged-evidence proposal, named as the registry policy expects.

    On the cumulative statistics, at the guard's alpha: quality no worse than its margin, error
    rate no higher than its margin, p95 latency within the ratio limit, cost within the
    objective's constraint (a reward objective trades cost itself). ``srm`` does not apply to
    logged traffic (no planned split): it passes, and the note says so.

    ``burden="no_harm"`` (an experiment proposal: the experiment is how the candidate's
    guardrails get proven, on a limited share) passes a guardrail unless harm beyond its margin
    is shown on the logged traffic (the bound on the other side), and cost on the point estimate.

    Returns:
        (name -> passed, name -> the sentence behind the verdict).
    """
    z = float(sps.norm.ppf(1 - guard.alpha / 2))
    dq = candidate.quality_mean - production.quality_mean
    se_q = math.hypot(candidate.quality_se, production.quality_se)
    de = candidate.error_rate - production.error_rate
    se_e = math.hypot(candidate.error_rate_se, production.error_rate_se)
    limit = guard.latency_ratio_limit * production.latency_p95
    score = objective.score(candidate, monthly_requests=monthly)
    sign = 1.0 if burden == "non_inferior" else -1.0  # which end of each interval must hold
    p95_bound = candidate.latency_p95 + sign * z * _finite(candidate.latency_p95_se)
    verdicts = {
        "srm": True,
        "quality": bool(dq - sign * z * se_q > -guard.quality_margin),
        "error_rate": bool(de + sign * z * _finite(se_e) < guard.error_rate_margin),
        "latency_p95": bool(p95_bound <= limit),
        "cost_per_request": bool(
            score.confidently_feasible if burden == "non_inferior" else score.feasible
        ),
    }
    notes = {
        "srm": "not an experiment: logged traffic has no planned split to check",
        "quality": f"difference {dq:+.4f} +/- {z * se_q:.4f}, margin {guard.quality_margin}"
        + ("" if burden == "non_inferior" else " (experiment proposal: fails only on shown harm)"),
        "error_rate": f"difference {de:+.4f}, margin {guard.error_rate_margin}",
        "latency_p95": f"{candidate.latency_p95:.0f} ms (bound {p95_bound:.0f}) vs limit "
        f"{limit:.0f} ms ({guard.latency_ratio_limit}x production)",
        "cost_per_request": score.reason or f"within the objective ({objective.describe()})",
    }
    return verdicts, notes


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
