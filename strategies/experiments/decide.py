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

Example:
    >>> spec = ExperimentSpec(experiment_id="e", weights=(("control", 0.5), ("b", 0.5)))
    >>> spec.weight_of("b"), spec.correction_scale
    (0.5, 'absolute')
    >>> ExperimentSpec(experiment_id="e", n_star=float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: e: n_star must be a finite number > 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from strategies.experiments.effects import MSG_ZERO_VAR

SHIP = "ship"
KEEP_RUNNING = "keep running"
STOP_HARM = "stop: harm"
STOP_SRM = "stop: SRM"
INCONCLUSIVE = "inconclusive at max duration"
CANNOT_ANALYSE = "cannot analyse"
ACTIONS: tuple[str, ...] = (SHIP, KEEP_RUNNING, STOP_HARM, STOP_SRM, INCONCLUSIVE, CANNOT_ANALYSE)
METHODS: tuple[str, ...] = ("sequential", "fixed", "bayesian")
SCALES: tuple[str, ...] = ("absolute", "relative")


@dataclass(frozen=True, kw_only=True)
class Guardrail:
    """A metric that must not get worse than ``margin`` (relative share or absolute units).

    Args:
        metric: the metric's name.
        margin: the degradation allowed (finite, >= 0).
        relative: ``margin`` is a share of control (True) or metric units (False).
    """

    metric: str
    margin: float
    relative: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"guardrail {self.metric}: margin must be a finite number >= 0")


@dataclass(frozen=True, kw_only=True)
class ExperimentSpec:
    """Everything configured per experiment (``experiments.toml``).

    Args:
        experiment_id: the id the logs carry.
        primary: the metric that decides.
        control: the control arm's variant id.
        weights: configured traffic shares per arm (for SRM; empty: equal shares).
        secondary: metrics in the correction family beside the primary.
        guardrails: non-inferiority checks.
        method: ``sequential`` | ``fixed`` | ``bayesian``.
        alpha: significance level, in (0, 1).
        srm_alpha: level of the sample-ratio check, in (0, 1).
        correction: ``none`` | ``holm`` | ``bh`` over primary + secondary comparisons.
        correction_scale: ``absolute`` or ``relative``: which p-values decide and are corrected.
        n_star: sequential tuning (units per arm where the sequence is tightest; finite, > 0).
        power: target power for the days-needed estimate, in (0, 1).
        mde: effect worth detecting (finite, > 0), or None for the observed effect.
        min_days: no ship before this many days.
        max_days: ``inconclusive`` after this many days (the fixed method's horizon).
        chance_threshold: Bayesian chance to win needed, in [0.5, 1).
        prior_mean: Bayesian prior mean on ``prior_scale`` (finite).
        prior_sd: Bayesian prior standard deviation (> 0; inf for flat).
        prior_scale: ``absolute`` or ``relative``: the scale of the Bayesian prior.
        use_case: the use case the experiment runs in (optional).
    """

    experiment_id: str
    primary: str = "quality"
    control: str = "control"
    weights: tuple[tuple[str, float], ...] = ()
    secondary: tuple[str, ...] = ()
    guardrails: tuple[Guardrail, ...] = ()
    method: str = "sequential"
    alpha: float = 0.05
    srm_alpha: float = 0.001
    correction: str = "holm"
    correction_scale: str = "absolute"
    n_star: float = 10_000.0
    power: float = 0.8
    mde: float | None = None
    min_days: int = 0
    max_days: int | None = None
    chance_threshold: float = 0.95
    prior_mean: float = 0.0
    prior_sd: float = float("inf")
    prior_scale: str = "absolute"
    use_case: str | None = None

    def __post_init__(self) -> None:
        for problem in _spec_problems(self):
            raise ValueError(f"{self.experiment_id}: {problem}")

    def weight_of(self, variant: str) -> float | None:
        """The configured traffic share of ``variant`` (None when not configured)."""
        return dict(self.weights).get(variant)


def _spec_problems(spec: ExperimentSpec) -> list[str]:
    """Every unusable value, in field order (the first is raised)."""
    out: list[str] = []
    if spec.method not in METHODS:
        out.append(f"method must be one of {METHODS}")
    if not 0 < spec.alpha < 1 or not 0 < spec.srm_alpha < 1:
        out.append("alpha and srm_alpha must lie in (0, 1)")
    if spec.correction not in ("none", "holm", "bh"):
        out.append("correction must be none, holm or bh")
    for name in ("correction_scale", "prior_scale"):
        if getattr(spec, name) not in SCALES:
            out.append(f"{name} must be one of {SCALES}")
    if not (math.isfinite(spec.n_star) and spec.n_star > 0):
        out.append("n_star must be a finite number > 0")
    if not 0 < spec.power < 1 or not 0.5 <= spec.chance_threshold < 1:
        out.append("power or chance_threshold out of range")
    if spec.mde is not None and not (math.isfinite(spec.mde) and spec.mde > 0):
        out.append("mde must be a finite number > 0")
    if spec.min_days < 0 or (spec.max_days is not None and spec.max_days < 1):
        out.append("min_days must be >= 0 and max_days >= 1")
    if not math.isfinite(spec.prior_mean) or not (spec.prior_sd > 0):
        out.append("prior_mean must be finite and prior_sd > 0 (inf for a flat prior)")
    for arm, weight in spec.weights:
        if not (math.isfinite(weight) and weight >= 0):
            out.append(f"weight of {arm!r} must be a finite number >= 0")
    return out


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """One treatment arm against control on one metric (plain floats; NaN shown as null).

    ``p_value`` / ``relative_p_value`` are on the absolute / relative scale; ``p_adjusted`` is
    the corrected p-value on the scale the spec names (``correction_scale``), the one that
    decides. For CUPED, ``effect`` is the adjusted difference, ``relative`` divides it by the
    observed control mean, and ``extra`` holds the unadjusted effect beside it.
    """

    metric: str
    role: str  # primary | secondary | guardrail
    kind: str
    variant: str
    control: str
    method: str
    higher_is_better: bool
    n_control: float
    n_treatment: float
    mean_control: float
    mean_treatment: float
    effect: float
    ci_low: float
    ci_high: float
    relative: float
    relative_ci_low: float
    relative_ci_high: float
    p_value: float
    p_adjusted: float
    chance_to_win: float
    expected_loss: float
    analysable: bool
    message: str = ""
    margin: float | None = None
    margin_relative: bool | None = None
    verdict: str = ""  # better | worse | no difference yet | non-inferior | harm | undetermined
    p95_control: float | None = None
    p95_treatment: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    relative_p_value: float = math.nan


@dataclass(frozen=True, kw_only=True)
class SrmCheck:
    """The sample-ratio check: ``chi-square`` for one look, ``sequential`` (always valid, a
    Dirichlet-multinomial mixture) for nightly looks; counts are units since the last reset."""

    p_value: float
    counts: dict[str, float]
    expected: dict[str, float]
    mismatch: bool
    analysable: bool
    message: str = ""
    method: str = "chi-square"


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The action with its reasons; ``since`` is the day a sticky stop was first decided."""

    action: str
    variant: str | None = None
    reasons: tuple[str, ...] = ()
    days_needed: float | None = None
    units_needed: float | None = None
    since: str | None = None

    @property
    def label(self) -> str:
        return f"{self.action} {self.variant}" if self.action == SHIP else self.action


@dataclass(frozen=True, kw_only=True)
class ExperimentReport:
    """What the nightly flow stores, logs to MLflow and prints: JSON-serialisable."""

    experiment_id: str
    method: str
    alpha: float
    correction: str
    as_of: str | None
    days_elapsed: int | None
    decision: Decision
    srm: SrmCheck
    comparisons: tuple[Comparison, ...]
    notes: tuple[str, ...] = ()
    correction_scale: str = "absolute"
    looks: str = "single"  # single (one look, e.g. a CSV) | nightly (repeated warehouse looks)

    def comparison(self, metric: str, variant: str) -> Comparison:
        for c in self.comparisons:
            if c.metric == metric and c.variant == variant:
                return c
        raise KeyError((metric, variant))

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        out["decision"]["label"] = self.decision.label
        return _clean(out)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


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
    """Interval of how much worse the arm is (positive = worse), in the margin's units."""
    if c.margin_relative:
        lo, hi = c.relative_ci_low, c.relative_ci_high
    else:
        lo, hi = c.ci_low, c.ci_high
    return (lo, hi) if not c.higher_is_better else (-hi, -lo)


def guardrail_verdict(c: Comparison) -> str:
    """``harm`` (proven beyond margin), ``non-inferior`` (proven within) or ``undetermined``.

    Both arms constant (zero variance, e.g. no errors at all) is not noise: the degradation is
    known exactly and is compared with the margin directly.
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


def decide(
    spec: ExperimentSpec,
    comparisons: tuple[Comparison, ...],
    srm: SrmCheck,
    *,
    days_elapsed: int | None,
    days_needed: float | None,
    units_needed: float | None,
) -> Decision:
    """Apply the policy in the module docstring; every branch says why, with numbers."""
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
    reasons: list[str] = []
    if not srm.analysable:
        reasons.append(f"SRM check not possible: {srm.message}")
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
    if harmed:
        return Decision(action=STOP_HARM, variant=harmed[0][0], reasons=tuple(r for _, r in harmed))
    winners = [c for c in usable if c.verdict == "better"]
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
    clean = [
        c
        for c in winners
        if not any(
            g.role == "guardrail" and g.variant == c.variant and g.verdict != "non-inferior"
            for g in comparisons
        )
    ]
    if clean and days_elapsed is not None and days_elapsed < spec.min_days:
        reasons.append(f"winner found but minimum duration is {spec.min_days} days")
        clean = []
    if clean:
        best = max(clean, key=lambda c: c.effect if c.higher_is_better else -c.effect)
        why = [_describe(spec, best)]
        why += [
            f"guardrail {g.metric}: non-inferior (margin {_fmt(g.margin or 0.0)})"
            for g in comparisons
            if g.role == "guardrail" and g.variant == best.variant
        ]
        return Decision(action=SHIP, variant=best.variant, reasons=tuple(why))
    for c in usable:
        reasons.append(_describe(spec, c))
    if spec.max_days is not None and days_elapsed is not None and days_elapsed >= spec.max_days:
        return Decision(
            action=INCONCLUSIVE,
            reasons=(f"ran {days_elapsed} days (max {spec.max_days}) without a decision", *reasons),
        )
    if winners:
        reasons.append("primary metric decided; waiting for the guardrails above")
    elif days_needed == 0:
        reasons.append(
            "planned sample size for the minimum detectable effect reached: "
            "the true effect is probably smaller"
        )
    elif days_needed is not None and math.isfinite(days_needed):
        reasons.append(f"about {int(days_needed)} more day(s) needed at current traffic")
        if (
            spec.max_days is not None
            and days_elapsed is not None
            and days_elapsed + days_needed > spec.max_days
        ):
            reasons.append(f"unlikely to conclude before max duration ({spec.max_days} days)")
    return Decision(
        action=KEEP_RUNNING,
        reasons=tuple(reasons),
        days_needed=days_needed,
        units_needed=units_needed,
    )


__all__ = [
    "ACTIONS",
    "CANNOT_ANALYSE",
    "INCONCLUSIVE",
    "KEEP_RUNNING",
    "METHODS",
    "SHIP",
    "STOP_HARM",
    "STOP_SRM",
    "Comparison",
    "Decision",
    "ExperimentReport",
    "ExperimentSpec",
    "Guardrail",
    "SrmCheck",
    "decide",
    "degradation_bounds",
    "guardrail_verdict",
    "primary_verdict",
]
