"""The recovery decision when degradation rules fire for the production configuration.

The most severe action the policy allows: ``rollback`` (to the most recently approved other
configuration that meets the quality floor) > ``circuit_breaker`` (to the cheapest approved
configuration meeting the floor) > ``pause_optimizer`` > ``alert_only``. Without a usable target
it falls back to pausing the optimizer and says why; an incident already acted on is not acted
on again (:func:`hold_open_incident`).

Example:
    >>> from strategies.monitor.degradation import DegradationRules, WindowStats, evaluate_rules
    >>> base = WindowStats(n=1000, successes=998, quality_n=1000, quality_sum=800.0, cost_sum=2.0)
    >>> now = WindowStats(n=1000, successes=999, quality_n=1000, quality_sum=590.0, cost_sum=2.0)
    >>> approved = [
    ...     ApprovedConfig(config_id="prod", quality=0.80, cost_per_request=0.002,
    ...                    is_production=True),
    ...     ApprovedConfig(config_id="prev", quality=0.78, cost_per_request=0.003,
    ...                    approved_at="2026-09-01"),
    ... ]
    >>> action = decide_recovery("support-summarize", evaluate_rules(now, base, DegradationRules()),
    ...                          production_config_id="prod", approved_configs=approved)
    >>> action.kind, action.target_config_id
    ('rollback', 'prev')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from strategies.monitor.degradation import (
    ACTION_SEVERITY,
    ActionKind,
    ApprovedConfig,
    DegradationRules,
    RecoveryAction,
    RecoveryPolicy,
    RuleEvaluation,
)


def _candidates(
    approved: Sequence[ApprovedConfig], production_config_id: str | None, floor: float | None
) -> list[ApprovedConfig]:
    return [
        c
        for c in approved
        if c.config_id != production_config_id
        and not c.is_production
        and math.isfinite(c.quality)
        and math.isfinite(c.cost_per_request)
        and (floor is None or c.quality >= floor)
    ]


def _switch(
    template: RecoveryAction,
    kind: ActionKind,
    evaluation: RuleEvaluation,
    pool: list[ApprovedConfig],
    notes: list[str],
) -> RecoveryAction | None:
    """A rollback or circuit-breaker action when the pool has a target (else a note why not)."""
    floor = template.quality_floor
    if kind == "rollback":
        if pool:
            target = max(pool, key=lambda c: (c.approved_at or "", c.quality))
            why = (
                f"roll back to last good approved configuration {target.config_id} "
                f"(approved {target.approved_at or 'unknown'})"
            )
            return _with_target(template, "rollback", target, why)
        notes.append(
            f"no rollback target (no other approved configuration meets the quality floor {floor})"
        )
    elif kind == "circuit_breaker":
        observed_cost = evaluation.observed if evaluation.metric == "cost_per_request" else None
        cheaper = [c for c in pool if observed_cost is None or c.cost_per_request < observed_cost]
        if cheaper:
            target = min(cheaper, key=lambda c: (c.cost_per_request, -c.quality))
            why = (
                "switch to the cheapest approved configuration meeting the quality floor: "
                f"{target.config_id}"
            )
            return _with_target(template, "circuit_breaker", target, why)
        notes.append(
            "no circuit-breaker target (no cheaper approved configuration meets the floor)"
        )
    return None


def decide_recovery(
    use_case: str,
    evaluations: Sequence[RuleEvaluation],
    *,
    production_config_id: str | None,
    approved_configs: Sequence[ApprovedConfig] = (),
    policy: RecoveryPolicy | None = None,
    rules: DegradationRules | None = None,
) -> RecoveryAction | None:
    """The most severe action the policy allows for the rules that fired.

    Args:
        use_case: the use case.
        evaluations: tonight's rule evaluations.
        production_config_id: the production configuration key.
        approved_configs: configurations the registry could switch to.
        policy: what each rule may do (default :class:`RecoveryPolicy`).
        rules: the thresholds (for the quality floor a target must meet).

    Returns:
        The :class:`RecoveryAction`, or ``None`` when no rule fired.
    """
    policy = policy or RecoveryPolicy()
    rules = rules or DegradationRules()
    fired = [e for e in evaluations if e.fired]
    if not fired:
        return None
    names = tuple(e.rule for e in fired)
    # most severe policy first; ties keep the rule order of RULES
    fired.sort(key=lambda e: -ACTION_SEVERITY[policy.action_for(e.rule)])
    baseline_quality = next((e.baseline for e in evaluations if e.rule == "quality_drop"), None)
    floor = rules.floor(baseline_quality)
    pause = policy.pause_optimizer or any(
        policy.action_for(e.rule) == "pause_optimizer" for e in fired
    )

    def alert(evaluation: RuleEvaluation) -> RecoveryAction:
        return RecoveryAction(
            kind="alert_only",
            use_case=use_case,
            reason=evaluation.reason,
            rule=evaluation.rule,
            from_config_id=production_config_id,
            observed=evaluation.observed,
            baseline=evaluation.baseline,
            threshold=evaluation.threshold,
            quality_floor=floor,
            pause_optimizer=pause,
            rules_fired=names,
        )

    pool = _candidates(approved_configs, production_config_id, floor)
    notes: list[str] = []
    for evaluation in fired:
        action = policy.action_for(evaluation.rule)
        switched = _switch(alert(evaluation), action, evaluation, pool, notes)
        if switched is not None:
            return switched
    top = fired[0]
    return replace(
        alert(top),
        kind="pause_optimizer" if pause else "alert_only",
        reason="; ".join([top.reason, *notes, "optimizer paused" if pause else "alert only"]),
    )


def _with_target(
    template: RecoveryAction, kind: ActionKind, target: ApprovedConfig, why: str
) -> RecoveryAction:
    return replace(
        template,
        kind=kind,
        reason=f"{template.reason}; {why}",
        target_config_id=target.config_id,
        target_quality=target.quality,
        target_cost_per_request=target.cost_per_request,
    )


def hold_open_incident(action: RecoveryAction, why: str) -> RecoveryAction:
    """An incident already acted on: keep the optimizer paused, do not roll back again.

    The nightly flow applied the first night's rollback / switch; repeating it every night
    would fight whatever a human did since. The rule is still firing, so exploration stays
    paused until the incident clears.

    Args:
        action: tonight's action for a rule whose incident was already open.
        why: the open incident's reason (added to the action's reason).

    Returns:
        The action as ``pause_optimizer`` without a target (or unchanged but annotated when it
        had no target).
    """
    if action.kind in ("alert_only", "pause_optimizer") and not action.target_config_id:
        return replace(action, reason=f"{action.reason}; {why}")
    return replace(
        action,
        kind="pause_optimizer",
        target_config_id=None,
        target_quality=None,
        target_cost_per_request=None,
        pause_optimizer=True,
        reason=f"{action.reason}; not repeated: {why}",
    )


__all__ = ["decide_recovery", "hold_open_incident"]
