"""What an experiment analysis is configured with and what it returns: plain, frozen records.

:class:`ExperimentSpec` (one experiment's configuration, validated on construction, every value
finite), :class:`Comparison` (one arm against control on one metric), :class:`SrmCheck`,
:class:`Decision` and :class:`ExperimentReport` (JSON via ``to_dict``). All are keyword-only.
The policy that turns comparisons into a decision is :mod:`strategies.experiments.decide`.

Example:
    >>> spec = ExperimentSpec(experiment_id="e", weights=(("control", 0.5), ("b", 0.5)))
    >>> spec.weight_of("b"), spec.correction_scale
    (0.5, 'absolute')
    >>> ExperimentSpec(experiment_id="e", n_star=float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: e: n_star must be a finite number > 0
    >>> Decision(action=SHIP, variant="b").label
    'ship b'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ACTIONS",
    "CANNOT_ANALYSE",
    "INCONCLUSIVE",
    "KEEP_RUNNING",
    "METHODS",
    "SCALES",
    "SHIP",
    "STOP_HARM",
    "STOP_SRM",
    "Comparison",
    "Decision",
    "ExperimentReport",
    "ExperimentSpec",
    "Guardrail",
    "SrmCheck",
]

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
        """The configured traffic share of ``variant`` (None when not configured).

        Args:
            variant: the arm's variant id.
        """
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
        """The first comparison of ``variant`` on ``metric`` (KeyError when there is none).

        Args:
            metric: the metric's name.
            variant: the treatment arm.
        """
        for c in self.comparisons:
            if c.metric == metric and c.variant == variant:
                return c
        raise KeyError((metric, variant))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (NaN as null, infinities as strings)."""
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
