"""From comparisons to one decision per experiment, with its reasons and numbers.

The policy, in order (safety first, then evidence, then time):

1. ``cannot analyse`` when the primary metric has no analysable comparison (one arm, n <= 1,
   zero variance): the report says why; nothing is shipped.
2. ``stop: SRM`` when the sample-ratio check fails (p < ``srm_alpha``): the data are broken.
3. ``stop: harm`` when an arm is proven worse: its interval on a guardrail's degradation lies
   entirely beyond the non-inferiority margin, or its primary metric is significantly worse.
4. ``ship <arm>`` when an arm is significantly better on the primary metric (adjusted p-value
   below alpha for fixed / sequential; chance to win above the threshold for Bayesian), every
   guardrail is proven non-inferior (interval entirely inside the margin), and the experiment ran
   at least ``min_days``. Among several winners, the largest improvement.
5. ``inconclusive at max duration`` when ``max_days`` is reached.
6. ``keep running`` otherwise, with the estimated days still needed.

Guardrails are judged with the method's own intervals (always-valid for the sequential method),
so a nightly harm check cannot fire on noise more often than alpha. Nightly looks at the fixed
and Bayesian methods follow :mod:`strategies.experiments.nightly`; once stopped, an experiment
stays stopped until a person resets it (:func:`sticky_decision`).

The records (spec, comparison, decision, report) live in :mod:`strategies.experiments.report`
and are re-exported here.

Example:
    >>> spec = ExperimentSpec(experiment_id="e")
    >>> srm = SrmCheck(p_value=1e-6, counts={}, expected={}, mismatch=True, analysable=True)
    >>> c = Comparison(metric="quality", role="primary", kind="mean", variant="b",
    ...     control="control", method="sequential", higher_is_better=True, n_control=900.0,
    ...     n_treatment=880.0, mean_control=0.7, mean_treatment=0.72, effect=0.02, ci_low=0.01,
    ...     ci_high=0.03, relative=0.03, relative_ci_low=0.01, relative_ci_high=0.04,
    ...     p_value=0.001, p_adjusted=0.001, chance_to_win=0.99, expected_loss=0.0,
    ...     analysable=True, verdict="better")
    >>> decide(spec, (c,), srm, days_elapsed=5, days_needed=None, units_needed=None).action
    'stop: SRM'
"""

from __future__ import annotations

import math

from strategies.experiments.effects import MSG_ZERO_VAR
from strategies.experiments.report import (
    CANNOT_ANALYSE,
    INCONCLUSIVE,
    KEEP_RUNNING,
    SHIP,
    STOP_HARM,
    STOP_SRM,
    Comparison,
    Decision,
    ExperimentSpec,
    SrmCheck,
)


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def _winner(spec: ExperimentSpec, c: Comparison) -> bool:
    if not c.analysable:
        return False
    if spec.method == "bayesian":
        return c.chance_to_win >= spec.chance_threshold
    good = c.effect > 0 if c.higher_is_better else c.effect < 0
    return good and c.p_adjusted < spec.alpha


def _loser(spec: ExperimentSpec, c: Comparison) -> bool:
    if not c.analysable:
        return False
    if spec.method == "bayesian":
        return 1.0 - c.chance_to_win >= spec.chance_threshold
    bad = c.effect < 0 if c.higher_is_better else c.effect > 0
    return bad and c.p_adjusted < spec.alpha


def degradation_bounds(c: Comparison) -> tuple[float, float]:
    """Interval of how much worse the arm is (positive = worse), in the margin's units.

    Args:
        c: a guardrail comparison.
    """
    if c.margin_relative:
        lo, hi = c.relative_ci_low, c.relative_ci_high
    else:
        lo, hi = c.ci_low, c.ci_high
    return (lo, hi) if not c.higher_is_better else (-hi, -lo)


def guardrail_verdict(c: Comparison) -> str:
    """``harm`` (proven beyond margin), ``non-inferior`` (proven within) or ``undetermined``.

    Both arms constant (zero variance, e.g. no errors at all) is not noise: the degradation is
    known exactly and is compared with the margin directly.

    Args:
        c: a guardrail comparison (with its margin).
    """
    if c.margin is None:
        return "undetermined"
    if not c.analysable and c.message == MSG_ZERO_VAR:
        diff = c.mean_treatment - c.mean_control
        if c.margin_relative:
            if c.mean_control == 0:
                return "non-inferior" if diff == 0 else "undetermined"
            diff = diff / abs(c.mean_control)
        worse = -diff if c.higher_is_better else diff
        return "harm" if worse > c.margin else "non-inferior"
    if not c.analysable:
        return "undetermined"
    if c.margin_relative and not math.isfinite(c.relative):
        return "undetermined"
    lo, hi = degradation_bounds(c)
    if math.isnan(lo) or math.isnan(hi):
        return "undetermined"
    if lo > c.margin:
        return "harm"
    if hi < c.margin:
        return "non-inferior"
    return "undetermined"


def primary_verdict(spec: ExperimentSpec, c: Comparison) -> str:
    """``better``, ``worse``, ``no difference yet`` or ``undetermined`` by the method's rule.

    Args:
        spec: the experiment's configuration (method, alpha, chance threshold).
        c: a primary or secondary comparison with its adjusted p-value.
    """
    if not c.analysable:
        return "undetermined"
    if _winner(spec, c):
        return "better"
    if _loser(spec, c):
        return "worse"
    return "no difference yet"


def _describe(spec: ExperimentSpec, c: Comparison) -> str:
    rel = f" ({_fmt(100 * c.relative)}%)" if math.isfinite(c.relative) else ""
    scale = " (relative)" if spec.correction_scale == "relative" else ""
    stat = (
        f"chance to win {_fmt(c.chance_to_win)}"
        if spec.method == "bayesian"
        else f"p{scale}={_fmt(c.p_adjusted)}"
    )
    return (
        f"{c.metric} {c.variant} vs {c.control}: effect {_fmt(c.effect)}{rel}, "
        f"CI [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}], {stat}"
    )


def _harm(spec: ExperimentSpec, comparisons: tuple[Comparison, ...]) -> Decision | None:
    """``stop: harm`` when a guardrail is proven beyond its margin or the primary is worse."""
    harmed: list[tuple[str, str]] = []
    for c in comparisons:
        if c.role == "guardrail" and c.verdict == "harm":
            lo, hi = degradation_bounds(c)
            unit = "relative" if c.margin_relative else "absolute"
            harmed.append(
                (
                    c.variant,
                    f"guardrail {c.metric}: {c.variant} worse by [{_fmt(lo)}, {_fmt(hi)}] "
                    f"({unit}), beyond margin {_fmt(c.margin or 0.0)}",
                )
            )
        if c.role == "primary" and c.verdict == "worse":
            harmed.append((c.variant, "primary metric significantly worse: " + _describe(spec, c)))
    if not harmed:
        return None
    return Decision(action=STOP_HARM, variant=harmed[0][0], reasons=tuple(r for _, r in harmed))


def _ship(
    spec: ExperimentSpec,
    comparisons: tuple[Comparison, ...],
    winners: list[Comparison],
    days_elapsed: int | None,
    reasons: list[str],
) -> Decision | None:
    """``ship`` the best winner whose guardrails are all proven non-inferior, after min_days;
    otherwise None, with what blocks each winner appended to ``reasons``."""
    clean: list[Comparison] = []
    for c in winners:
        blocked = [
            g
            for g in comparisons
            if g.role == "guardrail" and g.variant == c.variant and g.verdict != "non-inferior"
        ]
        if blocked:
            reasons.append(
                f"{c.variant} wins on {c.metric} but guardrails not yet proven within margin: "
                + ", ".join(f"{g.metric} ({g.message or g.verdict})" for g in blocked)
            )
        else:
            clean.append(c)
    if clean and days_elapsed is not None and days_elapsed < spec.min_days:
        reasons.append(f"winner found but minimum duration is {spec.min_days} days")
        return None
    if not clean:
        return None
    best = max(clean, key=lambda c: c.effect if c.higher_is_better else -c.effect)
    why = [_describe(spec, best)]
    why += [
        f"guardrail {g.metric}: non-inferior (margin {_fmt(g.margin or 0.0)})"
        for g in comparisons
        if g.role == "guardrail" and g.variant == best.variant
    ]
    return Decision(action=SHIP, variant=best.variant, reasons=tuple(why))


def _waiting(
    spec: ExperimentSpec,
    waiting_for_guardrails: bool,
    days_elapsed: int | None,
    days_needed: float | None,
) -> list[str]:
    """Why the experiment keeps running, and for how long."""
    if waiting_for_guardrails:
        return ["primary metric decided; waiting for the guardrails above"]
    if days_needed == 0:
        return [
            "planned sample size for the minimum detectable effect reached: "
            "the true effect is probably smaller"
        ]
    if days_needed is None or not math.isfinite(days_needed):
        return []
    out = [f"about {int(days_needed)} more day(s) needed at current traffic"]
    if (
        spec.max_days is not None
        and days_elapsed is not None
        and days_elapsed + days_needed > spec.max_days
    ):
        out.append(f"unlikely to conclude before max duration ({spec.max_days} days)")
    return out


def decide(
    spec: ExperimentSpec,
    comparisons: tuple[Comparison, ...],
    srm: SrmCheck,
    *,
    days_elapsed: int | None,
    days_needed: float | None,
    units_needed: float | None,
) -> Decision:
    """Apply the policy in the module docstring; every branch says why, with numbers.

    Args:
        spec: the experiment's configuration.
        comparisons: every comparison with its verdict.
        srm: the sample-ratio check.
        days_elapsed: days since the first traffic (None: unknown, e.g. a CSV).
        days_needed: estimated days until the primary metric can decide (keep running).
        units_needed: control-arm units for the configured or observed effect.
    """
    primary = [c for c in comparisons if c.role == "primary"]
    usable = [c for c in primary if c.analysable]
    if not usable:
        why = sorted({c.message for c in primary if c.message}) or [
            f"no treatment arm with data on primary metric {spec.primary}"
        ]
        return Decision(action=CANNOT_ANALYSE, reasons=tuple(f"{spec.primary}: {w}" for w in why))
    if srm.analysable and srm.mismatch:
        return Decision(
            action=STOP_SRM,
            reasons=(
                f"sample ratio mismatch: {srm.method} p={_fmt(srm.p_value)} < {spec.srm_alpha}; "
                f"units {srm.counts}, expected {srm.expected}",
            ),
        )
    reasons = [] if srm.analysable else [f"SRM check not possible: {srm.message}"]
    harm = _harm(spec, comparisons)
    if harm is not None:
        return harm
    winners = [c for c in usable if c.verdict == "better"]
    ship = _ship(spec, comparisons, winners, days_elapsed, reasons)
    if ship is not None:
        return ship
    reasons += [_describe(spec, c) for c in usable]
    if spec.max_days is not None and days_elapsed is not None and days_elapsed >= spec.max_days:
        return Decision(
            action=INCONCLUSIVE,
            reasons=(f"ran {days_elapsed} days (max {spec.max_days}) without a decision", *reasons),
        )
    reasons += _waiting(spec, bool(winners), days_elapsed, days_needed)
    return Decision(
        action=KEEP_RUNNING,
        reasons=tuple(reasons),
        days_needed=days_needed,
        units_needed=units_needed,
    )


__all__ = [
    "decide",
    "degradation_bounds",
    "guardrail_verdict",
    "primary_verdict",
]
