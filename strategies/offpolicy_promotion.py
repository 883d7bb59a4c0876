"""Promotion from logged propensities: the doubly-robust lower bound, valid at every nightly look.

Why: :func:`strategies.promotion.propose_promotion` compares each configuration's own mean with
production's. When the serving policy chose arms with probabilities that depend on the context
(the strong model mostly for hard tasks, say), those means are confounded: a configuration looks
better because of whom it served. With logged propensities the paired doubly-robust estimate
(:func:`strategies.offpolicy.dr_difference`) answers the right question, "what if everyone got
the candidate instead of production", on the objective's per-request reward.

:func:`dr_promotion` re-judges a promotion decision's comparisons on that estimate, with the same
guarantees as the sequential test it replaces: one-sided at ``alpha / k`` for ``k`` compared
candidates (Bonferroni), and the normal-mixture confidence-sequence radius of
:mod:`strategies.experiments.sequential` on the DR difference (an asymptotic confidence sequence:
the nightly looks on a growing sample do not inflate the error). A candidate whose off-policy
estimate is refused (too little support, effective sample too small) cannot be analysed and is
never proposed. :func:`propensities_vary` says when this applies at all: constant propensities
across contexts leave the plain comparison unbiased, and it keeps deciding.

Example:
    >>> import numpy as np
    >>> from strategies.offpolicy import aggregate_logged
    >>> rng = np.random.default_rng(0)
    >>> n = 20000
    >>> cell = rng.choice(["easy", "hard"], n)
    >>> p_cand = np.where(cell == "easy", 0.8, 0.2)         # the candidate mostly on easy tasks
    >>> arm = np.where(rng.random(n) < p_cand, "cand", "prod")
    >>> base = np.where(cell == "easy", 0.9, 0.6)            # identical arms: an A/A world
    >>> reward = base + rng.normal(0, 0.1, n)
    >>> p = np.where(arm == "cand", p_cand, 1 - p_cand)
    >>> logged = aggregate_logged(cell, arm, reward, p)
    >>> propensities_vary(logged)
    True
    >>> naive = reward[arm == "cand"].mean() - reward[arm == "prod"].mean()
    >>> bool(naive > 0.1)  # the plain comparison is fooled
    True
    >>> j = judge_dr(logged, production="prod", candidate="cand", level=0.05)
    >>> j.status, bool(j.lower < 0 < j.upper)
    ('not_better', True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from strategies.experiments.sequential import DEFAULT_N_STAR, cs_radius, optimal_mixing_ratio
from strategies.offpolicy import LoggedCell, dr_difference, estimate_policy_value
from strategies.promotion import CandidateComparison, PromotionDecision

__all__ = ["DrJudgement", "dr_promotion", "judge_dr", "propensities_vary"]


def propensities_vary(logged: Sequence[LoggedCell], *, tolerance: float = 0.02) -> bool:
    """Do an arm's logged propensities differ between context cells?

    Args:
        logged: per (cell, arm) importance-weight sums.
        tolerance: relative spread of an arm's mean ``1/p`` across cells treated as constant.

    Returns:
        True when some arm's mean inverse propensity differs across cells by more than
        ``tolerance`` (the plain per-arm comparison is then confounded by the context).
    """
    by_arm: dict[str, list[float]] = {}
    for c in logged:
        if c.n > 0:
            by_arm.setdefault(c.arm, []).append(c.inv_p_sum / c.n)
    return any(max(v) > min(v) * (1.0 + tolerance) for v in by_arm.values() if len(v) > 1)


@dataclass(frozen=True, kw_only=True)
class DrJudgement:
    """One candidate against production on the paired DR difference, with its sequence."""

    status: Literal["beats", "promising", "not_better", "cannot_analyse"]
    value: float
    se: float
    lower: float
    upper: float
    rows: int
    ess: float | None
    reason: str


def judge_dr(
    logged: Sequence[LoggedCell],
    *,
    production: str,
    candidate: str,
    level: float,
    n_star: float = DEFAULT_N_STAR,
    min_improvement: float = 0.0,
    min_ess: float = 100.0,
) -> DrJudgement:
    """The candidate's DR gain over production and its always-valid one-sided bound at ``level``.

    Args:
        logged: per (cell, arm) importance-weight sums on the objective's per-request reward.
        production: production's configuration id.
        candidate: the candidate's configuration id.
        level: one-sided error rate of this comparison (already divided over the family).
        n_star: rows at which the sequence is tightest.
        min_improvement: the gain that must be shown.
        min_ess: refuse below this effective sample size of the candidate policy.

    Returns:
        :class:`DrJudgement` (``cannot_analyse`` with the reason when the estimate is refused).
    """
    target = {"*": {candidate: 1.0}}
    baseline = {"*": {production: 1.0}}
    nan = math.nan
    estimates = [estimate_policy_value(logged, p, min_ess=min_ess) for p in (target, baseline)]
    rows = round(math.fsum(c.n for c in logged))
    refused = [r for e in estimates if e.status != "ok" for r in e.reasons]
    gain = dr_difference(logged, target, baseline) if not refused else None
    if gain is None or not (gain.se > 0 and math.isfinite(gain.se)):
        why = "; ".join(refused) or "no variance in the logged rewards"
        return DrJudgement(
            status="cannot_analyse",
            value=nan,
            se=nan,
            lower=nan,
            upper=nan,
            rows=rows,
            ess=estimates[0].ess,
            reason=f"off-policy estimate refused: {why}",
        )
    two_sided = min(2.0 * level, 0.999)
    var = gain.se**2
    tau2 = optimal_mixing_ratio(two_sided) * var * rows / n_star
    radius = float(cs_radius(np.array([var]), np.array([tau2]), two_sided)[0])
    lower, upper = gain.value - radius, gain.value + radius
    status: Literal["beats", "promising", "not_better"]
    if lower > min_improvement:
        status, why = "beats", "shown better with confidence (doubly robust)"
    elif gain.value > min_improvement:
        status, why = "promising", "ahead, not yet shown (doubly robust)"
    else:
        status, why = "not_better", "not better than production (doubly robust)"
    return DrJudgement(
        status=status,
        value=gain.value,
        se=gain.se,
        lower=lower,
        upper=upper,
        rows=rows,
        ess=estimates[0].ess,
        reason=why,
    )


def _rejudged(c: CandidateComparison, j: DrJudgement, level: float) -> CandidateComparison:
    """The comparison with the DR difference, its sequence and status."""
    return replace(
        c,
        status=j.status,
        difference=j.value,
        lower=j.lower,
        upper=j.upper,
        alpha=level,
        needed_n=None,
        reason=j.reason,
    )


def _evidence(j: DrJudgement) -> dict[str, Any]:
    """The DR part of the evidence bundle."""
    return {
        "source": "logged propensities",
        "method": "doubly robust",
        "test": "normal-mixture confidence sequence on the paired DR difference (one-sided)",
        "difference": j.value,
        "difference_se": j.se,
        "difference_lower": j.lower,
        "difference_upper": j.upper,
        "effective_sample_size": j.ess,
        "rows_used": j.rows,
    }


def dr_promotion(
    decision: PromotionDecision,
    logged: Sequence[LoggedCell],
    *,
    context: str,
    alpha: float,
    n_star: float = DEFAULT_N_STAR,
    min_improvement: float = 0.0,
    min_ess: float = 100.0,
) -> PromotionDecision:
    """``decision`` re-judged on the paired DR difference (module docstring).

    Infeasible and unanalysable comparisons keep their status; the family size ``k`` is that of
    the original decision.

    Args:
        decision: :func:`strategies.promotion.propose_promotion`'s decision (its production
            and candidates, their scores for the report).
        logged: per (cell, arm) sums over the context column whose propensities vary.
        context: that column's name (for the evidence).
        alpha: one-sided error rate of the whole family, at every nightly look.
        n_star: rows at which the sequences are tightest.
        min_improvement: the gain that must be shown (reward units).
        min_ess: refuse an estimate below this effective sample size.

    Returns:
        A :class:`PromotionDecision` whose evidence says ``method: doubly robust``.
    """
    prod = decision.production
    if prod is None or not decision.comparisons:
        return decision
    k = len(decision.comparisons)
    level = alpha / k
    judged: list[CandidateComparison] = []
    details: dict[str, DrJudgement] = {}
    for c in decision.comparisons:
        if c.status in {"infeasible", "cannot_analyse"}:
            judged.append(c)
            continue
        j = judge_dr(
            logged,
            production=prod.config_key,
            candidate=c.config_key,
            level=level,
            n_star=n_star,
            min_improvement=min_improvement,
            min_ess=min_ess,
        )
        details[c.config_key] = j
        judged.append(_rejudged(c, j, level))
    winners = [c for c in judged if c.status == "beats"]
    base = replace(decision, comparisons=tuple(judged), candidate_config_id=None, evidence={})
    if not winners:
        reason = "no candidate beats production with confidence on the doubly-robust estimate"
        return replace(base, action="none", reason=f"{reason} (logged propensities, {context})")
    best = max(winners, key=lambda c: (c.lower, -c.candidate.cost_mean, c.config_key))
    j = details[best.config_key]
    evidence = {
        "context": context,
        "alpha": alpha,
        "alpha_per_candidate": level,
        "candidates_compared": k,
        "n_star": n_star,
        "production": prod.as_dict(),
        "candidate": best.candidate.as_dict(),
    } | _evidence(j)
    return replace(
        base,
        action="propose",
        reason=(
            f"{best.config_key} beats production {prod.config_key} on the doubly-robust "
            f"estimate over {context}: {j.value:+.4f} (always-valid lower bound {j.lower:+.4f}, "
            f"alpha {level:.3g} each)"
        ),
        candidate_config_id=best.config_key,
        evidence=evidence,
    )
