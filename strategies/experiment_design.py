"""A pre-registered A/B experiment for a promising candidate the logs cannot decide.

Why: a configuration that is ahead of production on the objective but not shown better with
confidence, on traffic that carries no propensities (non-randomized exploration), cannot be
promoted from the logs: its advantage may be who it happened to serve, and no off-policy estimate
can correct that. The honest next step is an experiment: production as control, the candidate as
treatment, randomized by unit, with the design written down *before* the data arrives. This
module decides whether to propose one and computes its numbers; it does no I/O.

* :func:`propose_experiment` says ``propose`` (with an :class:`ExperimentDesign`) or ``none`` and
  why: never without production, never while an experiment of the use case runs, never when the
  logs carry propensities (the off-policy estimate decides then), never twice for the same pair,
  never when the planned sample cannot arrive within ``max_days``.
* The primary metric is the objective's: quality for a reward objective whose gain comes from
  quality (and for ``max_quality``), cost per request when the gain comes from cost (and for
  ``min_cost``). Guardrails are what the objective tolerates: the cost (or quality) the minimum
  detectable effect pays for, the cost cap or the quality floor of a constrained objective, the
  error-rate margin and a relative latency margin.
* The planned sample is :meth:`strategies.experiments.sequential.SequentialTest.required_n`
  (the test the nightly analysis applies) for the observed per-request variances and the
  minimum detectable effect (configured, or the observed difference on the primary metric).

Example:
    >>> import numpy as np
    >>> from strategies.config_stats import ConfigStats
    >>> from strategies.objective import Objective
    >>> rng = np.random.default_rng(3)
    >>> def cfg(key, q, n):
    ...     return ConfigStats.from_samples(key, quality=rng.normal(q, 0.1, n),
    ...         cost=np.full(n, 0.001), latency=np.full(n, 800.0), success=np.ones(n, bool))
    >>> prod, cand = cfg("prod", 0.78, 6000), cfg("cand", 0.80, 600)
    >>> p = propose_experiment(use_case="faq", objective=Objective.from_preset("quality-focused"),
    ...     production=prod, candidate=cand, requests_per_day=4000.0,
    ...     policy=DesignPolicy(traffic_share=0.5))
    >>> p.action, p.design.primary, p.design.planned_days <= 28
    ('propose', 'quality', True)
    >>> p.design.spec_table()["weights"]
    {'control': 0.5, 'treatment': 0.5}
    >>> propose_experiment(use_case="faq", objective=Objective.from_preset("quality-focused"),
    ...     production=None, candidate=cand, requests_per_day=4000.0).reason
    'no experiment: production is absent (nothing to compare against)'
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from strategies._checks import require_finite_positive
from strategies.config_stats import ConfigStats
from strategies.experiments.sequential import DEFAULT_N_STAR, SequentialTest
from strategies.objective import Objective

__all__ = [
    "CONTROL",
    "TREATMENT",
    "DesignPolicy",
    "ExperimentDesign",
    "ExperimentProposal",
    "experiment_id_for",
    "propose_experiment",
]

CONTROL = "control"
TREATMENT = "treatment"


@dataclass(frozen=True, kw_only=True)
class DesignPolicy:
    """How the nightly flow designs the experiments it proposes (``[auto_experiments]``).

    Args:
        enabled: propose experiments at all.
        traffic_share: the use case's share of traffic in the experiment (split equally).
        mde: minimum detectable effect on the primary metric, absolute (None: the observed
            difference).
        alpha: two-sided level of the sequential test.
        power: wanted probability of detecting ``mde``.
        n_star: units per arm where the sequence is tightest (as in ``experiments.toml``).
        min_days: no ship before this many days.
        max_days: the experiment ends inconclusive after this many days; a design whose
            planned sample needs longer is not proposed.
        error_rate_margin: error-rate guardrail (absolute).
        latency_margin: latency guardrail (relative to control).
    """

    enabled: bool = True
    traffic_share: float = 0.2
    mde: float | None = None
    alpha: float = 0.05
    power: float = 0.8
    n_star: float = DEFAULT_N_STAR
    min_days: int = 7
    max_days: int = 28
    error_rate_margin: float = 0.01
    latency_margin: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 < self.traffic_share <= 1.0:
            raise ValueError(f"traffic_share must be in (0, 1], got {self.traffic_share}")
        if self.mde is not None:
            require_finite_positive("mde", self.mde)
        if not 0.0 < self.alpha < 0.5 or not 0.5 <= self.power < 1.0:
            raise ValueError("alpha must be in (0, 0.5) and power in [0.5, 1)")
        if not 1 <= self.min_days <= self.max_days:
            raise ValueError("need 1 <= min_days <= max_days")
        if not (self.error_rate_margin > 0 and self.latency_margin > 0 and self.n_star > 0):
            raise ValueError("margins and n_star must be > 0")


@dataclass(frozen=True, kw_only=True)
class ExperimentDesign:
    """The pre-registered design: arms, split, primary, guardrails and planned sample."""

    experiment_id: str
    use_case: str
    control_config_id: str
    treatment_config_id: str
    traffic_share: float
    primary: Literal["quality", "cost_usd"]
    mde: float
    variance_control: float
    variance_treatment: float
    planned_units_per_arm: float
    requests_per_day: float
    planned_days: int
    min_days: int
    max_days: int
    alpha: float
    power: float
    n_star: float
    guardrails: tuple[tuple[str, float, bool], ...]  # (metric, margin, relative)
    objective: str
    reason: str

    def spec_table(self) -> dict[str, Any]:
        """The ``[experiments."<id>"]`` table of ``experiments.toml`` this design amounts to."""
        return {
            "use_case": self.use_case,
            "method": "sequential",
            "control": CONTROL,
            "weights": {CONTROL: 0.5, TREATMENT: 0.5},
            "primary": self.primary,
            "secondary": [],
            "alpha": self.alpha,
            "power": self.power,
            "n_star": self.n_star,
            "mde": self.mde,
            "min_days": self.min_days,
            "max_days": self.max_days,
            "guardrails": [
                {"metric": m, "margin": margin, "relative": rel}
                for m, margin, rel in self.guardrails
            ],
        }

    def summary(self) -> str:
        """One sentence for the night's reasons."""
        return (
            f"experiment {self.experiment_id} proposed: {self.control_config_id} (control) vs "
            f"{self.treatment_config_id} (treatment), {self.traffic_share:.0%} of traffic, "
            f"primary {self.primary} (mde {self.mde:.4g}), about "
            f"{self.planned_units_per_arm:,.0f} requests per arm in {self.planned_days} day(s), "
            f"max {self.max_days}"
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values (the registry's metadata and the evidence bundle)."""
        out = asdict(self)
        out["guardrails"] = [list(g) for g in self.guardrails]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentDesign:
        """The design back from :meth:`as_dict` (as stored in the registry).

        Args:
            data: the stored dict.
        """
        values = dict(data)
        values["guardrails"] = tuple(
            (str(m), float(margin), bool(rel)) for m, margin, rel in values["guardrails"]
        )
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class ExperimentProposal:
    """``propose`` with the design, or ``none`` with the reason."""

    action: Literal["propose", "none"]
    reason: str
    design: ExperimentDesign | None = None


def experiment_id_for(use_case: str, control: str, treatment: str) -> str:
    """A stable experiment id for one (production, candidate) pair of a use case.

    Args:
        use_case: the use case.
        control: production's configuration id.
        treatment: the candidate's configuration id.
    """
    digest = hashlib.sha256(f"{use_case}\x1f{control}\x1f{treatment}".encode()).hexdigest()
    return f"auto-{use_case}-{digest[:8]}"


def _none(reason: str) -> ExperimentProposal:
    return ExperimentProposal(action="none", reason=f"no experiment: {reason}")


def propose_experiment(
    *,
    use_case: str,
    objective: Objective,
    production: ConfigStats | None,
    candidate: ConfigStats | None,
    requests_per_day: float,
    policy: DesignPolicy | None = None,
    running: Collection[str] = (),
    tried: Collection[str] = (),
    offpolicy_possible: bool = False,
) -> ExperimentProposal:
    """Propose a pre-registered experiment for a promising candidate, or say why not.

    Args:
        use_case: the use case.
        objective: the use case's objective (chooses the primary metric and guardrails).
        production: production's statistics (None: absent, never an experiment).
        candidate: the most promising candidate's statistics (ahead, not shown).
        requests_per_day: the use case's daily requests (the experiment gets its share).
        policy: the design policy.
        running: ids of the use case's experiments that run or wait to start.
        tried: candidate ids already tested against this production.
        offpolicy_possible: the logs carry propensities (the off-policy estimate decides).

    Returns:
        :class:`ExperimentProposal` (``none`` with the reason, or ``propose`` with the design).
    """
    policy = policy or DesignPolicy()
    refusal = _refusal(
        use_case=use_case,
        production=production,
        candidate=candidate,
        policy=policy,
        running=running,
        tried=tried,
        offpolicy_possible=offpolicy_possible,
    )
    if refusal is not None:
        return _none(refusal)
    assert production is not None and candidate is not None  # checked by _refusal
    primary, effect, guardrails = _primary_and_guardrails(objective, production, candidate, policy)
    if primary is None or not isinstance(effect, float):
        return _none(f"{candidate.config_key}'s gain is not on quality or cost: {effect}")
    mde = policy.mde if policy.mde is not None else effect
    var_c, var_t = _variances(primary, production, candidate)
    n = _planned_n(var_c, var_t, mde, policy)
    per_arm_per_day = requests_per_day * policy.traffic_share / 2.0
    days = math.ceil(n / per_arm_per_day) if per_arm_per_day > 0 and math.isfinite(n) else 10**9
    if days > policy.max_days:
        return _none(
            f"{candidate.config_key} needs about {n:,.0f} requests per arm to show {mde:.4g} on "
            f"{primary}; at {per_arm_per_day:,.0f} a day per arm that is more than "
            f"{policy.max_days} days"
        )
    design = ExperimentDesign(
        experiment_id=experiment_id_for(use_case, production.config_key, candidate.config_key),
        use_case=use_case,
        control_config_id=production.config_key,
        treatment_config_id=candidate.config_key,
        primary=primary,
        mde=float(mde),
        variance_control=var_c,
        variance_treatment=var_t,
        planned_units_per_arm=n,
        requests_per_day=float(requests_per_day),
        planned_days=max(days, policy.min_days),
        guardrails=guardrails,
        objective=objective.name,
        reason=(
            f"{candidate.config_key} is ahead of production {production.config_key} on "
            f"{objective.name} but not shown; its traffic carries no propensities"
        ),
        **_policy_fields(policy),
    )
    return ExperimentProposal(action="propose", reason=design.summary(), design=design)


def _policy_fields(policy: DesignPolicy) -> dict[str, Any]:
    """The design's fields that the policy sets as they are."""
    return {
        "traffic_share": policy.traffic_share,
        "min_days": policy.min_days,
        "max_days": policy.max_days,
        "alpha": policy.alpha,
        "power": policy.power,
        "n_star": policy.n_star,
    }


def _refusal(
    *,
    use_case: str,
    production: ConfigStats | None,
    candidate: ConfigStats | None,
    policy: DesignPolicy,
    running: Collection[str],
    tried: Collection[str],
    offpolicy_possible: bool,
) -> str | None:
    """Why no experiment is proposed before any design number (None: go on)."""
    if not policy.enabled:
        return "[auto_experiments] enabled = false"
    if production is None or production.n == 0:
        return "production is absent (nothing to compare against)"
    if candidate is None:
        return "no promising candidate"
    if running:
        return f"{', '.join(sorted(running))} already runs for {use_case}"
    if offpolicy_possible:
        return "the logs carry propensities: the off-policy estimate decides"
    if candidate.config_key in tried:
        return f"{candidate.config_key} was already tested against this production"
    return None


def _primary_and_guardrails(
    objective: Objective, prod: ConfigStats, cand: ConfigStats, policy: DesignPolicy
) -> tuple[Literal["quality", "cost_usd"] | None, float | str, tuple[tuple[str, float, bool], ...]]:
    """(primary metric, its observed gain, guardrails); primary None with the reason text."""
    dq = cand.quality_mean - prod.quality_mean
    dc = cand.cost_mean - prod.cost_mean
    dc = 0.0 if not math.isfinite(dc) else dc
    common = (
        ("error_rate", policy.error_rate_margin, False),
        ("latency_ms", policy.latency_margin, True),
    )
    w = objective.weights
    if objective.kind == "min_cost":
        floor = float(objective.quality_floor or 0.0)
        margin = max(prod.quality_mean - floor, 1e-3)
        primary: Literal["quality", "cost_usd"] | None = "cost_usd"
        guard: tuple[str, float, bool] = ("quality", margin, False)
        gain = -dc
    elif objective.kind == "max_quality":
        cap = objective.max_cost_per_request
        margin = max((cap - prod.cost_mean) if cap is not None else 0.1 * prod.cost_mean, 1e-9)
        primary, guard, gain = "quality", ("cost_usd", margin, False), dq
    else:
        from_quality = w.quality * dq
        from_cost = -w.cost * dc / w.cost_scale_usd
        if from_quality >= from_cost:
            mde = policy.mde if policy.mde is not None else dq
            margin = w.quality * mde * w.cost_scale_usd / w.cost if w.cost > 0 else prod.cost_mean
            primary, guard, gain = "quality", ("cost_usd", max(margin, 1e-9), False), dq
        else:
            mde = policy.mde if policy.mde is not None else -dc
            margin = w.cost * mde / w.cost_scale_usd / w.quality if w.quality > 0 else 1.0
            primary, guard, gain = "cost_usd", ("quality", max(margin, 1e-4), False), -dc
    if not gain > 0:
        return None, f"its {primary} difference is {gain:+.4g}", ()
    return primary, float(gain), (guard, *common)


def _planned_n(var_c: float, var_t: float, mde: float, policy: DesignPolicy) -> float:
    """Requests per arm at which the nightly sequential test shows ``mde`` with ``power``."""
    test = SequentialTest(alpha=policy.alpha, n_star=policy.n_star)
    return float(test.required_n(var_c, var_t, mde, power=policy.power)[0])


def _variances(primary: str, prod: ConfigStats, cand: ConfigStats) -> tuple[float, float]:
    """Per-request variances of the primary metric (observed)."""
    if primary == "quality":
        pairs = [(s.quality_se, s.quality_n) for s in (prod, cand)]
    else:
        pairs = [(s.cost_se, s.n) for s in (prod, cand)]
    out = [float(se * se * n) if math.isfinite(se) else math.nan for se, n in pairs]
    finite = [v for v in out if math.isfinite(v)]
    fallback = float(np.mean(finite)) if finite else math.nan
    return tuple(v if math.isfinite(v) else fallback for v in out)  # type: ignore[return-value]
