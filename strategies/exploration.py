"""Exploration that serves the use case: candidate weights from the posterior of the objective.

Why: exploration is traffic taken from production. It is worth it for a candidate that might be
better; it is waste for one the evidence already shows to be worse, and it is harm when it cuts
the share of an arm proven better. :func:`exploration_weights` takes each candidate's value on the
use case's objective with its standard error (normal posterior) and production's:

* P(candidate > production) below ``1 - confidence``: *dropped* (a clearly worse candidate loses
  its share as soon as its evidence says so);
* at or above ``confidence``: *proven better*, flagged for promotion (kept, never cut);
* the rest, and untried candidates (neutral weight), share the exploration budget in proportion
  to their posterior probability of being the best arm (Thompson), so a candidate closing in on
  production gets more than a doubtful one.

Example:
    >>> plan = exploration_weights(production=(0.80, 0.005),
    ...     candidates={"worse": (0.70, 0.005), "close": (0.801, 0.02), "new": None})
    >>> sorted(plan.weights), sorted(plan.dropped)
    (['close', 'new'], ['worse'])
    >>> exploration_weights(production=(0.8, 0.001), candidates={"bad": (0.5, 0.01)}).weights
    {}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from strategies._checks import require_open_interval

__all__ = ["ExplorationWeights", "exploration_weights"]


@dataclass(frozen=True, kw_only=True)
class ExplorationWeights:
    """Relative weights of the candidates worth exploring, and why the others are not.

    ``weights`` (summing to 1 when not empty) are for the candidates that keep a share;
    ``dropped`` maps a clearly worse candidate to the reason; ``proven_better`` lists candidates
    that beat production with confidence (a promotion, not exploration: their share must not be
    cut); ``probability_better`` is P(candidate > production) for candidates with data.
    """

    weights: dict[str, float]
    dropped: dict[str, str]
    proven_better: tuple[str, ...]
    probability_better: dict[str, float]
    reasons: tuple[str, ...]


def exploration_weights(
    *,
    production: tuple[float, float],
    candidates: Mapping[str, tuple[float, float] | None],
    confidence: float = 0.95,
    draws: int = 20_000,
    seed: int = 0,
) -> ExplorationWeights:
    """Exploration weights from the posterior of each candidate's objective value.

    Args:
        production: ``(value, standard error)`` of production on the objective.
        candidates: ``(value, standard error)`` per candidate; ``None`` when it has no data yet
            (it keeps the neutral weight of an untried arm).
        confidence: P(better than production) below ``1 - confidence`` drops a candidate; at or
            above ``confidence`` the candidate is proven better (flagged for promotion).
        draws: posterior draws for the probability of being best.
        seed: draw seed (same inputs, same weights).

    Returns:
        :class:`ExplorationWeights`.
    """
    require_open_interval("confidence", confidence, 0.5, 1.0)
    p_mean, p_se = production
    dropped: dict[str, str] = {}
    proven: list[str] = []
    better: dict[str, float] = {}
    kept: dict[str, tuple[float, float]] = {}
    untried = [c for c, v in candidates.items() if v is None]
    for cand, value in candidates.items():
        if value is None:
            continue
        mean, se = value
        scale = math.hypot(se, p_se)
        prob = float(stats.norm.cdf((mean - p_mean) / scale)) if scale > 0 else float(mean > p_mean)
        better[cand] = prob
        if prob < 1.0 - confidence:
            dropped[cand] = f"clearly worse than production: P(better) = {prob:.1%}"
            continue
        if prob >= confidence:
            proven.append(cand)
        kept[cand] = value
    weights: dict[str, float] = {}
    if kept:
        rng = np.random.default_rng(seed)
        arms = [(p_mean, p_se), *kept.values()]
        means = np.array([m for m, _ in arms])
        ses = np.maximum(np.array([s for _, s in arms]), 1e-12)
        samples = rng.normal(means, ses, size=(draws, means.size))
        best = samples == samples.max(axis=1, keepdims=True)
        p_best = (best / best.sum(axis=1, keepdims=True)).mean(axis=0)
        weights = {c: float(p) for c, p in zip(kept, p_best[1:], strict=True)}
    neutral = 1.0 / (len(kept) + len(untried) + 1)
    weights.update(dict.fromkeys(untried, neutral))
    total = math.fsum(weights.values())
    if total > 0:
        weights = {c: w / total for c, w in weights.items()}
    reasons = [f"{len(weights)} candidate(s) explored, {len(dropped)} dropped as clearly worse"]
    if proven:
        reasons.append(f"proven better than production (promote, do not cut): {sorted(proven)}")
    if not weights:
        reasons.append("no candidate worth exploring: production keeps the traffic")
    return ExplorationWeights(
        weights=weights,
        dropped=dropped,
        proven_better=tuple(proven),
        probability_better=better,
        reasons=tuple(reasons),
    )
