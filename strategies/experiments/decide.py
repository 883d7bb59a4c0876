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
so a nightly harm check cannot fire on noise more often than alpha.
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


@dataclass(frozen=True)
class Guardrail:
    """A metric that must not get worse than ``margin`` (relative share or absolute units)."""

    metric: str
    margin: float
    relative: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"guardrail {self.metric}: margin must be a finite number >= 0")


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything configured per experiment (``data/config/experiments.toml``)."""

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
    n_star: float = 10_000.0
    power: float = 0.8
    mde: float | None = None
    min_days: int = 0
    max_days: int | None = None
    chance_threshold: float = 0.95
    prior_mean: float = 0.0
    prior_sd: float = float("inf")
    use_case: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"{self.experiment_id}: method must be one of {METHODS}")
        if not 0 < self.alpha < 1 or not 0 < self.srm_alpha < 1:
            raise ValueError(f"{self.experiment_id}: alpha and srm_alpha must lie in (0, 1)")
        if self.correction not in ("none", "holm", "bh"):
            raise ValueError(f"{self.experiment_id}: correction must be none, holm or bh")
        if not 0 < self.power < 1 or not 0.5 <= self.chance_threshold < 1:
            raise ValueError(f"{self.experiment_id}: power or chance_threshold out of range")

    def weight_of(self, variant: str) -> float | None:
        return dict(self.weights).get(variant)


@dataclass(frozen=True)
class Comparison:
    """One treatment arm against control on one metric (plain floats; NaN shown as null)."""

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


@dataclass(frozen=True)
class SrmCheck:
    p_value: float
    counts: dict[str, float]
    expected: dict[str, float]
    mismatch: bool
    analysable: bool
    message: str = ""


@dataclass(frozen=True)
class Decision:
    action: str
    variant: str | None
    reasons: tuple[str, ...]
    days_needed: float | None = None
    units_needed: float | None = None

    @property
    def label(self) -> str:
        return f"{self.action} {self.variant}" if self.action == SHIP else self.action


@dataclass(frozen=True)
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
    stat = (
        f"chance to win {_fmt(c.chance_to_win)}"
        if spec.method == "bayesian"
        else f"p={_fmt(c.p_adjusted)}"
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
        return Decision(CANNOT_ANALYSE, None, tuple(f"{spec.primary}: {w}" for w in why))
    if srm.analysable and srm.mismatch:
        return Decision(
            STOP_SRM,
            None,
            (
                f"sample ratio mismatch: chi-square p={_fmt(srm.p_value)} < {spec.srm_alpha}; "
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
        return Decision(STOP_HARM, harmed[0][0], tuple(r for _, r in harmed))
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
        return Decision(SHIP, best.variant, tuple(why))
    for c in usable:
        reasons.append(_describe(spec, c))
    if spec.max_days is not None and days_elapsed is not None and days_elapsed >= spec.max_days:
        return Decision(
            INCONCLUSIVE,
            None,
            (f"ran {days_elapsed} days (max {spec.max_days}) without a decision", *reasons),
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
    return Decision(KEEP_RUNNING, None, tuple(reasons), days_needed, units_needed)


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
