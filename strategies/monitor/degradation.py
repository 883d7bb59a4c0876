"""Degradation rules and recovery decisions for the production configuration of a use case.

Pure: sufficient statistics and the list of approved configurations in, a decision out. The
nightly flow applies the decision to the registry; this module never touches it.

Rules (per use case, from ``data/config/monitoring.toml``), each compared with the production
configuration's own baseline (its reference window):

* ``quality_drop``: mean quality below ``baseline * (1 - quality_drop_relative)``;
* ``error_rate``: error rate above ``error_rate_max`` *and* a one-sided binomial test against
  ``error_rate_max`` rejects at ``alpha`` (a day with 11 errors in 1000 calls is not an incident);
* ``cost_spike``: cost per request above ``cost_ratio_max`` times the baseline;
* ``latency_slo``: latency p95 above ``latency_p95_slo_ms`` (when an SLO is configured).

A rule needs ``min_requests`` calls in the current window, otherwise it is "not analysable" with a
reason (never a silent pass). When rules fire, :func:`decide_recovery` picks the most severe action
the policy allows: ``rollback`` (to the most recently approved other configuration that meets the
quality floor) > ``circuit_breaker`` (to the cheapest approved configuration meeting the floor) >
``pause_optimizer`` > ``alert_only``. Without a usable target it falls back to pausing the
optimizer and says why. :func:`deduplicate` turns repeated nightly firings of one incident into one
alert per ``cooldown_days``.

Example:
    >>> base = WindowStats(n=1000, successes=998, quality_n=1000, quality_sum=800.0, cost_sum=2.0)
    >>> now = WindowStats(n=1000, successes=999, quality_n=1000, quality_sum=590.0, cost_sum=2.0)
    >>> fired = [e.rule for e in evaluate_rules(now, base, DegradationRules()) if e.fired]
    >>> fired
    ['quality_drop']
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

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from scipy import stats

ActionKind = Literal["rollback", "circuit_breaker", "pause_optimizer", "alert_only"]
ACTION_SEVERITY: dict[str, int] = {
    "alert_only": 0,
    "pause_optimizer": 1,
    "circuit_breaker": 2,
    "rollback": 3,
}
RULES = ("quality_drop", "error_rate", "cost_spike", "latency_slo")


@dataclass(frozen=True)
class WindowStats:
    """Sufficient statistics of one configuration over one window."""

    n: int
    successes: int
    quality_n: int = 0
    quality_sum: float = 0.0
    quality_sum_squares: float = 0.0
    cost_sum: float = 0.0
    latency_p95: float | None = None

    @property
    def error_rate(self) -> float | None:
        return 1.0 - self.successes / self.n if self.n > 0 else None

    @property
    def quality_mean(self) -> float | None:
        return self.quality_sum / self.quality_n if self.quality_n > 0 else None

    @property
    def cost_per_request(self) -> float | None:
        return self.cost_sum / self.n if self.n > 0 else None


@dataclass(frozen=True)
class DegradationRules:
    """Thresholds of the rules; ``None`` switches a rule off."""

    quality_drop_relative: float | None = 0.20
    error_rate_max: float | None = 0.01
    cost_ratio_max: float | None = 2.0
    latency_p95_slo_ms: float | None = None
    min_requests: int = 50
    alpha: float = 0.01
    quality_floor: float | None = None  # absolute floor; default baseline * (1 - drop)

    def floor(self, baseline_quality: float | None) -> float | None:
        """Quality a recovery target must reach."""
        if self.quality_floor is not None:
            return self.quality_floor
        if baseline_quality is None or self.quality_drop_relative is None:
            return None
        return baseline_quality * (1.0 - self.quality_drop_relative)


@dataclass(frozen=True)
class RecoveryPolicy:
    """What each rule may do when it fires for the production configuration."""

    on_quality_drop: ActionKind = "rollback"
    on_error_rate: ActionKind = "rollback"
    on_cost_spike: ActionKind = "circuit_breaker"
    on_latency_slo: ActionKind = "alert_only"
    pause_optimizer: bool = True
    cooldown_days: int = 7

    def action_for(self, rule: str) -> ActionKind:
        kind: ActionKind = getattr(self, f"on_{rule}")
        return kind


@dataclass(frozen=True, kw_only=True)
class RuleEvaluation:
    """One rule on one night: fired or not, with the numbers behind it."""

    rule: str
    metric: str
    analysable: bool
    fired: bool
    observed: float | None
    baseline: float | None
    threshold: float | None
    reason: str


@dataclass(frozen=True)
class ApprovedConfig:
    """An approved configuration the registry could serve, with its known quality and cost."""

    config_id: str
    quality: float
    cost_per_request: float
    latency_p95_ms: float | None = None
    approved_at: str | None = None  # ISO date/time; the most recent is the "last good"
    is_production: bool = False


@dataclass(frozen=True)
class RecoveryAction:
    """The decision for one use case; the nightly flow applies it to the registry."""

    kind: ActionKind
    use_case: str
    reason: str
    rule: str | None = None
    from_config_id: str | None = None
    target_config_id: str | None = None
    observed: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    quality_floor: float | None = None
    target_quality: float | None = None
    target_cost_per_request: float | None = None
    pause_optimizer: bool = True
    rules_fired: tuple[str, ...] = ()


def _skip(rule: str, metric: str, reason: str) -> RuleEvaluation:
    return RuleEvaluation(
        rule=rule,
        metric=metric,
        analysable=False,
        fired=False,
        observed=None,
        baseline=None,
        threshold=None,
        reason=reason,
    )


def evaluate_rules(
    current: WindowStats,
    baseline: WindowStats | None,
    rules: DegradationRules,
    *,
    baseline_quality: float | None = None,
    baseline_cost: float | None = None,
) -> list[RuleEvaluation]:
    """Evaluate every configured rule; each result says fired / not fired / not analysable.

    ``baseline_quality`` / ``baseline_cost`` (e.g. the registry's numbers for the production
    configuration) override the reference window's, which a lasting incident would otherwise
    slowly absorb.
    """
    out: list[RuleEvaluation] = []
    few = current.n < rules.min_requests
    few_reason = f"only {current.n} requests (need {rules.min_requests})"

    if rules.quality_drop_relative is not None:
        base_q = baseline_quality
        if base_q is None and baseline is not None:
            base_q = baseline.quality_mean
        if current.quality_n < rules.min_requests:
            out.append(
                _skip(
                    "quality_drop",
                    "quality",
                    f"only {current.quality_n} quality scores (need {rules.min_requests})",
                )
            )
        elif base_q is None or base_q <= 0:
            out.append(
                _skip(
                    "quality_drop",
                    "quality",
                    "no baseline quality for the production configuration",
                )
            )
        else:
            q = float(current.quality_mean or 0.0)
            limit = base_q * (1.0 - rules.quality_drop_relative)
            drop = 1.0 - q / base_q
            out.append(
                RuleEvaluation(
                    rule="quality_drop",
                    metric="quality",
                    analysable=True,
                    fired=q < limit,
                    observed=q,
                    baseline=base_q,
                    threshold=limit,
                    reason=f"quality {q:.4f} vs baseline {base_q:.4f} ({drop:.1%} drop; "
                    f"limit {rules.quality_drop_relative:.0%})",
                )
            )

    if rules.error_rate_max is not None:
        if few:
            out.append(_skip("error_rate", "error_rate", few_reason))
        else:
            errors = current.n - current.successes
            rate = errors / current.n
            pvalue = float(
                stats.binomtest(
                    errors, current.n, rules.error_rate_max, alternative="greater"
                ).pvalue
            )
            fired = rate > rules.error_rate_max and pvalue < rules.alpha
            out.append(
                RuleEvaluation(
                    rule="error_rate",
                    metric="error_rate",
                    analysable=True,
                    fired=fired,
                    observed=rate,
                    baseline=baseline.error_rate if baseline else None,
                    threshold=rules.error_rate_max,
                    reason=f"error rate {rate:.2%} ({errors}/{current.n}) vs max "
                    f"{rules.error_rate_max:.2%}, one-sided binomial p {pvalue:.2g}",
                )
            )

    if rules.cost_ratio_max is not None:
        base_c = baseline_cost
        if base_c is None and baseline is not None:
            base_c = baseline.cost_per_request
        if few:
            out.append(_skip("cost_spike", "cost_per_request", few_reason))
        elif base_c is None or base_c <= 0:
            out.append(
                _skip(
                    "cost_spike",
                    "cost_per_request",
                    "no baseline cost for the production configuration",
                )
            )
        else:
            c = float(current.cost_per_request or 0.0)
            limit = base_c * rules.cost_ratio_max
            out.append(
                RuleEvaluation(
                    rule="cost_spike",
                    metric="cost_per_request",
                    analysable=True,
                    fired=c > limit,
                    observed=c,
                    baseline=base_c,
                    threshold=limit,
                    reason=f"cost per request {c:.6f} is {c / base_c:.2f}x the baseline "
                    f"{base_c:.6f} (limit {rules.cost_ratio_max}x)",
                )
            )

    if rules.latency_p95_slo_ms is not None:
        p95 = current.latency_p95
        if few or p95 is None or not math.isfinite(p95):
            out.append(_skip("latency_slo", "latency_p95", few_reason if few else "no latency p95"))
        else:
            out.append(
                RuleEvaluation(
                    rule="latency_slo",
                    metric="latency_p95",
                    analysable=True,
                    fired=p95 > rules.latency_p95_slo_ms,
                    observed=p95,
                    baseline=baseline.latency_p95 if baseline else None,
                    threshold=rules.latency_p95_slo_ms,
                    reason=f"latency p95 {p95:.0f} ms vs SLO {rules.latency_p95_slo_ms:.0f} ms",
                )
            )
    return out


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


def decide_recovery(
    use_case: str,
    evaluations: Sequence[RuleEvaluation],
    *,
    production_config_id: str | None,
    approved_configs: Sequence[ApprovedConfig] = (),
    policy: RecoveryPolicy | None = None,
    rules: DegradationRules | None = None,
) -> RecoveryAction | None:
    """The most severe action the policy allows for the rules that fired; ``None`` if none fired."""
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
    notes: list[str] = []
    for evaluation in fired:
        template = RecoveryAction(
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
        kind = policy.action_for(evaluation.rule)
        pool = _candidates(approved_configs, production_config_id, floor)
        if kind == "rollback":
            if pool:
                target = max(pool, key=lambda c: (c.approved_at or "", c.quality))
                why = (
                    f"roll back to last good approved configuration {target.config_id} "
                    f"(approved {target.approved_at or 'unknown'})"
                )
                return _with_target(template, "rollback", target, why)
            notes.append(
                "no rollback target (no other approved configuration meets the quality "
                f"floor {floor})"
            )
        elif kind == "circuit_breaker":
            observed_cost = evaluation.observed if evaluation.metric == "cost_per_request" else None
            cheaper = [
                c for c in pool if observed_cost is None or c.cost_per_request < observed_cost
            ]
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
    top = fired[0]
    return RecoveryAction(
        kind="pause_optimizer" if pause else "alert_only",
        use_case=use_case,
        reason="; ".join([top.reason, *notes, "optimizer paused" if pause else "alert only"]),
        rule=top.rule,
        from_config_id=production_config_id,
        observed=top.observed,
        baseline=top.baseline,
        threshold=top.threshold,
        quality_floor=floor,
        pause_optimizer=pause,
        rules_fired=names,
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


@dataclass(frozen=True)
class AlertCandidate:
    """Something worth telling a human; ``incident_key`` groups repeats of one incident."""

    incident_key: str
    use_case: str
    kind: Literal["rule", "drift", "change", "anomaly"]
    name: str
    severity: Literal["info", "warning", "critical"]
    message: str
    details: Mapping[str, float | str | int | bool | None] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PastAlert:
    """An incident seen by a run; ``raised`` is False when that run suppressed it.

    Args:
        incident_key: ``use_case|kind|name``, what de-duplication groups by.
        as_of: the night the run judged.
        raised: whether that run raised (stored and notified) the alert.
        run_id: the run that saw it (``None`` when unknown).
    """

    incident_key: str
    as_of: dt.date
    raised: bool = True
    run_id: str | None = None


SuppressedKind = Literal["duplicate", "open_incident", "raised_tonight"]


@dataclass(frozen=True, kw_only=True)
class Suppressed:
    """An alert not raised again, and why.

    ``kind``: ``duplicate`` (twice in one run), ``open_incident`` (seen on a night before and
    still within the cooldown) or ``raised_tonight`` (another run of the same night, e.g. the
    nightly flow, already raised it: it is tonight's alert, just not notified twice).
    """

    alert: AlertCandidate
    reason: str
    kind: SuppressedKind = "open_incident"
    run_id: str | None = None


def _history_index(
    history: Sequence[PastAlert], as_of: dt.date
) -> tuple[dict[str, dt.date], dict[str, dt.date], dict[str, str]]:
    """Last night seen and last night raised before ``as_of``; the run that raised it tonight."""
    last_seen: dict[str, dt.date] = {}
    last_raised: dict[str, dt.date] = {}
    tonight: dict[str, str] = {}
    for past in history:
        key = past.incident_key
        if past.as_of == as_of:
            if past.raised:
                tonight.setdefault(key, past.run_id or "another run")
            continue
        if past.as_of > as_of:
            continue
        if key not in last_seen or past.as_of > last_seen[key]:
            last_seen[key] = past.as_of
        if past.raised and (key not in last_raised or past.as_of > last_raised[key]):
            last_raised[key] = past.as_of
    return last_seen, last_raised, tonight


def deduplicate(
    candidates: Sequence[AlertCandidate],
    history: Sequence[PastAlert],
    *,
    as_of: dt.date,
    cooldown_days: int,
) -> tuple[list[AlertCandidate], list[Suppressed]]:
    """Keep one alert per incident: drop repeats within the batch and while the incident is open.

    An incident stays open while it keeps being seen: it is suppressed when it was seen (raised
    or suppressed) on any of the ``cooldown_days`` nights before ``as_of``. A drift that lasts
    three weeks is one alert; the same drift coming back after ``cooldown_days`` quiet nights is
    a new one. An alert another run raised for the same night ``as_of`` (the nightly flow, when
    ``llmopt monitor`` looks at that night afterwards) is tonight's alert: it comes back as
    ``raised_tonight`` naming that run, not as an open incident. The caller leaves its own run
    out of ``history`` (re-running a night re-raises its alerts).

    Args:
        candidates: tonight's alerts, in order.
        history: incidents seen by runs of this and earlier nights.
        as_of: the night judged.
        cooldown_days: quiet nights after which an incident is new again.

    Returns:
        ``(new, suppressed)``: the alerts to raise and the others with their reason.

    Raises:
        ValueError: ``cooldown_days < 0``.

    Example:
        >>> drift = AlertCandidate(incident_key="qa-bot|drift", use_case="qa-bot", kind="drift",
        ...                        name="drift", severity="warning", message="qa-bot: drift")
        >>> night = dt.date(2026, 11, 3)
        >>> earlier = [PastAlert(incident_key="qa-bot|drift", as_of=dt.date(2026, 11, 1))]
        >>> new, held = deduplicate([drift], earlier, as_of=night, cooldown_days=7)
        >>> len(new), held[0].kind
        (0, 'open_incident')
        >>> nightly = [PastAlert(incident_key="qa-bot|drift", as_of=night, run_id="nightly-1")]
        >>> new, held = deduplicate([drift], nightly, as_of=night, cooldown_days=7)
        >>> held[0].kind, held[0].run_id
        ('raised_tonight', 'nightly-1')
    """
    if cooldown_days < 0:
        raise ValueError("cooldown_days must be >= 0")
    last_seen, last_raised, tonight = _history_index(history, as_of)
    new: list[AlertCandidate] = []
    suppressed: list[Suppressed] = []
    seen: set[str] = set()
    for alert in candidates:
        key = alert.incident_key
        if key in seen:
            suppressed.append(
                Suppressed(alert=alert, reason="duplicate in this run", kind="duplicate")
            )
            continue
        seen.add(key)
        if key in tonight:
            suppressed.append(
                Suppressed(
                    alert=alert,
                    reason=f"raised tonight by run {tonight[key]}",
                    kind="raised_tonight",
                    run_id=tonight[key],
                )
            )
            continue
        last = last_seen.get(key)
        if last is not None and (as_of - last).days <= cooldown_days:
            raised = last_raised.get(key)
            since = f"raised on {raised.isoformat()}, " if raised else ""
            suppressed.append(
                Suppressed(
                    alert=alert,
                    reason=f"incident open ({since}last seen {last.isoformat()}; "
                    f"cooldown {cooldown_days} days)",
                )
            )
            continue
        new.append(alert)
    return new, suppressed


__all__ = [
    "ACTION_SEVERITY",
    "RULES",
    "ActionKind",
    "AlertCandidate",
    "ApprovedConfig",
    "DegradationRules",
    "PastAlert",
    "RecoveryAction",
    "RecoveryPolicy",
    "RuleEvaluation",
    "Suppressed",
    "SuppressedKind",
    "WindowStats",
    "decide_recovery",
    "deduplicate",
    "evaluate_rules",
    "hold_open_incident",
]
