"""Worlds for the decision loop: an A/A world (every configuration identical, night after night)
and a closed-loop exploration world (:class:`ExplorationWorld`, served by what the flow publishes).

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

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from strategies.objective import Objective
from strategies.promotion import propose_promotion
from strategies.search import ConfigStats

__all__ = [
    "CONFOUNDED_CONTEXTS",
    "AAResult",
    "ExplorationWorld",
    "aa_nights",
    "aa_promotion_rate",
    "logged_nights",
]

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


# --------------------------------------------------------------------------------------------
# a closed-loop world: serving follows the registry the flow publishes (issue 12 item 2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ExplorationWorld:
    """Two prompts of one model; the candidate had non-randomized exploration traffic.

    Before the flow runs (``day(..., serving=None)``), the candidate serves the requests of the
    first ``exploration_share`` of each day's hours (a rule, not a draw: no propensity is
    logged). Afterwards each day is served by the registry version the flow published: every
    request's unit is assigned by the serving client's own
    :func:`tasks.registry.assignment.assign_arm`, and experiment arms log their
    ``experiment_id`` / ``variant_id`` as a serving system does. No row ever carries a
    propensity. The truth (each configuration's mean quality; cost, latency and errors are the
    same for both) is exact and only grades.

    Example:
        >>> world = ExplorationWorld(requests_per_day=200)
        >>> table = world.day(0, serving=None)
        >>> table.num_rows, table.column("propensity").null_count
        (200, 200)
        >>> sorted(set(table.column("config_id").to_pylist())) == sorted(world.truth)
        True
    """

    use_case: str = "faq-explore"
    production_id: str = "faq-prompt-v1"
    candidate_id: str = "faq-prompt-v2"
    production_quality: float = 0.78
    candidate_quality: float = 0.81
    requests_per_day: int = 4000
    exploration_share: float = 0.02
    units: int = 20_000
    start: dt.date = dt.date(2026, 10, 1)
    seed: int = 5
    model: str = "gpt-4o-mini"

    @property
    def truth(self) -> dict[str, float]:
        """True mean quality per configuration id (grading only)."""
        return {
            self.production_id: self.production_quality,
            self.candidate_id: self.candidate_quality,
        }

    def params(self, config_id: str) -> dict[str, Any]:
        """The serving parameters of a configuration (what a registry arm holds)."""
        prompt = config_id.removeprefix("faq-")
        return {"model": self.model, "provider": "openai", "prompt_id": prompt, "temperature": 0.2}

    def day(self, index: int, *, serving: Any | None) -> pa.Table:
        """Day ``index``'s logged rows (canonical schema), served by ``serving``.

        Args:
            index: days after ``start``.
            serving: the published :class:`tasks.registry.model.RegistryConfig` (None: before
                the flow, the hour-of-day exploration rule).

        Returns:
            The rows.
        """
        from tasks.registry.assignment import assign_arm
        from tasks.simulation.spec import CANONICAL_SCHEMA, unit_prices

        rng = np.random.default_rng([self.seed, index])
        n = self.requests_per_day
        seconds = np.sort(rng.integers(0, 86_400, n))
        units = [f"user-{u}" for u in rng.integers(0, self.units, n)]
        served: list[tuple[str, str | None, str | None]]
        if serving is None:
            explore = seconds < self.exploration_share * 86_400
            served = [(self.candidate_id if e else self.production_id, None, None) for e in explore]
        else:
            fallback = str(dict(serving.metadata).get("production_config_id", self.production_id))
            served = []
            for unit in units:
                arm = assign_arm(serving, unit)
                served.append((arm.config_id or fallback, arm.experiment_id, arm.variant_id))
        config_ids = [s[0] for s in served]
        mu = np.array([self.truth[c] for c in config_ids])
        k = _QUALITY_CONCENTRATION
        success = rng.random(n) >= _ERROR_RATE
        quality = np.where(success, rng.beta(mu * k, (1 - mu) * k), np.nan)
        tok_in = 1 + rng.poisson(499, n)
        tok_out = 1 + rng.poisson(149, n)
        per_in, per_out = unit_prices(self.model)
        start = dt.datetime.combine(self.start + dt.timedelta(days=index), dt.time(), dt.UTC)
        columns: dict[str, Any] = {
            "request_id": [f"{self.use_case}-{self.seed}-{index}-{i:06d}" for i in range(n)],
            "timestamp": [start + dt.timedelta(seconds=int(s)) for s in seconds],
            "use_case": [self.use_case] * n,
            "model": [self.model] * n,
            "provider": ["openai"] * n,
            "prompt_id": [self.params(c)["prompt_id"] for c in config_ids],
            "config_id": config_ids,
            "experiment_id": [s[1] for s in served],
            "variant_id": [s[2] for s in served],
            "unit_id": units,
            "temperature": np.full(n, 0.2),
            "input_tokens": tok_in,
            "output_tokens": tok_out,
            "latency_ms": np.round(rng.lognormal(np.log(_LATENCY_MEDIAN_MS), _LATENCY_SIGMA, n), 1),
            "cost_usd": tok_in * per_in + tok_out * per_out,
            "status": np.where(success, "success", "error").tolist(),
            "quality": np.round(quality, 6),
            "task_type": ["faq"] * n,
        }
        arrays = [
            pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
            for f in CANONICAL_SCHEMA
        ]
        return pa.Table.from_arrays(arrays, schema=CANONICAL_SCHEMA)


# --------------------------------------------------------------------------------------------
# logged propensities that vary by context (issue 12 item 2, doubly-robust promotion)
# --------------------------------------------------------------------------------------------

# (context, the candidate's propensity there, mean quality there)
CONFOUNDED_CONTEXTS: tuple[tuple[str, float, float], ...] = (
    ("easy", 0.8, 0.86),
    ("hard", 0.2, 0.62),
)


def logged_nights(
    *,
    seed: int,
    objective: Objective,
    nights: int = 28,
    per_night: int = 1200,
    contexts: Sequence[tuple[str, float, float]] = CONFOUNDED_CONTEXTS,
    candidate_gain: float = 0.0,
    window: int | None = None,
) -> Iterator[tuple[list[ConfigStats], list[Any]]]:
    """A logged random routing whose propensities depend on the context, night after night.

    Each request falls in a context uniformly; the candidate (``arm-1``) is chosen with that
    context's propensity (logged), production (``arm-0``) otherwise. Quality depends on the
    context; the candidate adds ``candidate_gain`` (0: an A/A world, where the plain per-arm
    comparison is confounded: the candidate serves the easy context more). Cost, latency and
    errors are identical.

    Args:
        seed: the world's seed.
        objective: sets the per-request reward of the off-policy sums (as the warehouse does).
        nights: how many nights.
        per_night: requests per night.
        contexts: (name, candidate propensity, mean quality) per context.
        candidate_gain: the candidate's true quality gain in every context.
        window: the off-policy sums cover only the last ``window`` nights (as the flow's
            ``[routing]`` window does); None: every night so far.

    Yields:
        Per night, the cumulative ``[production, candidate]`` statistics and the
        :class:`strategies.offpolicy.LoggedCell` sums by context (cumulative or windowed).
    """
    from strategies.offpolicy import aggregate_logged

    rng = np.random.default_rng([seed, 7])
    n = per_night * nights
    which = rng.integers(0, len(contexts), n)
    p_cand = np.array([c[1] for c in contexts])[which]
    cand = rng.random(n) < p_cand
    mu = np.array([c[2] for c in contexts])[which] + np.where(cand, candidate_gain, 0.0)
    draw = _draw(rng, n)
    k = _QUALITY_CONCENTRATION
    quality = np.where(draw["success"], rng.beta(mu * k, (1 - mu) * k), np.nan)
    reward = objective.per_request_reward(
        quality=quality, cost=draw["cost"], latency_ms=draw["latency"], error=~draw["success"]
    )
    cells = np.array([c[0] for c in contexts])[which]
    arms = np.where(cand, "arm-1", "arm-0")
    propensity = np.where(cand, p_cand, 1 - p_cand)
    for night in range(1, nights + 1):
        upto = slice(0, per_night * night)
        stats = []
        for index in range(2):
            mask = arms[upto] == f"arm-{index}"
            stats.append(
                ConfigStats.from_samples(
                    f"arm-{index}",
                    quality=quality[upto][mask],
                    cost=draw["cost"][upto][mask],
                    latency=draw["latency"][upto][mask],
                    success=draw["success"][upto][mask],
                )
            )
        first = 0 if window is None else per_night * max(night - window, 0)
        rows = slice(first, per_night * night)
        logged = aggregate_logged(cells[rows], arms[rows], reward[rows], propensity[rows])
        yield stats, logged
