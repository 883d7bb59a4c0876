"""A/A world for the decision loop: every configuration is identical, night after night.

Part of the simulator (tests and benchmarks only; production code never imports it). The loop's
promise is that a world where nothing is better never promotes anything, however many nights it
looks. :func:`aa_nights` draws each arm's requests from the same distributions (quality
Beta(``mu k``, ``(1 - mu) k``), cost gamma, latency lognormal, errors Bernoulli) and yields the
cumulative :class:`strategies.search.ConfigStats` of every arm after each night, exactly what the
nightly flow's promotion step reads from the warehouse. :func:`aa_promotion_rate` runs the
promotion decision on them every night and counts the worlds where anything was proposed.

Example:
    >>> from strategies.objective import Objective
    >>> nights = list(aa_nights(seed=1, nights=3, per_night=(200, 100)))
    >>> len(nights), [s.n for s in nights[-1]]
    (3, [600, 300])
    >>> aa_promotion_rate(Objective.from_preset("balanced"), seeds=range(3), nights=3).proposed
    0
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from strategies.objective import Objective
from strategies.promotion import propose_promotion
from strategies.search import ConfigStats

__all__ = ["AAResult", "aa_nights", "aa_promotion_rate"]

_QUALITY_MEAN = 0.78
_QUALITY_CONCENTRATION = 20.0
_COST_MEAN = 0.002
_LATENCY_MEDIAN_MS = 900.0
_LATENCY_SIGMA = 0.35
_ERROR_RATE = 0.01


def aa_nights(
    *, seed: int, nights: int = 28, per_night: Sequence[int] = (400, 200, 200)
) -> Iterator[list[ConfigStats]]:
    """Cumulative statistics of identical arms after each night (arm 0 is production).

    Args:
        seed: the world's seed.
        nights: how many nights.
        per_night: requests per night of each arm (arm ``i`` is ``arm-i``).

    Yields:
        One list per night, the arms' cumulative statistics in order.
    """
    rng = np.random.default_rng(seed)
    draws = [_draw(rng, n * nights) for n in per_night]
    for night in range(1, nights + 1):
        out = []
        for index, (n, arm) in enumerate(zip(per_night, draws, strict=True)):
            upto = n * night
            out.append(
                ConfigStats.from_samples(
                    f"arm-{index}",
                    quality=arm["quality"][:upto],
                    cost=arm["cost"][:upto],
                    latency=arm["latency"][:upto],
                    success=arm["success"][:upto],
                )
            )
        yield out


def _draw(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    k = _QUALITY_CONCENTRATION
    success = rng.random(n) >= _ERROR_RATE
    quality = rng.beta(_QUALITY_MEAN * k, (1 - _QUALITY_MEAN) * k, n)
    return {
        "quality": np.where(success, quality, np.nan),
        "cost": rng.gamma(4.0, _COST_MEAN / 4.0, n),
        "latency": rng.lognormal(np.log(_LATENCY_MEDIAN_MS), _LATENCY_SIGMA, n),
        "success": success,
    }


@dataclass(frozen=True, kw_only=True)
class AAResult:
    """How many A/A worlds proposed anything, and on which night first."""

    worlds: int
    proposed: int
    first_nights: tuple[int, ...]

    @property
    def rate(self) -> float:
        return self.proposed / self.worlds if self.worlds else float("nan")


def aa_promotion_rate(
    objective: Objective,
    *,
    seeds: Iterable[int],
    nights: int = 28,
    per_night: Sequence[int] = (400, 200, 200),
) -> AAResult:
    """Run the nightly promotion decision on A/A worlds; count worlds with any proposal.

    Args:
        objective: the objective the decision uses (alpha = 1 - its level, as in the flow).
        seeds: one world per seed.
        nights: nightly looks per world.
        per_night: requests per night of production and each candidate.
    """
    proposed, firsts, worlds = 0, [], 0
    for seed in seeds:
        worlds += 1
        for night, stats in enumerate(aa_nights(seed=seed, nights=nights, per_night=per_night)):
            decision = propose_promotion(
                objective, production=stats[0], candidates=stats[1:], alpha=1 - objective.level
            )
            if decision.action == "propose":
                proposed += 1
                firsts.append(night + 1)
                break
    return AAResult(worlds=worlds, proposed=proposed, first_nights=tuple(firsts))
