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
reason (never a silent pass). When rules fire, :func:`strategies.monitor.recovery.decide_recovery`
picks the most severe action
the policy allows: ``rollback`` (to the most recently approved other configuration that meets the
quality floor) > ``circuit_breaker`` (to the cheapest approved configuration meeting the floor) >
``pause_optimizer`` > ``alert_only``. Without a usable target it falls back to pausing the
optimizer and says why. :func:`deduplicate` turns repeated nightly firings of one incident into one
alert per ``cooldown_days`` (:mod:`strategies.monitor.alerts`, re-exported here).

Example:
    >>> base = WindowStats(n=1000, successes=998, quality_n=1000, quality_sum=800.0, cost_sum=2.0)
    >>> now = WindowStats(n=1000, successes=999, quality_n=1000, quality_sum=590.0, cost_sum=2.0)
    >>> fired = [e.rule for e in evaluate_rules(now, base, DegradationRules()) if e.fired]
    >>> fired
    ['quality_drop']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats

from strategies.monitor.alerts import (
    AlertCandidate,
    PastAlert,
    Suppressed,
    SuppressedKind,
    deduplicate,
)

ActionKind = Literal["rollback", "circuit_breaker", "pause_optimizer", "alert_only"]
ACTION_SEVERITY: dict[str, int] = {
    "alert_only": 0,
    "pause_optimizer": 1,
    "circuit_breaker": 2,
    "rollback": 3,
}
RULES = ("quality_drop", "error_rate", "cost_spike", "latency_slo")


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class ApprovedConfig:
    """An approved configuration the registry could serve, with its known quality and cost."""

    config_id: str
    quality: float
    cost_per_request: float
    latency_p95_ms: float | None = None
    approved_at: str | None = None  # ISO date/time; the most recent is the "last good"
    is_production: bool = False


@dataclass(frozen=True, kw_only=True)
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


def _quality_rule(
    current: WindowStats, base_q: float | None, rules: DegradationRules, drop_limit: float
) -> RuleEvaluation:
    if current.quality_n < rules.min_requests:
        return _skip(
            "quality_drop",
            "quality",
            f"only {current.quality_n} quality scores (need {rules.min_requests})",
        )
    if base_q is None or base_q <= 0:
        return _skip(
            "quality_drop", "quality", "no baseline quality for the production configuration"
        )
    q = float(current.quality_mean or 0.0)
    limit = base_q * (1.0 - drop_limit)
    return RuleEvaluation(
        rule="quality_drop",
        metric="quality",
        analysable=True,
        fired=q < limit,
        observed=q,
        baseline=base_q,
        threshold=limit,
        reason=f"quality {q:.4f} vs baseline {base_q:.4f} ({1.0 - q / base_q:.1%} drop; "
        f"limit {drop_limit:.0%})",
    )


def _error_rule(
    current: WindowStats, baseline: WindowStats | None, rules: DegradationRules, max_rate: float
) -> RuleEvaluation:
    errors = current.n - current.successes
    rate = errors / current.n
    pvalue = float(stats.binomtest(errors, current.n, max_rate, alternative="greater").pvalue)
    return RuleEvaluation(
        rule="error_rate",
        metric="error_rate",
        analysable=True,
        fired=rate > max_rate and pvalue < rules.alpha,
        observed=rate,
        baseline=baseline.error_rate if baseline else None,
        threshold=max_rate,
        reason=f"error rate {rate:.2%} ({errors}/{current.n}) vs max "
        f"{max_rate:.2%}, one-sided binomial p {pvalue:.2g}",
    )


def _cost_rule(current: WindowStats, base_c: float | None, ratio_max: float) -> RuleEvaluation:
    if base_c is None or base_c <= 0:
        return _skip(
            "cost_spike", "cost_per_request", "no baseline cost for the production configuration"
        )
    c = float(current.cost_per_request or 0.0)
    limit = base_c * ratio_max
    return RuleEvaluation(
        rule="cost_spike",
        metric="cost_per_request",
        analysable=True,
        fired=c > limit,
        observed=c,
        baseline=base_c,
        threshold=limit,
        reason=f"cost per request {c:.6f} is {c / base_c:.2f}x the baseline "
        f"{base_c:.6f} (limit {ratio_max}x)",
    )


def _latency_rule(
    current: WindowStats, baseline: WindowStats | None, slo_ms: float
) -> RuleEvaluation:
    p95 = current.latency_p95
    if p95 is None or not math.isfinite(p95):
        return _skip("latency_slo", "latency_p95", "no latency p95")
    return RuleEvaluation(
        rule="latency_slo",
        metric="latency_p95",
        analysable=True,
        fired=p95 > slo_ms,
        observed=p95,
        baseline=baseline.latency_p95 if baseline else None,
        threshold=slo_ms,
        reason=f"latency p95 {p95:.0f} ms vs SLO {slo_ms:.0f} ms",
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

    Args:
        current: the production configuration over the current window (the night).
        baseline: the production configuration over its reference window (the days before the
            night), or ``None`` when it had no traffic there.
        rules: thresholds (``None`` switches a rule off) and ``min_requests``.
        baseline_quality: a quality baseline that overrides ``baseline``'s (e.g. a number
            fixed at approval time).
        baseline_cost: a cost-per-request baseline that overrides ``baseline``'s.

    Returns:
        One :class:`RuleEvaluation` per configured rule, in the order of ``RULES``.
    """
    out: list[RuleEvaluation] = []
    few = current.n < rules.min_requests
    few_reason = f"only {current.n} requests (need {rules.min_requests})"
    if rules.quality_drop_relative is not None:
        base_q = baseline_quality
        if base_q is None and baseline is not None:
            base_q = baseline.quality_mean
        out.append(_quality_rule(current, base_q, rules, rules.quality_drop_relative))
    if rules.error_rate_max is not None:
        out.append(
            _skip("error_rate", "error_rate", few_reason)
            if few
            else _error_rule(current, baseline, rules, rules.error_rate_max)
        )
    if rules.cost_ratio_max is not None:
        base_c = baseline_cost
        if base_c is None and baseline is not None:
            base_c = baseline.cost_per_request
        out.append(
            _skip("cost_spike", "cost_per_request", few_reason)
            if few
            else _cost_rule(current, base_c, rules.cost_ratio_max)
        )
    if rules.latency_p95_slo_ms is not None:
        out.append(
            _skip("latency_slo", "latency_p95", few_reason)
            if few
            else _latency_rule(current, baseline, rules.latency_p95_slo_ms)
        )
    return out


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
    "deduplicate",
    "evaluate_rules",
]
