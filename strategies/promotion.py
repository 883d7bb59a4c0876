"""Production from evidence: bootstrap the best configuration, promote one that beats production.

Why: a configuration that already has traffic (an exploration arm, an arm of a logged randomized
routing, an experiment arm) and is better than production on the use case's objective should
reach production without anyone writing an experiment, and an A/A world must never promote.
Two decisions live here, both on a :class:`strategies.objective.Objective`:

* :func:`choose_bootstrap` (no production version yet): the configuration with the highest lower
  confidence bound on the objective among feasible ones, ties to the cheaper (never the most
  served).
* :func:`propose_promotion` (a production version exists): every other configuration is compared
  with production on the objective. The difference ``d = v_cand - v_prod`` with variance
  ``V = se_cand^2 + se_prod^2`` gets the normal-mixture confidence sequence of
  :mod:`strategies.experiments.sequential` (valid at every nightly look on cumulative statistics),
  one-sided at ``alpha / k`` for ``k`` compared candidates (Bonferroni). A candidate is proposed
  when the lower end of its sequence is above ``min_improvement`` and it meets the objective's
  constraint with confidence; the best such candidate (highest lower bound, ties to the cheaper)
  wins. A candidate that is ahead but not yet shown is *promising*, reported with the sample it
  would need at its current effect; nothing is proposed on it.

Results are built by keyword and carry their evidence bundle (estimates, intervals, method, rows
used), or an explicit reason why nothing is proposed.

Example:
    >>> import numpy as np
    >>> from strategies.objective import Objective
    >>> from strategies.config_stats import ConfigStats
    >>> rng = np.random.default_rng(1)
    >>> def cfg(key, q, cost, n=4000):
    ...     return ConfigStats.from_samples(key, quality=rng.normal(q, 0.15, n),
    ...         cost=np.full(n, cost), latency=np.full(n, 900.0), success=np.ones(n, bool))
    >>> prod, strong = cfg("weak", 0.72, 0.0002), cfg("strong", 0.85, 0.012)
    >>> d = propose_promotion(Objective.from_preset("quality-focused"), production=prod,
    ...                       candidates=[strong])
    >>> d.action, d.candidate_config_id, d.evidence["method"]
    ('propose', 'strong', 'sequential')
    >>> propose_promotion(Objective.from_preset("cost-focused"), production=prod,
    ...                   candidates=[strong]).action
    'none'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from strategies._checks import require_open_interval
from strategies.config_stats import ConfigStats
from strategies.experiments.sequential import DEFAULT_N_STAR, cs_radius, optimal_mixing_ratio
from strategies.objective import BestChoice, Objective, ObjectiveScore

__all__ = [
    "CandidateComparison",
    "PromotionDecision",
    "choose_bootstrap",
    "propose_promotion",
]


@dataclass(frozen=True, kw_only=True)
class CandidateComparison:
    """One candidate against production on the objective (difference and its sequence)."""

    config_key: str
    status: Literal["beats", "promising", "not_better", "infeasible", "cannot_analyse"]
    difference: float
    lower: float
    upper: float
    alpha: float
    n: int
    candidate: ObjectiveScore
    needed_n: float | None = None  # per-candidate requests to show the current effect (promising)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain values for the evidence bundle and the report."""
        return {
            "config_key": self.config_key,
            "status": self.status,
            "difference": self.difference,
            "lower": self.lower,
            "upper": self.upper,
            "alpha": self.alpha,
            "n": self.n,
            "value": self.candidate.value,
            "value_lower": self.candidate.lower,
            "value_upper": self.candidate.upper,
            "needed_n": self.needed_n,
            "reason": self.reason,
        }


@dataclass(frozen=True, kw_only=True)
class PromotionDecision:
    """``propose`` a candidate (with its evidence bundle) or ``none`` with the reason."""

    action: Literal["propose", "none"]
    reason: str
    production: ObjectiveScore | None
    candidate_config_id: str | None = None
    comparisons: tuple[CandidateComparison, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def best_alternative(self) -> CandidateComparison | None:
        """The analysable candidate with the highest difference lower bound (for reports)."""
        ok = [c for c in self.comparisons if math.isfinite(c.lower)]
        return max(ok, key=lambda c: (c.lower, -c.candidate.cost_mean)) if ok else None

    @property
    def promising(self) -> tuple[CandidateComparison, ...]:
        return tuple(c for c in self.comparisons if c.status == "promising")


def choose_bootstrap(
    objective: Objective,
    configs: Sequence[ConfigStats],
    *,
    monthly_requests: float | None = None,
) -> BestChoice:
    """The first production configuration: best lower bound on the objective, ties to the cheaper.

    Args:
        objective: the use case's objective.
        configs: every configuration with traffic in the window.
        monthly_requests: expected monthly requests (monthly budget caps).

    Returns:
        :class:`strategies.objective.BestChoice` (``cannot_analyse`` with the reasons when no
        configuration is analysable and feasible).
    """
    return objective.best(configs, monthly_requests=monthly_requests)


def propose_promotion(
    objective: Objective,
    *,
    production: ConfigStats | None,
    candidates: Sequence[ConfigStats],
    alpha: float = 0.05,
    n_star: float = DEFAULT_N_STAR,
    min_improvement: float = 0.0,
    monthly_requests: float | None = None,
) -> PromotionDecision:
    """Does any candidate beat production on the objective, with confidence? (module docstring)

    Args:
        objective: the use case's objective.
        production: production's cumulative statistics (``None``: it has no traffic).
        candidates: other configurations with cumulative statistics (production is skipped).
        alpha: one-sided error rate of the whole family of comparisons, at every nightly look.
        n_star: requests per side at which the confidence sequence is tightest.
        min_improvement: the objective gain that must be shown (in objective units).
        monthly_requests: expected monthly requests (monthly budget caps).

    Raises:
        ValueError: ``alpha`` outside (0, 0.5) or non-positive ``n_star``.
    """
    require_open_interval("alpha", alpha, 0.0, 0.5)
    if not n_star > 0:
        raise ValueError(f"n_star must be > 0, got {n_star}")
    if production is None:
        return PromotionDecision(
            action="none", reason="production has no traffic in the logs", production=None
        )
    prod = objective.score(production, monthly_requests=monthly_requests)
    if prod.status != "ok":
        return PromotionDecision(
            action="none", reason=f"production cannot be scored: {prod.reason}", production=prod
        )
    others = [c for c in candidates if c.config_key != production.config_key]
    if not others:
        return PromotionDecision(
            action="none", reason="no other configuration has traffic", production=prod
        )
    level = alpha / len(others)
    comparisons = tuple(
        _compare(
            objective,
            prod,
            c,
            level=level,
            n_star=n_star,
            min_improvement=min_improvement,
            monthly_requests=monthly_requests,
        )
        for c in others
    )
    winners = [c for c in comparisons if c.status == "beats"]
    if not winners:
        return PromotionDecision(
            action="none", reason=_why_none(comparisons), production=prod, comparisons=comparisons
        )
    best = max(winners, key=lambda c: (c.lower, -c.candidate.cost_mean, c.config_key))
    return PromotionDecision(
        action="propose",
        reason=(
            f"{best.config_key} beats production {prod.config_key} on {objective.name}: "
            f"+{best.difference:.4f} (always-valid lower bound {best.lower:+.4f}, "
            f"alpha {level:.3g} each)"
        ),
        production=prod,
        candidate_config_id=best.config_key,
        comparisons=comparisons,
        evidence=_evidence(objective, prod, best, alpha=alpha, n_star=n_star, k=len(others)),
    )


def _compare(
    objective: Objective,
    prod: ObjectiveScore,
    stats: ConfigStats,
    *,
    level: float,
    n_star: float,
    min_improvement: float,
    monthly_requests: float | None,
) -> CandidateComparison:
    cand = objective.score(stats, monthly_requests=monthly_requests)
    nan = math.nan
    if cand.status != "ok":
        return CandidateComparison(
            config_key=stats.config_key,
            status="cannot_analyse",
            difference=nan,
            lower=nan,
            upper=nan,
            alpha=level,
            n=stats.n,
            candidate=cand,
            reason=cand.reason,
        )
    diff = cand.value - prod.value
    var = cand.se**2 + prod.se**2
    unit_var = cand.se**2 * cand.n + prod.se**2 * prod.n
    # one-sided at `level`: the two-sided sequence at 2 * level, its lower end
    two_sided = min(2.0 * level, 0.999)
    tau2 = optimal_mixing_ratio(two_sided) * unit_var / n_star
    radius = float(cs_radius(np.array([var]), np.array([tau2]), two_sided)[0]) if var > 0 else 0.0
    lower, upper = diff - radius, diff + radius
    status: Literal["beats", "promising", "not_better", "infeasible"]
    needed: float | None = None
    if not cand.confidently_feasible:
        status = "infeasible"
        why = cand.reason or "constraint not met with confidence"
    elif lower > min_improvement:
        status, why = "beats", "shown better with confidence"
    elif diff > min_improvement:
        status, why = "promising", "ahead, not yet shown"
        needed = _needed_n(diff - min_improvement, cand, prod, two_sided, n_star)
        if needed is not None:
            why += f" (about {needed:,.0f} requests each at this effect)"
    else:
        status, why = "not_better", "not better than production"
    return CandidateComparison(
        config_key=stats.config_key,
        status=status,
        difference=diff,
        lower=lower,
        upper=upper,
        alpha=level,
        n=stats.n,
        candidate=cand,
        needed_n=needed,
        reason=why,
    )


def _needed_n(
    effect: float, cand: ObjectiveScore, prod: ObjectiveScore, alpha: float, n_star: float
) -> float | None:
    """Requests per side at which the sequence's radius falls below ``effect`` (equal n)."""
    unit_var = cand.se**2 * cand.n + prod.se**2 * prod.n
    if not (effect > 0 and unit_var > 0):
        return None
    tau2 = optimal_mixing_ratio(alpha) * unit_var / n_star
    n = float(max(cand.n, 2))
    for _ in range(60):  # doubling: the radius decreases in n
        if float(cs_radius(np.array([unit_var / n]), np.array([tau2]), alpha)[0]) < effect:
            return n
        n *= 2.0
    return None


def _why_none(comparisons: Sequence[CandidateComparison]) -> str:
    counts: dict[str, int] = {}
    for c in comparisons:
        counts[c.status] = counts.get(c.status, 0) + 1
    parts = [f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items())]
    promising = [c for c in comparisons if c.status == "promising"]
    text = "no candidate beats production with confidence (" + ", ".join(parts) + ")"
    if promising:
        top = max(promising, key=lambda c: c.difference)
        text += f"; most promising {top.config_key} {top.difference:+.4f}: {top.reason}"
    return text


def _evidence(
    objective: Objective,
    prod: ObjectiveScore,
    best: CandidateComparison,
    *,
    alpha: float,
    n_star: float,
    k: int,
) -> dict[str, Any]:
    return {
        "source": "logged traffic",
        "method": "sequential",
        "test": "normal-mixture confidence sequence on the objective difference (one-sided)",
        "objective": objective.as_dict(),
        "alpha": alpha,
        "alpha_per_candidate": alpha / k,
        "candidates_compared": k,
        "n_star": n_star,
        "production": prod.as_dict(),
        "candidate": best.candidate.as_dict(),
        "difference": best.difference,
        "difference_lower": best.lower,
        "difference_upper": best.upper,
        "rows_used": int(prod.n + best.n),
    }
